package v1alpha1

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/kiln-dev/kiln/api/strictyaml"
	"github.com/kiln-dev/kiln/api/window"
)

// TestValidateRules has a case for every validation rule, decoded from YAML so that the path and the
// line:column of each finding are checked too. See decode_test.go for head, qemu, cp, gen and minimal.
func TestValidateRules(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []strictyaml.Finding
	}{
		// apiVersion, kind, metadata.
		{
			name: "wrong apiVersion",
			doc:  strings.Replace(minimal, "kiln.dev/v1alpha1", "kiln.dev/v1", 1),
			want: []strictyaml.Finding{errAt("apiVersion", 1, 13, `unsupported apiVersion "kiln.dev/v1", want "kiln.dev/v1alpha1"`)},
		},
		{
			name: "a document of another kind reports only that",
			doc:  "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n",
			want: []strictyaml.Finding{
				errAt("apiVersion", 1, 13, `unsupported apiVersion "apps/v1", want "kiln.dev/v1alpha1"`),
				errAt("kind", 2, 7, `unsupported kind "Deployment", want "Cluster"`),
			},
		},
		{
			name: "missing apiVersion and kind point at the document",
			doc:  strings.TrimPrefix(minimal, "apiVersion: kiln.dev/v1alpha1\nkind: Cluster\n"),
			want: []strictyaml.Finding{
				errAt("apiVersion", 1, 1, `required, want "kiln.dev/v1alpha1"`),
				errAt("kind", 1, 1, `required, want "Cluster"`),
			},
		},
		{
			name: "wrong kind",
			doc:  strings.Replace(minimal, "kind: Cluster", "kind: Machine", 1),
			want: []strictyaml.Finding{errAt("kind", 2, 7, `unsupported kind "Machine", want "Cluster"`)},
		},
		{
			name: "missing name points at metadata",
			doc:  strings.Replace(minimal, "metadata:\n  name: demo\n", "metadata: {}\n", 1),
			want: []strictyaml.Finding{errAt("metadata.name", 3, 11, "required")},
		},
		{
			name: "name not a DNS label",
			doc:  strings.Replace(minimal, "name: demo", "name: Demo_1", 1),
			want: []strictyaml.Finding{errAt("metadata.name", 4, 9, `"Demo_1" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`)},
		},
		{
			name: "name too long",
			doc:  strings.Replace(minimal, "name: demo", "name: "+strings.Repeat("a", 41), 1),
			want: []strictyaml.Finding{errAt("metadata.name", 4, 9, `"`+strings.Repeat("a", 41)+`" is 41 characters long, at most 40`)},
		},
		{
			name: "name too long and not a DNS label reports the form",
			doc:  strings.Replace(minimal, "name: demo", "name: "+strings.Repeat("a", 40)+"_", 1),
			want: []strictyaml.Finding{errAt("metadata.name", 4, 9, quote(strings.Repeat("a", 40)+"_")+` is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`)},
		},
		{
			name: "name of 40 characters",
			doc:  strings.Replace(minimal, "name: demo", "name: "+strings.Repeat("a", 40), 1),
		},
		{
			name: "kubernetesVersion not a version",
			doc:  minimal + "  kubernetesVersion: 1.37\n",
			want: []strictyaml.Finding{errAt("spec.kubernetesVersion", 12, 22, `expected a string, got float 1.37 (quote it: "1.37")`)},
		},
		{
			name: "kubernetesVersion without v",
			doc:  minimal + "  kubernetesVersion: \"1.37.2\"\n",
			want: []strictyaml.Finding{errAt("spec.kubernetesVersion", 12, 22, `"1.37.2" is not a Kubernetes version (want e.g. v1.37.2)`)},
		},

		// spec.provider.
		{
			name: "unknown provider lists the allowed ones",
			doc:  head + "  provider:\n    name: gcp\n" + cp + gen,
			want: []strictyaml.Finding{errAt("spec.provider.name", 7, 11, `unknown provider "gcp", want one of aws, vsphere, metal, qemu`)},
		},
		{
			name: "missing provider name",
			doc:  head + "  provider: {}\n" + cp + gen,
			want: []strictyaml.Finding{errAt("spec.provider.name", 6, 13, "required, one of aws, vsphere, metal, qemu")},
		},
		{
			name: "missing provider",
			doc:  head + cp + gen,
			want: []strictyaml.Finding{errAt("spec.provider.name", 6, 3, "required, one of aws, vsphere, metal, qemu")},
		},
		{
			name: "only the block of the provider may be set",
			doc: head + "  provider:\n    name: qemu\n    qemu: {cpus: 4}\n" +
				"    aws:\n      region: eu-west-1\n    vsphere: {}\n" + cp + gen,
			want: []strictyaml.Finding{
				errAt("spec.provider.aws", 9, 5, `set, but provider.name is "qemu": only the qemu block may be set`),
				errAt("spec.provider.vsphere", 11, 5, `set, but provider.name is "qemu": only the qemu block may be set`),
			},
		},
		{
			name: "aws needs a region",
			doc:  head + "  provider:\n    name: aws\n" + cp + gen,
			want: []strictyaml.Finding{errAt("spec.provider.aws.region", 7, 5, "required")},
		},
		{
			name: "aws region name",
			doc:  head + "  provider:\n    name: aws\n    aws:\n      region: Frankfurt\n" + cp + gen,
			want: []strictyaml.Finding{errAt("spec.provider.aws.region", 9, 15, `"Frankfurt" is not an AWS region name (want e.g. eu-west-1)`)},
		},
		{
			name: "aws needs two availability zones",
			doc:  head + "  provider:\n    name: aws\n    aws:\n      region: eu-west-1\n      availabilityZones: [eu-west-1a]\n" + cp + gen,
			want: []strictyaml.Finding{errAt("spec.provider.aws.availabilityZones", 10, 26, "need at least 2 availability zones, got 1: nodes in one zone fail together")},
		},
		{
			name: "aws availability zones in the region, once each",
			doc: head + "  provider:\n    name: aws\n    aws:\n      region: eu-west-1\n" +
				"      availabilityZones:\n        - eu-west-1a\n        - us-east-1a\n        - eu-west-1a\n        - \"\"\n" + cp + gen,
			want: []strictyaml.Finding{
				errAt("spec.provider.aws.availabilityZones[1]", 12, 11, `availability zone "us-east-1a" is not in region "eu-west-1"`),
				errAt("spec.provider.aws.availabilityZones[2]", 13, 11, `duplicate availability zone "eu-west-1a", also at spec.provider.aws.availabilityZones[0]`),
				errAt("spec.provider.aws.availabilityZones[3]", 14, 11, "required"),
			},
		},
		{
			name: "aws VPC ID and instance type",
			doc: head + "  provider:\n    name: aws\n    aws:\n      region: us-east-1\n" +
				"      vpcID: vpc-xyz\n      instanceType: large\n" + cp + gen,
			want: []strictyaml.Finding{
				errAt("spec.provider.aws.vpcID", 10, 14, `"vpc-xyz" is not a VPC ID (want vpc- and 8 or 17 hex digits)`),
				errAt("spec.provider.aws.instanceType", 11, 21, `"large" is not an instance type (want e.g. m6i.large)`),
			},
		},
		{
			name: "vsphere required fields point at the block",
			doc: head + "  provider:\n    name: vsphere\n    vsphere:\n      server: vc.example.com\n" +
				"  network:\n    apiEndpoint: {address: 10.0.0.5}\n" + cp + gen,
			want: []strictyaml.Finding{
				errAt("spec.provider.vsphere.datacenter", 9, 7, "required"),
				errAt("spec.provider.vsphere.datastore", 9, 7, "required"),
				errAt("spec.provider.vsphere.network", 9, 7, "required"),
				warnAt("spec.provider.vsphere.configServer", 9, 7, "unset: guestinfo carries each machine's whole config, its keys included, until the node answered; set it to kiln's IP:PORT on the private network to serve each config once"),
			},
		},
		{
			name: "vsphere config server not an address and port",
			doc: head + "  provider:\n    name: vsphere\n    vsphere: {server: vc, datacenter: dc, datastore: ds, network: pg, configServer: kiln.lab:8443}\n" +
				"  network:\n    apiEndpoint: {address: 10.0.0.5}\n" + cp + gen,
			want: []strictyaml.Finding{errAt("spec.provider.vsphere.configServer", 8, 85, `"kiln.lab:8443" is not an IPv4 address and port (IP:PORT) of kiln's host on the private network`)},
		},
		{
			name: "metal boot server URL",
			doc: head + "  provider:\n    name: metal\n    metal:\n      bootServerURL: ftp://boot\n" +
				"  network:\n    apiEndpoint: {address: 10.0.0.5}\n" + cp + gen,
			want: []strictyaml.Finding{errAt("spec.provider.metal.bootServerURL", 9, 22, `"ftp://boot" is not an http or https URL`)},
		},
		{
			name: "qemu sizes and ports",
			doc: head + "  provider:\n    name: qemu\n    qemu:\n      memoryMiB: -1\n      cpus: -2\n" +
				"      sshPortBase: 70000\n" + cp + gen,
			want: []strictyaml.Finding{
				errAt("spec.provider.qemu.memoryMiB", 9, 18, "must be positive, got -1"),
				errAt("spec.provider.qemu.cpus", 10, 13, "must be positive, got -2"),
				errAt("spec.provider.qemu.sshPortBase", 11, 20, "must be a port from 1 to 65535, got 70000"),
			},
		},
		{
			name: "qemu ports for every node",
			doc: head + "  provider:\n    name: qemu\n    qemu:\n      sshPortBase: 65534\n" + cp + gen +
				"  nodePools:\n    - name: a\n      count: 2\n      image: x\n",
			want: []strictyaml.Finding{errAt("spec.provider.qemu.sshPortBase", 9, 20, "3 nodes need ports 65534 to 65536, beyond 65535")},
		},

		// spec.network.
		{
			name: "CIDRs that do not parse",
			doc:  minimal + "  network:\n    nodeCIDR: 10.0.0.0/33\n    podCIDR: 10.244.0.1\n    serviceCIDR: services\n",
			want: []strictyaml.Finding{
				errAt("spec.network.nodeCIDR", 13, 15, `"10.0.0.0/33" is not a CIDR (want e.g. 10.0.0.0/16 or fd00::/64)`),
				errAt("spec.network.podCIDR", 14, 14, `"10.244.0.1" is an address, not a CIDR (for this address alone write 10.244.0.1/32)`),
				errAt("spec.network.serviceCIDR", 15, 18, `"services" is not a CIDR (want e.g. 10.0.0.0/16 or fd00::/64)`),
			},
		},
		{
			name: "CIDRs with host bits set",
			doc:  minimal + "  network:\n    nodeCIDR: 10.0.0.1/16\n    podCIDR: fd00::1/64\n",
			want: []strictyaml.Finding{
				errAt("spec.network.nodeCIDR", 13, 15, `"10.0.0.1/16" has host bits set: the network is 10.0.0.0/16`),
				errAt("spec.network.podCIDR", 14, 14, `"fd00::1/64" has host bits set: the network is fd00::/64`),
			},
		},
		{
			name: "IPv6 network",
			doc:  minimal + "  network:\n    nodeCIDR: fd00:10::/56\n    podCIDR: fd00:244::/56\n    serviceCIDR: fd00:96::/108\n",
		},
		{
			name: "private subnets inside nodeCIDR, not overlapping",
			doc: minimal + "  network:\n    nodeCIDR: 10.0.0.0/16\n    privateSubnets:\n" +
				"      - 10.0.0.0/24\n      - 10.1.0.0/24\n      - 10.0.0.128/25\n      - 10.0.0.0/15\n",
			want: []strictyaml.Finding{
				errAt("spec.network.privateSubnets[1]", 16, 9, "10.1.0.0/24 is not inside spec.network.nodeCIDR 10.0.0.0/16"),
				errAt("spec.network.privateSubnets[2]", 17, 9, "10.0.0.128/25 overlaps spec.network.privateSubnets[0] (10.0.0.0/24)"),
				errAt("spec.network.privateSubnets[3]", 18, 9, "10.0.0.0/15 is not inside spec.network.nodeCIDR 10.0.0.0/16"),
			},
		},
		{
			name: "pod and node CIDRs overlap",
			doc:  minimal + "  network:\n    nodeCIDR: 10.0.0.0/16\n    podCIDR: 10.0.128.0/17\n",
			want: []strictyaml.Finding{errAt("spec.network.podCIDR", 14, 14, "10.0.128.0/17 overlaps spec.network.nodeCIDR (10.0.0.0/16)")},
		},
		{
			name: "an overlap with a default points at the value in the file",
			doc:  minimal + "  network:\n    podCIDR: 10.96.0.0/16\n",
			want: []strictyaml.Finding{errAt("spec.network.podCIDR", 13, 14, "10.96.0.0/16 overlaps spec.network.serviceCIDR (10.96.0.0/12)")},
		},
		{
			name: "service CIDR overlaps node and pod CIDRs",
			doc:  minimal + "  network:\n    serviceCIDR: 10.0.0.0/8\n",
			want: []strictyaml.Finding{
				errAt("spec.network.serviceCIDR", 13, 18, "10.0.0.0/8 overlaps spec.network.nodeCIDR (10.0.0.0/16)"),
				errAt("spec.network.serviceCIDR", 13, 18, "10.0.0.0/8 overlaps spec.network.podCIDR (10.244.0.0/16)"),
			},
		},
		{
			name: "one IP family",
			doc:  minimal + "  network:\n    podCIDR: fd00::/56\n",
			want: []strictyaml.Finding{errAt("spec.network.podCIDR", 13, 14, "fd00::/56 is IPv6 but spec.network.nodeCIDR is IPv4: a single-stack cluster uses one IP family")},
		},
		{
			name: "cluster domain and load balancer name",
			doc:  minimal + "  network:\n    clusterDomain: Cluster.Local\n    apiEndpoint:\n      loadBalancerName: api_server\n",
			want: []strictyaml.Finding{
				errAt("spec.network.clusterDomain", 13, 20, `"Cluster.Local" is not a DNS name (labels of lowercase letters, digits and '-', separated by '.')`),
				errAt("spec.network.apiEndpoint.loadBalancerName", 15, 25, `"api_server" is not a DNS name (labels of lowercase letters, digits and '-', separated by '.')`),
			},
		},
		{
			// apimachinery's subdomain check limits only the whole name, to 253 characters; kiln keeps
			// DNS's limit of 63 characters a label too.
			name: "DNS name limits",
			doc: minimal + "  network:\n    clusterDomain: " + strings.Repeat("a", 64) + ".local\n" +
				"    apiEndpoint:\n      loadBalancerName: " + strings.Repeat("abcdefghi.", 25) + "abcd\n",
			want: []strictyaml.Finding{
				errAt("spec.network.clusterDomain", 13, 20, quote(strings.Repeat("a", 64)+".local")+` is not a DNS name (labels of lowercase letters, digits and '-', separated by '.')`),
				errAt("spec.network.apiEndpoint.loadBalancerName", 15, 25, quote(strings.Repeat("abcdefghi.", 25)+"abcd")+" is longer than 253 characters"),
			},
		},
		{
			name: "DNS names at the limits",
			doc: minimal + "  network:\n    clusterDomain: " + strings.Repeat("a", 63) + ".local\n" +
				"    apiEndpoint:\n      loadBalancerName: " + strings.Repeat("abcdefghi.", 25) + "abc\n",
		},
		{
			name: "API endpoint address and port",
			doc:  minimal + "  network:\n    apiEndpoint:\n      address: 10.0.0.256\n      port: 65536\n",
			want: []strictyaml.Finding{
				errAt("spec.network.apiEndpoint.address", 14, 16, `"10.0.0.256" is not an IP address`),
				errAt("spec.network.apiEndpoint.port", 15, 13, "must be a port from 1 to 65535, got 65536"),
			},
		},
		{
			name: "API endpoint address unspecified, port negative",
			doc:  minimal + "  network:\n    apiEndpoint:\n      address: \"::\"\n      port: -1\n",
			want: []strictyaml.Finding{
				errAt("spec.network.apiEndpoint.address", 14, 16, ":: is the unspecified address"),
				errAt("spec.network.apiEndpoint.port", 15, 13, "must be a port from 1 to 65535, got -1"),
			},
		},
		{
			name: "API endpoint address with a zone",
			doc:  minimal + "  network:\n    apiEndpoint:\n      address: fe80::1%eth0\n",
			want: []strictyaml.Finding{errAt("spec.network.apiEndpoint.address", 14, 16, `"fe80::1%eth0" has a zone; want an address without one`)},
		},
		{
			name: "API endpoint address required where the endpoint is a virtual address",
			doc:  head + "  provider:\n    name: metal\n  network:\n    nodeCIDR: 10.1.0.0/16\n" + cp + gen,
			want: []strictyaml.Finding{errAt("spec.network.apiEndpoint.address", 9, 5, "required on metal: the virtual address of the API endpoint, which keepalived holds on one control-plane node at a time; an unused address of a private subnet (spec.network.privateSubnets)")},
		},
		{
			name: "API endpoint address outside the private subnets",
			doc:  minimal + "  network:\n    apiEndpoint:\n      address: 192.168.1.5\n",
			want: []strictyaml.Finding{errAt("spec.network.apiEndpoint.address", 14, 16, "192.168.1.5 is in none of spec.network.privateSubnets (10.0.0.0/24): keepalived holds it on the control-plane nodes' link")},
		},
		{
			name: "API endpoint at a subnet's network address",
			doc: strings.Replace(minimal, qemu, "  provider:\n    name: vsphere\n    vsphere: {server: vc, datacenter: dc, datastore: ds, network: pg, configServer: \"10.0.0.2:8443\"}\n", 1) +
				"  network:\n    apiEndpoint:\n      address: 10.0.0.0\n",
			want: []strictyaml.Finding{errAt("spec.network.apiEndpoint.address", 15, 16, "10.0.0.0 is the network address of spec.network.privateSubnets[0] (10.0.0.0/24)")},
		},
		{
			name: "API endpoint at a subnet's broadcast address",
			doc: strings.Replace(minimal, qemu, "  provider:\n    name: vsphere\n    vsphere: {server: vc, datacenter: dc, datastore: ds, network: pg, configServer: \"10.0.0.2:8443\"}\n", 1) +
				"  network:\n    privateSubnets: [10.0.0.0/24, 10.0.1.0/24]\n    apiEndpoint:\n      address: 10.0.1.255\n",
			want: []strictyaml.Finding{errAt("spec.network.apiEndpoint.address", 16, 16, "10.0.1.255 is the broadcast address of spec.network.privateSubnets[1] (10.0.1.0/24)")},
		},
		{
			name: "API endpoint at an IPv6 subnet's first address",
			doc: head + "  provider:\n    name: metal\n  network:\n    nodeCIDR: fd00:10::/56\n    privateSubnets: [fd00:10::/64]\n" +
				"    podCIDR: fd00:244::/56\n    serviceCIDR: fd00:96::/108\n    apiEndpoint: {address: \"fd00:10::\"}\n" + cp + gen,
			want: []strictyaml.Finding{errAt("spec.network.apiEndpoint.address", 13, 28, "fd00:10:: is the network address of spec.network.privateSubnets[0] (fd00:10::/64)")},
		},
		{
			name: "API endpoint among the addresses qemu gives machines",
			doc:  minimal + "  network:\n    apiEndpoint:\n      address: 10.0.0.10\n",
			want: []strictyaml.Finding{errAt("spec.network.apiEndpoint.address", 14, 16, "10.0.0.10 is among the addresses qemu gives machines (from 10.0.0.10 up); take one below it (the default is 10.0.0.5)")},
		},
		{
			name: "API endpoint on qemu outside its first private subnet",
			doc:  minimal + "  network:\n    privateSubnets: [10.0.0.0/24, 10.0.1.0/24]\n    apiEndpoint:\n      address: 10.0.1.5\n",
			want: []strictyaml.Finding{errAt("spec.network.apiEndpoint.address", 15, 16, "10.0.1.5 is in spec.network.privateSubnets[1] (10.0.1.0/24), but qemu places every node in spec.network.privateSubnets[0] (10.0.0.0/24): the endpoint must be there too")},
		},
		{
			name: "API endpoint address on aws",
			doc: strings.Replace(minimal, qemu, "  provider:\n    name: aws\n    aws: {region: eu-west-1}\n", 1) +
				"  network:\n    apiEndpoint:\n      address: 10.0.0.5\n",
			want: []strictyaml.Finding{errAt("spec.network.apiEndpoint.address", 15, 16, "must be empty on aws: the network load balancer's DNS name is the endpoint (loadBalancerName), and AWS chooses its addresses")},
		},
		{
			name: "API endpoint port where kube-apiserver listens behind haproxy",
			doc:  minimal + "  network:\n    apiEndpoint:\n      port: 6444\n",
			want: []strictyaml.Finding{errAt("spec.network.apiEndpoint.port", 14, 13, "6444 is where kube-apiserver listens behind haproxy on the control-plane nodes (on qemu); choose another port, e.g. 6443")},
		},
		{
			name: "API endpoint port 6444 on aws",
			doc: strings.Replace(minimal, qemu, "  provider:\n    name: aws\n    aws: {region: eu-west-1}\n", 1) +
				"  network:\n    apiEndpoint:\n      port: 6444\n",
		},
		{
			name: "qemu API ports",
			doc: head + "  provider:\n    name: qemu\n    qemu:\n      sshPortBase: 16440\n      apiPortBase: 16442\n" + cp + gen +
				"  nodePools:\n    - name: a\n      count: 2\n      image: x\n",
			want: []strictyaml.Finding{errAt("spec.provider.qemu.apiPortBase", 10, 20, "the API port 16442 and the SSH ports 16440 to 16442 (sshPortBase) overlap")},
		},
		{
			name: "qemu API ports beyond 65535",
			doc: head + "  provider:\n    name: qemu\n    qemu:\n      apiPortBase: 65534\n" +
				"  controlPlane:\n    count: 3\n    image: x\n" + gen,
			want: []strictyaml.Finding{errAt("spec.provider.qemu.apiPortBase", 9, 20, "3 control-plane nodes need ports 65534 to 65536, beyond 65535")},
		},
		{
			name: "admin CIDRs",
			doc:  minimal + "  network:\n    adminCIDRs:\n      - 192.0.2.10\n      - 0.0.0.0/0\n      - \"::/0\"\n      - 192.0.2.0/33\n",
			want: []strictyaml.Finding{
				errAt("spec.network.adminCIDRs[0]", 14, 9, `"192.0.2.10" is an address, not a CIDR (for this address alone write 192.0.2.10/32)`),
				warnAt("spec.network.adminCIDRs[1]", 15, 9, "0.0.0.0/0 lets the whole internet reach SSH on the nodes"),
				warnAt("spec.network.adminCIDRs[2]", 16, 9, "::/0 lets the whole internet reach SSH on the nodes"),
				errAt("spec.network.adminCIDRs[3]", 17, 9, `"192.0.2.0/33" is not a CIDR (want e.g. 10.0.0.0/16 or fd00::/64)`),
			},
		},

		// spec.controlPlane.
		{
			name: "control plane count 2 is even",
			doc:  head + qemu + "  controlPlane:\n    count: 2\n    image: x\n" + gen,
			want: []strictyaml.Finding{errAt("spec.controlPlane.count", 9, 12, "must be odd: etcd needs a majority of its members for quorum, so 2 members tolerate 0 failures, no more than 1; use 1 or 3")},
		},
		{
			name: "control plane count 6 is even",
			doc:  head + qemu + "  controlPlane:\n    count: 6\n    image: x\n" + gen,
			want: []strictyaml.Finding{errAt("spec.controlPlane.count", 9, 12, "must be odd: etcd needs a majority of its members for quorum, so 6 members tolerate 2 failures, no more than 5; use 5 or 7")},
		},
		{
			name: "control plane count above 7",
			doc:  head + qemu + "  controlPlane:\n    count: 9\n    image: x\n" + gen,
			want: []strictyaml.Finding{errAt("spec.controlPlane.count", 9, 12, "must be an odd number from 1 to 7, got 9")},
		},
		{
			name: "control plane count negative",
			doc:  head + qemu + "  controlPlane:\n    count: -3\n    image: x\n" + gen,
			want: []strictyaml.Finding{errAt("spec.controlPlane.count", 9, 12, "must be an odd number from 1 to 7, got -3")},
		},
		{
			name: "control plane counts 1 to 7 that are odd",
			doc:  head + qemu + "  controlPlane:\n    count: 7\n    image: x\n" + gen,
		},
		{
			name: "control plane image required",
			doc:  head + qemu + "  controlPlane:\n    count: 3\n" + gen,
			want: []strictyaml.Finding{errAt("spec.controlPlane.image", 9, 5, "required")},
		},
		{
			name: "missing control plane points at spec",
			doc:  head + qemu + gen,
			want: []strictyaml.Finding{errAt("spec.controlPlane.image", 6, 3, "required")},
		},

		// spec.nodePools.
		{
			name: "pool names",
			doc: minimal + "  nodePools:\n" +
				"    - name: Workers\n      count: 1\n      image: x\n" +
				"    - name: b\n      count: 1\n      image: x\n" +
				"    - name: b\n      count: 1\n      image: x\n" +
				"    - count: 1\n      image: x\n",
			want: []strictyaml.Finding{
				errAt("spec.nodePools[0].name", 13, 13, `"Workers" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`),
				errAt("spec.nodePools[2].name", 19, 13, `duplicate pool name "b", also at spec.nodePools[1]`),
				errAt("spec.nodePools[3].name", 22, 7, "required"),
			},
		},
		{
			name: "pool counts and image",
			doc:  minimal + "  nodePools:\n    - name: a\n      count: -1\n      maxUnavailable: -2\n",
			want: []strictyaml.Finding{
				errAt("spec.nodePools[0].image", 13, 7, "required"),
				errAt("spec.nodePools[0].count", 14, 14, "must be 0 or more, got -1"),
				errAt("spec.nodePools[0].maxUnavailable", 15, 23, "must be 0 or more, got -2"),
			},
		},
		{
			name: "pool of zero machines",
			doc:  minimal + "  nodePools:\n    - name: a\n      count: 0\n      image: x\n",
		},
		{
			name: "maxConcurrentReboots up to the pool's count",
			doc:  minimal + "  nodePools:\n    - name: a\n      count: 3\n      image: x\n      maxConcurrentReboots: 3\n",
		},
		{
			name: "maxConcurrentReboots 0 is the default",
			doc:  minimal + "  nodePools:\n    - name: a\n      count: 3\n      image: x\n      maxConcurrentReboots: 0\n",
			want: []strictyaml.Finding{warnAt("spec.nodePools[0].maxConcurrentReboots", 16, 29, "0 is replaced by the default, 1")},
		},
		{
			name: "maxConcurrentReboots beyond the count, below 1, and above 1 in an empty pool",
			doc: minimal + "  nodePools:\n" +
				"    - name: a\n      count: 2\n      image: x\n      maxConcurrentReboots: 3\n" +
				"    - name: b\n      count: 2\n      image: x\n      maxConcurrentReboots: -1\n" +
				"    - name: c\n      count: 0\n      image: x\n      maxConcurrentReboots: 2\n",
			want: []strictyaml.Finding{
				errAt("spec.nodePools[0].maxConcurrentReboots", 16, 29, "must be at most the pool's count, 2, got 3: a pool cannot reboot more nodes than it has"),
				errAt("spec.nodePools[1].maxConcurrentReboots", 20, 29, "must be at least 1, got -1"),
				errAt("spec.nodePools[2].maxConcurrentReboots", 24, 29, "must be 1 while the pool's count is 0, got 2"),
			},
		},
		{
			name: "maintenance windows in a zone",
			doc: head + qemu + cp + "    maintenanceWindow: {schedule: Sun 03:00-04:00, timeZone: America/New_York}\n" + gen +
				"  nodePools:\n    - name: a\n      count: 1\n      image: x\n      maintenanceWindow:\n        schedule: Fri 22:00-02:00\n        timeZone: Asia/Kolkata\n",
		},
		{
			name: "maintenance window with a bad schedule and zone reports both",
			doc:  head + qemu + cp + "    maintenanceWindow: {schedule: Mon 25:00-26:00, timeZone: Mars/Olympus}\n" + gen,
			want: []strictyaml.Finding{
				errAt("spec.controlPlane.maintenanceWindow.schedule", 10, 35, `"Mon 25:00-26:00": start "25:00" is not a time from 00:00 to 23:59 (HH:MM)`),
				errAt("spec.controlPlane.maintenanceWindow.timeZone", 10, 62, `"Mars/Olympus": is not an IANA time zone name (e.g. Europe/Berlin, America/New_York, UTC)`),
			},
		},
		{
			name: "maintenance window without a schedule",
			doc:  head + qemu + cp + "    maintenanceWindow: {timeZone: Europe/Berlin}\n" + gen,
			want: []strictyaml.Finding{errAt("spec.controlPlane.maintenanceWindow.schedule", 10, 24, "required")},
		},
		{
			name: "label keys and values",
			doc: minimal + "  nodePools:\n    - name: a\n      count: 1\n      image: x\n      labels:\n" +
				"        example.com/role: worker\n" +
				"        Example.com/role: x\n" +
				"        /role: x\n" +
				"        role-: x\n" +
				"        tier: \"" + strings.Repeat("v", 64) + "\"\n" +
				"        zone: eu west\n" +
				"        empty: \"\"\n",
			want: []strictyaml.Finding{
				errAt(`spec.nodePools[0].labels["Example.com/role"]`, 18, 9, `label key "Example.com/role" has a prefix that is not a DNS name (lowercase, e.g. example.com/)`),
				errAt(`spec.nodePools[0].labels["/role"]`, 19, 9, `label key "/role" has an empty prefix before '/'`),
				errAt(`spec.nodePools[0].labels.role-`, 20, 9, `label key "role-" is not a qualified name ([prefix/]name: letters, digits, '-', '_' and '.', starting and ending with a letter or digit)`),
				errAt(`spec.nodePools[0].labels.tier`, 21, 15, `label value "`+strings.Repeat("v", 64)+`" is longer than 63 characters`),
				errAt(`spec.nodePools[0].labels.zone`, 22, 15, `label value "eu west" may only hold letters, digits, '-', '_' and '.', starting and ending with a letter or digit`),
			},
		},
		{
			name: "taints",
			doc: minimal + "  nodePools:\n    - name: a\n      count: 1\n      image: x\n      taints:\n" +
				"        - {key: gpu, effect: NoSchedule}\n" +
				"        - {key: gpu, value: \"yes\", effect: NoSchedule}\n" +
				"        - {key: gpu, effect: PreferNoSchedule}\n" +
				"        - {effect: NoExecute}\n" +
				"        - {key: gpu, effect: Evict}\n" +
				"        - {key: \"bad key\", value: \"a b\"}\n",
			want: []strictyaml.Finding{
				errAt("spec.nodePools[0].taints[1]", 18, 11, "duplicate taint gpu:NoSchedule, also at spec.nodePools[0].taints[0]"),
				errAt("spec.nodePools[0].taints[3].key", 20, 11, "required"),
				errAt("spec.nodePools[0].taints[4].effect", 21, 30, `unknown effect "Evict", want one of NoSchedule, PreferNoSchedule, NoExecute`),
				errAt("spec.nodePools[0].taints[5].effect", 22, 11, "required, one of NoSchedule, PreferNoSchedule, NoExecute"),
				errAt("spec.nodePools[0].taints[5].key", 22, 17, `taint key "bad key" is not a qualified name ([prefix/]name: letters, digits, '-', '_' and '.', starting and ending with a letter or digit)`),
				errAt("spec.nodePools[0].taints[5].value", 22, 35, `taint value "a b" may only hold letters, digits, '-', '_' and '.', starting and ending with a letter or digit`),
			},
		},
		{
			// apimachinery's label key check accepts a prefix with a label longer than 63 characters (it
			// limits only the whole prefix, to 253); kiln keeps DNS's limit.
			name: "label and taint key limits",
			doc: minimal + "  nodePools:\n    - name: a\n      count: 1\n      image: x\n      labels:\n" +
				"        " + strings.Repeat("n", 63) + ": " + strings.Repeat("v", 63) + "\n" +
				"        example.com/" + strings.Repeat("n", 63) + ": x\n" +
				"        " + strings.Repeat("n", 64) + ": x\n" +
				"        a/b/c: x\n" +
				"        example.com/: x\n" +
				"        " + strings.Repeat("a", 64) + ".example.com/role: x\n" +
				"      taints:\n" +
				"        - {key: " + strings.Repeat("a", 64) + ".example.com/gpu, effect: NoSchedule}\n",
			want: []strictyaml.Finding{
				errAt("spec.nodePools[0].labels."+strings.Repeat("n", 64), 19, 9, `label key "`+strings.Repeat("n", 64)+`" has a name longer than 63 characters`),
				errAt(`spec.nodePools[0].labels["a/b/c"]`, 20, 9, `label key "a/b/c" is not a qualified name ([prefix/]name: letters, digits, '-', '_' and '.', starting and ending with a letter or digit)`),
				errAt(`spec.nodePools[0].labels["example.com/"]`, 21, 9, `label key "example.com/" has an empty name`),
				errAt(`spec.nodePools[0].labels["`+strings.Repeat("a", 64)+`.example.com/role"]`, 22, 9, `label key `+quote(strings.Repeat("a", 64)+".example.com/role")+` has a prefix that is not a DNS name (lowercase, e.g. example.com/)`),
				errAt("spec.nodePools[0].taints[0].key", 24, 17, `taint key `+quote(strings.Repeat("a", 64)+".example.com/gpu")+` has a prefix that is not a DNS name (lowercase, e.g. example.com/)`),
			},
		},
		{
			name: "DNS label limits: the form is reported before the length",
			doc: minimal + "  nodePools:\n" +
				"    - name: " + strings.Repeat("a", 63) + "\n      count: 1\n      image: x\n" +
				"    - name: " + strings.Repeat("b", 64) + "\n      count: 1\n      image: x\n" +
				"    - name: C" + strings.Repeat("c", 63) + "\n      count: 1\n      image: x\n" +
				"  security:\n    podSecurity:\n      namespaces:\n" +
				"        " + strings.Repeat("n", 63) + ": {enforce: baseline}\n" +
				"        " + strings.Repeat("n", 64) + ": {enforce: baseline}\n",
			want: []strictyaml.Finding{
				errAt("spec.nodePools[1].name", 16, 13, quote(strings.Repeat("b", 64))+" is 64 characters long, at most 63"),
				errAt("spec.nodePools[2].name", 19, 13, quote("C"+strings.Repeat("c", 63))+` is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`),
				errAt("spec.security.podSecurity.namespaces."+strings.Repeat("n", 64), 26, 9, quote(strings.Repeat("n", 64))+` is not a namespace name (a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)`),
			},
		},

		// spec.ssh.
		{
			name: "ssh needs a key source",
			doc:  head + qemu + cp + "  ssh:\n    user: admin\n",
			want: []strictyaml.Finding{errAt("spec.ssh", 11, 5, "set generate: true or give authorizedKeys")},
		},
		{
			name: "missing ssh points at spec",
			doc:  head + qemu + cp,
			want: []strictyaml.Finding{errAt("spec.ssh", 6, 3, "set generate: true or give authorizedKeys")},
		},
		{
			name: "ssh generate and keys",
			doc:  head + qemu + cp + "  ssh:\n    generate: true\n    authorizedKeys:\n      - " + keyED25519 + "\n",
			want: []strictyaml.Finding{errAt("spec.ssh", 11, 5, "set either generate: true or authorizedKeys, not both")},
		},
		{
			name: "ssh generate false and an empty list",
			doc:  head + qemu + cp + "  ssh:\n    generate: false\n    authorizedKeys: []\n",
			want: []strictyaml.Finding{errAt("spec.ssh", 11, 5, "set generate: true or give authorizedKeys")},
		},
		{
			name: "accepted key types",
			doc: head + qemu + cp + "  ssh:\n    authorizedKeys:\n" +
				"      - " + keyED25519 + "\n" +
				"      - " + keyECDSA256 + "\n" +
				"      - " + keyECDSA384 + "\n" +
				"      - " + keyRSA3072 + "\n" +
				"      - " + skED25519Key() + "\n" +
				"      - 'from=\"10.0.0.0/8\" " + keyED25519 + "'\n",
		},
		{
			name: "rejected keys",
			doc: head + qemu + cp + "  ssh:\n    authorizedKeys:\n" +
				"      - " + keyRSA2048 + "\n" +
				"      - " + keyDSA + "\n" +
				"      - " + certED25519 + "\n" +
				"      - ssh-ed25519 AAAA\n" +
				"      - \"\"\n" +
				"      - |\n        " + keyED25519 + "\n        " + keyECDSA256 + "\n",
			want: []strictyaml.Finding{
				errAt("spec.ssh.authorizedKeys[0]", 12, 9, "RSA key of 2048 bits is too short, need at least 3072 (or use ed25519)"),
				errAt("spec.ssh.authorizedKeys[1]", 13, 9, "DSA keys are insecure and OpenSSH no longer accepts them; use ed25519"),
				errAt("spec.ssh.authorizedKeys[2]", 14, 9, "ssh-ed25519-cert-v01@openssh.com is a certificate, not a public key; give the plain public key"),
				errAt("spec.ssh.authorizedKeys[3]", 15, 9, "not a public key in authorized_keys format: ssh: no key found; last parsing error for ignored line: ssh: short read"),
				errAt("spec.ssh.authorizedKeys[4]", 16, 9, "empty key"),
				errAt("spec.ssh.authorizedKeys[5]", 17, 9, "more than one key: give each key its own entry"),
			},
		},
		{
			name: "ssh user root",
			doc:  head + qemu + cp + "  ssh:\n    user: root\n    generate: true\n",
			want: []strictyaml.Finding{errAt("spec.ssh.user", 11, 11, "must not be root: the admin user is an unprivileged account that uses sudo")},
		},
		{
			name: "ssh user not a Linux user name",
			doc:  head + qemu + cp + "  ssh:\n    user: Admin\n    generate: true\n",
			want: []strictyaml.Finding{errAt("spec.ssh.user", 11, 11, `"Admin" is not a Linux user name (a lowercase letter or '_', then lowercase letters, digits, '_' or '-', at most 32 characters)`)},
		},
		{
			name: "ssh user too long",
			doc:  head + qemu + cp + "  ssh:\n    user: " + strings.Repeat("u", 33) + "\n    generate: true\n",
			want: []strictyaml.Finding{errAt("spec.ssh.user", 11, 11, `"`+strings.Repeat("u", 33)+`" is not a Linux user name (a lowercase letter or '_', then lowercase letters, digits, '_' or '-', at most 32 characters)`)},
		},

		// spec.security.
		{
			name: "pod security levels",
			doc: minimal + "  security:\n    podSecurity:\n      defaults:\n        enforce: strict\n        warn: privileged\n" +
				"      namespaces:\n        kube-system: {enforce: privileged, audit: none}\n",
			want: []strictyaml.Finding{
				errAt("spec.security.podSecurity.defaults.enforce", 15, 18, `unknown level "strict", want one of privileged, baseline, restricted`),
				errAt("spec.security.podSecurity.namespaces.kube-system.audit", 18, 51, `unknown level "none", want one of privileged, baseline, restricted`),
			},
		},
		{
			name: "privileged by default",
			doc:  minimal + "  security:\n    podSecurity:\n      defaults:\n        enforce: privileged\n",
			want: []strictyaml.Finding{warnAt("spec.security.podSecurity.defaults.enforce", 15, 18, "privileged lets any pod run in namespaces without their own level")},
		},
		{
			name: "namespace names",
			doc:  minimal + "  security:\n    podSecurity:\n      namespaces:\n        Kube_System: {enforce: privileged}\n        empty: {}\n",
			want: []strictyaml.Finding{
				errAt("spec.security.podSecurity.namespaces.Kube_System", 15, 9, `"Kube_System" is not a namespace name (a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)`),
				warnAt("spec.security.podSecurity.namespaces.empty", 16, 16, "no level set, the namespace gets the defaults"),
			},
		},
		{
			name: "identity encryption",
			doc:  minimal + "  security:\n    encryption:\n      provider: identity\n",
			want: []strictyaml.Finding{errAt("spec.security.encryption.provider", 14, 17, "identity would store Secrets unencrypted; use secretbox, aesgcm or aescbc")},
		},
		{
			name: "unknown encryption provider",
			doc:  minimal + "  security:\n    encryption:\n      provider: kms\n",
			want: []strictyaml.Finding{errAt("spec.security.encryption.provider", 14, 17, `unknown provider "kms", want one of aescbc, aesgcm, secretbox`)},
		},
		{
			name: "aescbc encryption",
			doc:  minimal + "  security:\n    encryption:\n      provider: aescbc\n",
			want: []strictyaml.Finding{warnAt("spec.security.encryption.provider", 14, 17, "aescbc is open to padding oracle attacks; secretbox or aesgcm are recommended")},
		},
		{
			name: "aesgcm encryption",
			doc:  minimal + "  security:\n    encryption:\n      provider: aesgcm\n",
			want: []strictyaml.Finding{warnAt("spec.security.encryption.provider", 14, 17, "aesgcm keys must be rotated before about 200000 writes; secretbox needs no rotation")},
		},
		{
			name: "audit off",
			doc:  minimal + "  security:\n    audit:\n      enabled: false\n",
			want: []strictyaml.Finding{warnAt("spec.security.audit.enabled", 14, 16, "the API server keeps no audit log")},
		},
		{
			name: "bootstrap token TTL too short",
			doc:  minimal + "  security:\n    bootstrapTokenTTL: 30s\n",
			want: []strictyaml.Finding{errAt("spec.security.bootstrapTokenTTL", 13, 24, "must be from 1m to 24h, got 30s")},
		},
		{
			name: "bootstrap token TTL too long",
			doc:  minimal + "  security:\n    bootstrapTokenTTL: 24h1s\n",
			want: []strictyaml.Finding{errAt("spec.security.bootstrapTokenTTL", 13, 24, "must be from 1m to 24h, got 24h0m1s")},
		},
		{
			name: "bootstrap token TTL at the limits",
			doc:  minimal + "  security:\n    bootstrapTokenTTL: 24h\n",
		},

		// spec.health.
		{
			name: "timeouts negative",
			doc:  minimal + "  health:\n    nodeStartupTimeout: -10m\n    unhealthyTimeout: -1s\n",
			want: []strictyaml.Finding{
				errAt("spec.health.nodeStartupTimeout", 13, 25, "must be positive, got -10m"),
				errAt("spec.health.unhealthyTimeout", 14, 23, "must be positive, got -1s"),
			},
		},
		{
			name: "maxUnhealthy above 100%",
			doc:  minimal + "  health:\n    maxUnhealthy: 101%\n",
			want: []strictyaml.Finding{errAt("spec.health.maxUnhealthy", 13, 19, `"101%" is not a percentage from 0% to 100%`)},
		},
		{
			name: "maxUnhealthy not a number",
			doc:  minimal + "  health:\n    maxUnhealthy: half\n",
			want: []strictyaml.Finding{errAt("spec.health.maxUnhealthy", 13, 19, `"half" is neither a percentage like "40%" nor a count of nodes`)},
		},
		{
			name: "maxUnhealthy negative",
			doc:  minimal + "  health:\n    maxUnhealthy: -1\n",
			want: []strictyaml.Finding{errAt("spec.health.maxUnhealthy", 13, 19, `"-1" is neither a percentage like "40%" nor a count of nodes`)},
		},
		{
			name: "maxUnhealthy fraction of a percent",
			doc:  minimal + "  health:\n    maxUnhealthy: 12.5%\n",
			want: []strictyaml.Finding{errAt("spec.health.maxUnhealthy", 13, 19, `"12.5%" is neither a percentage like "40%" nor a count of nodes`)},
		},
		{
			name: "maxUnhealthy zero",
			doc:  minimal + "  health:\n    maxUnhealthy: 0%\n",
			want: []strictyaml.Finding{warnAt("spec.health.maxUnhealthy", 13, 19, "0% stops all remediation as soon as one node is unhealthy")},
		},
		{
			name: "maxUnhealthy 100%",
			doc:  minimal + "  health:\n    maxUnhealthy: 100%\n",
			want: []strictyaml.Finding{warnAt("spec.health.maxUnhealthy", 13, 19, "100% never stops remediation, even when a partition makes every node look unhealthy")},
		},
		{
			name: "maxUnhealthy count",
			doc:  minimal + "  health:\n    maxUnhealthy: \"5\"\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := findingsOf(t, tc.doc)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateWithoutDecode(t *testing.T) {
	tests := []struct {
		name string
		c    *Cluster
		want []strictyaml.Finding
	}{
		{
			name: "starter",
			c:    Starter("demo"),
		},
		{
			name: "zero cluster",
			c:    &Cluster{},
			want: []strictyaml.Finding{
				{Path: "apiVersion", Message: `required, want "kiln.dev/v1alpha1"`},
				{Path: "kind", Message: `required, want "Cluster"`},
				{Path: "metadata.name", Message: "required"},
				{Path: "spec.kubernetesVersion", Message: "required"},
				{Path: "spec.provider.name", Message: "required, one of aws, vsphere, metal, qemu"},
				{Path: "spec.network.nodeCIDR", Message: "required"},
				{Path: "spec.network.podCIDR", Message: "required"},
				{Path: "spec.network.serviceCIDR", Message: "required"},
				{Path: "spec.network.clusterDomain", Message: "required"},
				{Path: "spec.network.apiEndpoint.port", Message: "must be a port from 1 to 65535, got 0"},
				{Path: "spec.controlPlane.count", Message: "must be an odd number from 1 to 7, got 0"},
				{Path: "spec.controlPlane.image", Message: "required"},
				{Path: "spec.ssh.user", Message: "required"},
				{Path: "spec.ssh", Message: "set generate: true or give authorizedKeys"},
				{Path: "spec.security.podSecurity.defaults.enforce", Message: "required, one of privileged, baseline, restricted"},
				{Path: "spec.security.podSecurity.defaults.audit", Message: "required, one of privileged, baseline, restricted"},
				{Path: "spec.security.podSecurity.defaults.warn", Message: "required, one of privileged, baseline, restricted"},
				{Path: "spec.security.encryption.provider", Message: "required, one of aescbc, aesgcm, secretbox"},
				{Path: "spec.security.bootstrapTokenTTL", Message: "must be from 1m to 24h, got 0s"},
				{Path: "spec.security.enrollmentTTL", Message: "must be from 1m to 24h, got 0s"},
				{Path: "spec.health.nodeStartupTimeout", Message: "must be positive, got 0s"},
				{Path: "spec.health.unhealthyTimeout", Message: "must be positive, got 0s"},
				{Path: "spec.health.maxUnhealthy", Message: `required, a percentage like "40%" or a count of nodes`},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Validate(tc.c)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMaxUnhealthyCount(t *testing.T) {
	tests := []struct {
		name         string
		maxUnhealthy string
		total, want  int
	}{
		{name: "default 40% of 10", maxUnhealthy: "", total: 10, want: 4},
		{name: "40% of 3 rounds down", maxUnhealthy: "40%", total: 3, want: 1},
		{name: "40% of 2 rounds down, but to at least 1", maxUnhealthy: "40%", total: 2, want: 1},
		{name: "40% of 1 allows the one", maxUnhealthy: "40%", total: 1, want: 1},
		{name: "1% of 1000 rounds down", maxUnhealthy: "1%", total: 1000, want: 10},
		{name: "100%", maxUnhealthy: "100%", total: 7, want: 7},
		{name: "0%", maxUnhealthy: "0%", total: 7, want: 0},
		{name: "count", maxUnhealthy: "2", total: 10, want: 2},
		{name: "count above total", maxUnhealthy: "20", total: 10, want: 20},
		{name: "invalid", maxUnhealthy: "many", total: 10, want: 0},
		{name: "no nodes", maxUnhealthy: "40%", total: 0, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Health{MaxUnhealthy: tc.maxUnhealthy}).MaxUnhealthyCount(tc.total); got != tc.want {
				t.Errorf("MaxUnhealthyCount(%d) with %q = %d, want %d", tc.total, tc.maxUnhealthy, got, tc.want)
			}
		})
	}
}

// TestMaintenanceWindowWindow checks the parsed windows that callers get: none is always open, a
// schedule in its zone, and window.Parse's error for a spec that was not validated.
func TestMaintenanceWindowWindow(t *testing.T) {
	var none *MaintenanceWindow
	if w, err := none.Window(); err != nil || w != (window.Window{}) {
		t.Errorf("no window: %v, %v, want the zero window.Window", w, err)
	}
	p := NodePool{MaintenanceWindow: &MaintenanceWindow{Schedule: "Sat,Sun 01:00-06:00", TimeZone: "Asia/Kolkata"}}
	w, err := p.Window()
	if err != nil || w.String() != "Sat,Sun 01:00-06:00" || w.TimeZone() != "Asia/Kolkata" {
		t.Errorf("pool window: %v in %q, %v", w, w.TimeZone(), err)
	}
	cp := ControlPlane{MaintenanceWindow: &MaintenanceWindow{Schedule: "Sun 03:00-03:00"}}
	if _, err := cp.Window(); err == nil || !strings.Contains(err.Error(), "start and end are both 03:00") {
		t.Errorf("control-plane window: error %v, want window.Parse's", err)
	}
}
