package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash/fnv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
)

// liveStates are the instance states List reports (terminated instances are gone for good).
var liveStates = []string{"pending", "running", "shutting-down", "stopping", "stopped"}

// Create launches the machine unless it exists: RunInstances with the client token
// provisioner.ClientToken(cluster, name), so a retry, a second controller or a restart after a crash
// gets the same instance back. The instance has no public IP, requires IMDSv2 (hop limit 1), has an
// encrypted root volume, the optional instance profile, the role's security group and a private
// subnet (spread over the zones by ordinal) and, for a worker of a pool with inbound rules of its own,
// the pool's group too, and is tagged with its cluster, role, pool and name. A machine whose address
// was reserved (Reserve) is launched with the network interface that holds it as its primary one
// (device 0), which brings that subnet, those groups and that address, and outlives the instance.
// Its user-data is the Ignition config, or a stub that fetches it from S3 (see UserData).
func (p *Provider) Create(ctx context.Context, spec provisioner.MachineSpec) (provisioner.Machine, error) {
	if err := ctx.Err(); err != nil {
		return provisioner.Machine{}, err
	}
	if err := checkSpec(spec); err != nil {
		return provisioner.Machine{}, err
	}
	net, err := p.network(ctx, spec.Cluster)
	if err != nil {
		return provisioner.Machine{}, fmt.Errorf("aws: run instance %q: %w", spec.Name, err)
	}
	subnet, groups, err := net.place(spec)
	if err != nil {
		return provisioner.Machine{}, fmt.Errorf("aws: run instance %q: %w", spec.Name, err)
	}
	defer p.lockName(spec.Name)()
	enis, err := p.interfaces(ctx, spec.Cluster, spec.Name)
	if err != nil {
		return provisioner.Machine{}, wrap(err, "run instance %q: find its reserved address", spec.Name)
	}
	eni := reservedInterface(spec.Cluster, spec.Name, enis)
	what := fmt.Sprintf("run instance %q", spec.Name)
	nic := ec2types.InstanceNetworkInterfaceSpecification{
		DeviceIndex:              aws.Int32(0),
		SubnetId:                 aws.String(subnet),
		Groups:                   groups,
		AssociatePublicIpAddress: aws.Bool(false),
		DeleteOnTermination:      aws.Bool(true),
	}
	if eni != nil {
		// The reserved address: its interface is the instance's, and stays when the instance goes.
		if err := reservedFits(*eni, spec, groups); err != nil {
			return provisioner.Machine{}, err
		}
		nic = ec2types.InstanceNetworkInterfaceSpecification{
			DeviceIndex:         aws.Int32(0),
			NetworkInterfaceId:  eni.NetworkInterfaceId,
			DeleteOnTermination: aws.Bool(false),
		}
		what = fmt.Sprintf("run instance %q with network interface %s in subnet %s", spec.Name, aws.ToString(eni.NetworkInterfaceId), aws.ToString(eni.SubnetId))
	}
	root, err := p.rootDevice(ctx, spec.Image)
	if err != nil {
		return provisioner.Machine{}, fmt.Errorf("aws: run instance %q: %w", spec.Name, err)
	}
	userData, err := p.userData(ctx, spec)
	if err != nil {
		return provisioner.Machine{}, err
	}
	in := &ec2.RunInstancesInput{
		ImageId:           aws.String(spec.Image),
		InstanceType:      ec2types.InstanceType(p.opts.InstanceType),
		MinCount:          aws.Int32(1),
		MaxCount:          aws.Int32(1),
		UserData:          aws.String(base64.StdEncoding.EncodeToString(userData)),
		NetworkInterfaces: []ec2types.InstanceNetworkInterfaceSpecification{nic},
		MetadataOptions: &ec2types.InstanceMetadataOptionsRequest{
			HttpTokens:              ec2types.HttpTokensStateRequired,
			HttpPutResponseHopLimit: aws.Int32(1),
			HttpEndpoint:            ec2types.InstanceMetadataEndpointStateEnabled,
		},
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{
			DeviceName: aws.String(root),
			Ebs:        &ec2types.EbsBlockDevice{Encrypted: aws.Bool(true), DeleteOnTermination: aws.Bool(true), VolumeType: ec2types.VolumeTypeGp3},
		}},
		TagSpecifications: []ec2types.TagSpecification{
			{ResourceType: ec2types.ResourceTypeInstance, Tags: machineTags(spec)},
			{ResourceType: ec2types.ResourceTypeVolume, Tags: machineTags(spec)},
		},
	}
	if p.opts.RootVolumeGiB > 0 {
		in.BlockDeviceMappings[0].Ebs.VolumeSize = aws.Int32(p.opts.RootVolumeGiB)
	}
	if p.opts.InstanceProfile != "" {
		in.IamInstanceProfile = &ec2types.IamInstanceProfileSpecification{Name: aws.String(p.opts.InstanceProfile)}
	}
	token := provisioner.ClientToken(spec.Cluster, spec.Name)
	// A token keeps naming its instance after that instance is terminated; a machine made again after
	// a Delete takes the next token of a chain that every controller computes alike.
	for range 16 {
		in.ClientToken = aws.String(token)
		inst, err := p.run(ctx, what, in)
		if eni != nil && apiCode(err) == "InvalidNetworkInterface.InUse" {
			// The machine's previous instance is still letting go of the interface.
			if err := p.interfaceAvailable(ctx, spec.Name, aws.ToString(eni.NetworkInterfaceId)); err != nil {
				return provisioner.Machine{}, err
			}
			continue
		}
		if err != nil {
			return provisioner.Machine{}, err
		}
		switch inst.State.Name {
		case ec2types.InstanceStateNameTerminated, ec2types.InstanceStateNameShuttingDown:
			token = nextToken(token, aws.ToString(inst.InstanceId))
			continue
		}
		return machine(inst), nil
	}
	return provisioner.Machine{}, fmt.Errorf("aws: %s: 16 attempts, each answered with a terminated instance or the network interface still in use: %w", what, ErrTimeout)
}

