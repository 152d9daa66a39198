// Package aws is kiln's provider for Amazon EC2: it builds a cluster's private network and places
// its machines there with aws-sdk-go-v2.
//
// # What kiln creates
//
// EnsureNetwork, per cluster, everything tagged kiln.dev/cluster=NAME and kiln.dev/resource=WHAT
// and found by those tags before anything is created (a second call creates nothing):
//
//   - a VPC with the node CIDR (or, with Options.VPCID, the user's VPC, which kiln never deletes);
//   - an internet gateway attached to it;
//   - per availability zone (at least two): a private subnet for the nodes (the spec's private
//     subnets, plus /24s of the node network until each zone has one) and a public /26 from the
//     top of the node network, which holds only the zone's NAT gateway and the load balancer;
//   - one Elastic IP and NAT gateway per zone; a public route table (0.0.0.0/0 to the internet
//     gateway) and one private route table per zone (0.0.0.0/0 to that zone's NAT gateway);
//   - security groups compiled from the firewall intent (SecurityGroups): control-plane and worker
//     groups that accept exactly the intent's rules (the API from the node network and the load
//     balancer's group, SSH only from the admin ranges, etcd, kubelet and VXLAN only from the node
//     network, ping) and nothing else inbound, one group per node pool with inbound rules of its own
//     (spec.nodePools[].ingress), which that pool's workers carry next to the worker group, and the
//     load balancer's group, which accepts the API port from the node network and
//     Options.AdminCIDRs; rules found that the intent does not hold are revoked. Egress stays open
//     (AWS's default rule): spec.network.egress is enforced by the nodes' own firewalls, which AWS
//     nodes do not get;
//   - an internet-facing network load balancer in the public subnets with that security group, a
//     TCP target group on the API port (instance targets) and a TCP listener on the API port; the
//     running control-plane instances are registered.
//
// Create launches one instance per machine: RunInstances with ClientToken =
// provisioner.ClientToken(cluster, name), in a private subnet (with the interface that holds its
// reserved address, see below), no public IP, IMDSv2 required with a hop limit of 1, an encrypted
// gp3 root volume, the optional instance profile, tags kiln.dev/cluster, role, pool and name. Its
// config goes to Options.Bucket (SSE-S3 encrypted) and its user-data is only a stub that merges it
// from a presigned https URL, valid for Options.PresignExpiry (spec.security.enrollmentTTL, 15
// minutes by default), with a sha512 verification hash: user-data stays readable through the
// instance metadata service for the instance's life, and every config holds a credential (a
// worker's bootstrap token, a control plane's keys). Joined deletes that object: the executor calls
// it once the node answered (its Node is Ready), never because the instance is running; the URL
// has expired by then or soon after. A presigned URL made with
// temporary credentials stops working when they expire, whatever Options.PresignExpiry says, and
// carries their session token: prefer long-lived credentials of a dedicated IAM user, or an
// instance role of the controller, with only the permissions below.
//
// Every request waits for a token bucket (Options.QPS, Options.Burst), retries and all; throttling
// and 5xx answers are retried by the SDK's standard retryer with full-jitter exponential backoff.
// AWS error codes come back as errors that say what to do: "aws: run instance "x": the credentials
// lack an IAM permission kiln needs (see the package documentation) (UnauthorizedOperation): ...".
//
// DeleteNetwork removes all of it in dependency order, reserved addresses whose machines never came
// included, and refuses while machines exist.
//
// # Addresses known before rendering
//
// A node's config names private addresses: its own (etcd's advertise and listen URLs, the API
// server's --advertise-address, the kubelet's node IP) and every control-plane node's (etcd's
// members). Placement declares NodeAddresses, so kiln calls Reserve (provisioner.Addresser) for the
// machine and each control-plane node before it renders the config, and renders those addresses.
// Reserve makes EC2 hold the address: an elastic network interface (CreateNetworkInterface) in the
// private subnet and with the security groups Create would give the machine, tagged
// kiln.dev/cluster, kiln.dev/name and kiln.dev/resource=address, its address picked by EC2. Reserving
// the name again finds that interface by tag (a crash after it was made loses nothing, and makes no
// second one); a machine launched before its address was reserved keeps its own. Create launches the
// instance with that interface as device 0 instead of a subnet and groups, so the instance has the
// rendered address; the interface outlives the instance (EC2 does not delete an interface that
// existed before it), so a machine made again after its instance died keeps its address. Delete
// deletes the interface once the instance has let go of it, and DeleteNetwork any left. Should two
// controllers reserve a name at once, Reserve and Create agree on one interface (the one in use,
// else the lowest ID), and Delete deletes both. Errors name the machine, the subnet and the
// interface.
//
// # IAM permissions
//
// EC2: DescribeVpcs, CreateVpc, DeleteVpc, DescribeSubnets, CreateSubnet, DeleteSubnet,
// DescribeInternetGateways, CreateInternetGateway, AttachInternetGateway, DetachInternetGateway,
// DeleteInternetGateway, DescribeAddresses, AllocateAddress, ReleaseAddress, DescribeNatGateways,
// CreateNatGateway, DeleteNatGateway, DescribeRouteTables, CreateRouteTable, CreateRoute,
// AssociateRouteTable, DisassociateRouteTable, DeleteRouteTable, DescribeSecurityGroups,
// CreateSecurityGroup, AuthorizeSecurityGroupIngress, RevokeSecurityGroupIngress,
// DeleteSecurityGroup, DescribeImages, RunInstances, DescribeInstances, StopInstances,
// TerminateInstances, CreateNetworkInterface, DescribeNetworkInterfaces, DeleteNetworkInterface,
// CreateTags (for tagging on create, network-interface resources included).
//
// Elastic Load Balancing: DescribeLoadBalancers, CreateLoadBalancer, DeleteLoadBalancer,
// DescribeTargetGroups, CreateTargetGroup, DeleteTargetGroup, DescribeListeners, CreateListener,
// DeleteListener, DescribeTargetHealth, RegisterTargets, DescribeTags, AddTags (for tagging on
// create).
//
// S3, on arn:aws:s3:::BUCKET/PREFIX*: PutObject, GetObject (the presigned URLs are signed with the
// provider's credentials), DeleteObject.
//
// IAM: PassRole on the instance profile's role, when Options.InstanceProfile is set.
//
// Tests run against provisioner/aws/awstest, an HTTP fake of these APIs that the real SDK clients
// talk to.
package aws