// run calls RunInstances once with in's client token and returns the token's instance, looking it
// up when EC2 says the token was used with other parameters (the presigned URL of a stub differs
// from one attempt to the next). Its errors say what: "run instance "x" ...".
func (p *Provider) run(ctx context.Context, what string, in *ec2.RunInstancesInput) (ec2types.Instance, error) {
	out, err := p.ec2.RunInstances(ctx, in)
	if err == nil {
		if len(out.Instances) != 1 {
			return ec2types.Instance{}, fmt.Errorf("aws: %s: RunInstances returned %d instances, want 1", what, len(out.Instances))
		}
		return out.Instances[0], nil
	}
	if apiCode(err) != "IdempotentParameterMismatch" {
		return ec2types.Instance{}, wrap(err, "%s", what)
	}
	// The instance may not be visible yet (EC2 is eventually consistent): wait with EC2's
	// InstanceExists waiter.
	what += ": find the instance by its client token"
	find := &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{filter("client-token", aws.ToString(in.ClientToken))}}
	found, err := ec2.NewInstanceExistsWaiter(p.ec2).WaitForOutput(ctx, find, p.waitBudget(), func(o *ec2.InstanceExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = p.opts.PollInterval, p.opts.PollInterval
		o.Retryable = capChecks(p, what, o.Retryable)
	})
	if err != nil {
		return ec2types.Instance{}, waited(ctx, what, err)
	}
	for _, r := range found.Reservations {
		if len(r.Instances) > 0 {
			return r.Instances[0], nil
		}
	}
	return ec2types.Instance{}, fmt.Errorf("aws: %s: DescribeInstances returned reservations without instances", what)
}

func nextToken(token, terminated string) string {
	sum := sha256.Sum256([]byte("kiln.dev/next\x00" + token + "\x00" + terminated))
	return hex.EncodeToString(sum[:])
}

func checkSpec(spec provisioner.MachineSpec) error {
	var missing []string
	for _, f := range []struct{ name, v string }{{"Cluster", spec.Cluster}, {"Name", spec.Name}, {"Role", spec.Role}, {"Pool", spec.Pool}, {"Image", spec.Image}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("aws: run instance %q: machine spec lacks %v: %w", spec.Name, missing, ErrInvalidSpec)
	}
	if spec.Role != v1alpha1.RoleControlPlane && spec.Role != v1alpha1.RoleWorker {
		return fmt.Errorf("aws: run instance %q: role %q is not %s or %s: %w", spec.Name, spec.Role, v1alpha1.RoleControlPlane, v1alpha1.RoleWorker, ErrInvalidSpec)
	}
	if len(spec.Ignition) == 0 {
		return fmt.Errorf("aws: run instance %q: no Ignition config: %w", spec.Name, ErrInvalidSpec)
	}
	return nil
}

// pickSubnet spreads a pool's machines over the private subnets by ordinal (by name hash otherwise),
// the same subnet for the same machine every time, so that a retried RunInstances asks for the same.
func pickSubnet(subnets []string, spec provisioner.MachineSpec) string {
	i, ok := provisioner.Ordinal(spec.Cluster, spec.Pool, spec.Name)
	if !ok {
		h := fnv.New32a()
		h.Write([]byte(spec.Name))
		i = int(h.Sum32() & 0x7fffffff)
	}
	return subnets[i%len(subnets)]
}

func machineTags(spec provisioner.MachineSpec) []ec2types.Tag {
	return []ec2types.Tag{
		tag(TagCluster, spec.Cluster), tag(TagRole, spec.Role), tag(TagPool, spec.Pool), tag(TagName, spec.Name), tag("Name", spec.Name),
	}
}

// rootDevice returns the root device name of the image, which the encrypted root volume mapping
// must name.
func (p *Provider) rootDevice(ctx context.Context, image string) (string, error) {
	p.mu.Lock()
	root, ok := p.roots[image]
	p.mu.Unlock()
	if ok {
		return root, nil
	}
	out, err := p.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{image}})
	if err != nil {
		return "", wrap(err, "describe image %s", image)
	}
	if len(out.Images) != 1 || out.Images[0].RootDeviceName == nil {
		return "", fmt.Errorf("aws: image %s not found or without a root device: %w", image, ErrInvalidSpec)
	}
	root = aws.ToString(out.Images[0].RootDeviceName)
	p.mu.Lock()
	p.roots[image] = root
	p.mu.Unlock()
	return root, nil
}

func machine(in ec2types.Instance) provisioner.Machine {
	m := provisioner.Machine{
		Name:    tagValue(in.Tags, TagName),
		Cluster: tagValue(in.Tags, TagCluster),
		Role:    tagValue(in.Tags, TagRole),
		Pool:    tagValue(in.Tags, TagPool),
		Image:   aws.ToString(in.ImageId),
		Created: aws.ToTime(in.LaunchTime),
		Address: aws.ToString(in.PrivateIpAddress),
	}
	var state ec2types.InstanceStateName
	if in.State != nil {
		state = in.State.Name
	}
	switch state {
	case ec2types.InstanceStateNamePending:
		m.State = provisioner.StatePending
	case ec2types.InstanceStateNameRunning:
		m.State = provisioner.StateRunning
	case ec2types.InstanceStateNameStopping, ec2types.InstanceStateNameStopped:
		m.State = provisioner.StateStopped
	case ec2types.InstanceStateNameShuttingDown, ec2types.InstanceStateNameTerminated:
		m.State = provisioner.StateGone
	default:
		m.State = provisioner.StateError
	}
	return m
}

// describe lists the instances matching filters, every page.
func (p *Provider) describe(ctx context.Context, filters []ec2types.Filter) ([]ec2types.Instance, error) {
	var out []ec2types.Instance
	pages := ec2.NewDescribeInstancesPaginator(p.ec2, &ec2.DescribeInstancesInput{Filters: filters, MaxResults: aws.Int32(p.opts.PageSize)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			out = append(out, r.Instances...)
		}
	}
	return out, nil
}

// List returns the cluster's machines with one paginated DescribeInstances filtered by the cluster
// tag; terminated instances are left out, shutting-down ones are StateGone.
func (p *Provider) List(ctx context.Context, cluster string) ([]provisioner.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ins, err := p.describe(ctx, []ec2types.Filter{clusterFilter(cluster), filter("instance-state-name", liveStates...)})
	if err != nil {
		return nil, wrap(err, "list the instances of cluster %q", cluster)
	}
	out := make([]provisioner.Machine, 0, len(ins))
	for _, in := range ins {
		out = append(out, machine(in))
	}
	return out, nil
}

// byName returns the live instances named name.
func (p *Provider) byName(ctx context.Context, name string, states ...string) ([]ec2types.Instance, error) {
	return p.describe(ctx, []ec2types.Filter{filter("tag:"+TagName, name), filter("instance-state-name", states...)})
}

// Delete terminates the machine's instances, then deletes the network interface that holds its
// reserved address once the instance has let go of it, and its bootstrap object; a machine that does
// not exist is not an error, and one with only a reserved address loses the address.
func (p *Provider) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ins, err := p.byName(ctx, name, "pending", "running", "stopping", "stopped")
	if err != nil {
		return wrap(err, "find instance %q", name)
	}
	var ids []string
	for _, in := range ins {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	if len(ids) > 0 {
		_, err := p.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids})
		if err != nil && apiCode(err) != "InvalidInstanceID.NotFound" {
			return wrap(err, "terminate instance %q", name)
		}
	}
	if err := p.releaseAddress(ctx, name); err != nil {
		return err
	}
	return p.deleteObject(ctx, name)
}

// Stop stops the machine's running instances and keeps them; a stopped or missing machine is not an
// error. An instance still pending is waited for, since EC2 cannot stop it yet.
func (p *Provider) Stop(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.poll(ctx, fmt.Sprintf("stop instance %q", name), func(ctx context.Context) (bool, error) {
		ins, err := p.byName(ctx, name, "pending", "running")
		if err != nil {
			return false, wrap(err, "find instance %q", name)
		}
		var ids []string
		for _, in := range ins {
			ids = append(ids, aws.ToString(in.InstanceId))
		}
		if len(ids) == 0 {
			return true, nil
		}
		_, err = p.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: ids})
		switch apiCode(err) {
		case "":
			return true, nil
		case "IncorrectInstanceState":
			return false, nil
		}
		return false, wrap(err, "stop instance %q", name)
	})
}

// Joined is for the executor to call once the machine's node has joined the cluster (its Node is
// Ready; the executor never calls it because the instance is running): the bootstrap object in S3
// (which holds its keys, for a control-plane node) is deleted, and a control-plane instance is
// registered with the API load balancer.
func (p *Provider) Joined(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ins, err := p.byName(ctx, name, "running")
	if err != nil {
		return wrap(err, "find instance %q", name)
	}
	for _, in := range ins {
		if tagValue(in.Tags, TagRole) != v1alpha1.RoleControlPlane {
			continue
		}
		c := tagValue(in.Tags, TagCluster)
		tg, err := p.findTargetGroup(ctx, c, shortName(c, "api"))
		if err != nil {
			return err
		}
		if tg == nil {
			return fmt.Errorf("aws: register %q with the API load balancer: cluster %q has no target group: %w", name, c, ErrNoNetwork)
		}
		if err := p.registerControlPlane(ctx, c, aws.ToString(tg.TargetGroupArn), name); err != nil {
			return err
		}
	}
	return p.deleteObject(ctx, name)
}

// ObjectKey is the S3 key of a machine's bootstrap config.
func (p *Provider) ObjectKey(name string) string { return p.opts.BucketPrefix + name + ".ign" }

func (p *Provider) deleteObject(ctx context.Context, name string) error {
	if p.opts.Bucket == "" {
		return nil
	}
	_, err := p.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(p.opts.Bucket), Key: aws.String(p.ObjectKey(name))})
	return wrap(err, "delete the bootstrap object of %q", name)
}

// userData puts a machine's config in the bootstrap bucket and returns the instance's user-data: a
// stub that merges the config from a presigned https URL, valid for Options.PresignExpiry. The
// config never goes into user-data itself: user-data stays readable through the instance metadata
// service for the instance's life, by every process on it, and by anyone with
// ec2:DescribeInstanceAttribute; a worker's config holds its bootstrap token, a control plane's the
// cluster's keys.
func (p *Provider) userData(ctx context.Context, spec provisioner.MachineSpec) ([]byte, error) {
	if p.opts.Bucket == "" {
		return nil, fmt.Errorf("aws: run instance %q: its config goes through S3: %w", spec.Name, ErrNoBucket)
	}
	key := p.ObjectKey(spec.Name)
	_, err := p.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:               aws.String(p.opts.Bucket),
		Key:                  aws.String(key),
		Body:                 bytes.NewReader(spec.Ignition),
		ContentLength:        aws.Int64(int64(len(spec.Ignition))),
		ContentType:          aws.String("application/vnd.coreos.ignition+json"),
		ServerSideEncryption: s3types.ServerSideEncryptionAes256,
	})
	if err != nil {
		return nil, wrap(err, "put the bootstrap config of %q in s3://%s/%s", spec.Name, p.opts.Bucket, key)
	}
	req, err := p.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(p.opts.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, wrap(err, "presign the bootstrap config of %q", spec.Name)
	}
	stub, err := Stub(req.URL, spec.Ignition)
	if err != nil {
		return nil, fmt.Errorf("aws: run instance %q: %w", spec.Name, err)
	}
	return stub, nil
}
