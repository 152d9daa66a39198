package aws

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/aws/awstest"
)

// mutating are the actions that change AWS; a converged EnsureNetwork calls none of them.
func mutating(reqs []awstest.Request) []string {
	var out []string
	for _, r := range reqs {
		if r.Service == "s3" || strings.HasPrefix(r.Action, "Describe") {
			continue
		}
		out = append(out, r.Action)
	}
	return out
}

// ruleStrings renders the fake's rules of a group, sources as CIDRs or the source group's role.
func ruleStrings(rules []awstest.Rule, roleOf map[string]string) []string {
	var out []string
	for _, r := range rules {
		src := r.CIDR + r.CIDRv6
		if r.Group != "" {
			src = "sg:" + roleOf[r.Group]
		}
		out = append(out, strings.Join([]string{r.Protocol, strconv.Itoa(r.FromPort), strconv.Itoa(r.ToPort), src}, "/"))
	}
	sort.Strings(out)
	return out
}

// wantRules renders the compiled intent the way ruleStrings renders the fake's.
func wantRules(g GroupSpec) []string {
	var out []string
	for _, p := range g.Ingress {
		src := "sg:" + p.SourceRole
		if p.CIDR.IsValid() {
			src = p.CIDR.String()
		}
		out = append(out, strings.Join([]string{p.Protocol, strconv.Itoa(int(p.FromPort)), strconv.Itoa(int(p.ToPort)), src}, "/"))
	}
	sort.Strings(out)
	return out
}

func TestEnsureNetwork(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	spec := netSpec(t, testCluster("demo"))
	ctx := t.Context()
	n, err := p.EnsureNetwork(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if n.ID == "" || len(n.Subnets) != 2 || n.APIEndpoint.Port != 6443 || !strings.HasSuffix(n.APIEndpoint.Name, ".elb.us-east-1.amazonaws.com") {
		t.Fatalf("EnsureNetwork = %+v, want a VPC, two private subnets and the NLB's name on 6443", n)
	}

	t.Run("subnets and routes", func(t *testing.T) {
		zones := map[string]bool{}
		var public []string
		for _, s := range f.Subnets() {
			if s.Tags[TagCluster] != "demo" {
				t.Errorf("subnet %s is not tagged with the cluster", s.ID)
			}
			if s.MapPublicIP {
				t.Errorf("subnet %s maps public IPs on launch", s.ID)
			}
			switch s.Tags["kiln.dev/tier"] {
			case "private":
				zones[s.AZ] = true
				if !strings.HasPrefix(s.DefaultRoute, "nat-") {
					t.Errorf("private subnet %s routes 0.0.0.0/0 to %q, want a NAT gateway", s.ID, s.DefaultRoute)
				}
				if !slices.Contains(n.Subnets, s.ID) {
					t.Errorf("private subnet %s is not in the returned network", s.ID)
				}
			case "public":
				public = append(public, s.ID)
				if !strings.HasPrefix(s.DefaultRoute, "igw-") {
					t.Errorf("public subnet %s routes 0.0.0.0/0 to %q, want the internet gateway", s.ID, s.DefaultRoute)
				}
			default:
				t.Errorf("subnet %s has no tier", s.ID)
			}
		}
		if len(zones) != 2 || len(public) != 2 {
			t.Errorf("private subnets in %d zones and %d public subnets, want 2 and 2", len(zones), len(public))
		}
		lbs := f.LoadBalancers()
		lb, ok := lbs[shortName("demo", "api")]
		if !ok || len(lbs) != 1 {
			t.Fatalf("load balancers %v, want one named %s", lbs, shortName("demo", "api"))
		}
		slices.Sort(lb.Subnets)
		slices.Sort(public)
		if lb.Type != "network" || lb.Scheme != "internet-facing" || !slices.Equal(lb.Subnets, public) {
			t.Errorf("load balancer %+v, want an internet-facing NLB in the public subnets %v", lb, public)
		}
		if lb.Listeners[6443] != shortName("demo", "api") || len(lb.Listeners) != 1 {
			t.Errorf("listeners %v, want 6443 forwarding to the API target group", lb.Listeners)
		}
	})

	t.Run("only the intent's ingress rules exist", func(t *testing.T) {
		groups, err := SecurityGroups(spec.Firewall, APIAccess{Port: 6443, From: []netip.Prefix{pfx("10.0.0.0/16"), pfx("203.0.113.0/24")}})
		if err != nil {
			t.Fatal(err)
		}
		fakeGroups := f.SecurityGroups()
		roleOf := map[string]string{}
		for id, g := range fakeGroups {
			roleOf[id] = g.Tags[TagRole]
		}
		seen := 0
		for _, g := range fakeGroups {
			if g.Tags[TagCluster] != "demo" {
				if len(g.Ingress) != 1 || g.Name != "default" {
					t.Errorf("untagged group %s (%s) has rules %v", g.ID, g.Name, g.Ingress)
				}
				continue
			}
			i := slices.IndexFunc(groups, func(s GroupSpec) bool { return s.Role == g.Tags[TagRole] })
			if i < 0 {
				t.Errorf("group %s has role %q, not one of the compiled intent's", g.ID, g.Tags[TagRole])
				continue
			}
			seen++
			if d := cmp.Diff(wantRules(groups[i]), ruleStrings(g.Ingress, roleOf)); d != "" {
				t.Errorf("%s group ingress differs from the compiled intent (-want +got):\n%s", g.Tags[TagRole], d)
			}
			if len(g.Egress) != 1 || g.Egress[0].Protocol != "-1" {
				t.Errorf("%s group egress %v, want AWS's default allow-all", g.Tags[TagRole], g.Egress)
			}
		}
		if seen != 3 {
			t.Errorf("%d kiln security groups, want control-plane, worker and load-balancer", seen)
		}
	})

	t.Run("a second EnsureNetwork creates nothing", func(t *testing.T) {
		before := len(f.Requests())
		again, err := newProvider(t, f).EnsureNetwork(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if changes := mutating(f.Requests()[before:]); len(changes) > 0 {
			t.Errorf("second EnsureNetwork called %v", changes)
		}
		if d := cmp.Diff(n, again); d != "" {
			t.Errorf("second EnsureNetwork returned another network (-first +second):\n%s", d)
		}
	})

	t.Run("a rule added by hand is revoked, a rule removed is restored", func(t *testing.T) {
		cp := p.nets["demo"].groups[v1alpha1.RoleControlPlane]
		extra := ec2types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(6443), ToPort: aws.Int32(6443),
			IpRanges: []ec2types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}
		ssh := ec2types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
			IpRanges: []ec2types.IpRange{{CidrIp: aws.String("203.0.113.0/24")}}}
		if _, err := p.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(cp), IpPermissions: []ec2types.IpPermission{extra}}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(cp), IpPermissions: []ec2types.IpPermission{ssh}}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.EnsureNetwork(ctx, spec); err != nil {
			t.Fatal(err)
		}
		for _, r := range f.SecurityGroups()[cp].Ingress {
			if r.CIDR == "0.0.0.0/0" {
				t.Errorf("rule from 0.0.0.0/0 survived EnsureNetwork")
			}
		}
		if !slices.ContainsFunc(f.SecurityGroups()[cp].Ingress, func(r awstest.Rule) bool { return r.FromPort == 22 && r.CIDR == "203.0.113.0/24" }) {
			t.Errorf("the SSH rule was not restored")
		}
	})
}

func TestDeleteNetwork(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	ctx := t.Context()
	ensureNetwork(t, p, "demo")
	ensureNetwork(t, p, "other")
	if len(f.Tagged(TagCluster, "demo")) == 0 {
		t.Fatal("nothing tagged after EnsureNetwork")
	}
	m, err := p.Create(ctx, workerSpec("demo", 0, []byte(`{"ignition":{"version":"3.5.0"}}`)))
	if err != nil {
		t.Fatal(err)
	}
	err = p.DeleteNetwork(ctx, "demo")
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), m.Name) {
		t.Fatalf("DeleteNetwork with a machine: %v, want ErrInUse naming %s", err, m.Name)
	}
	if err := p.Delete(ctx, m.Name); err != nil {
		t.Fatal(err)
	}
	settle(t, p, "demo")
	before := len(f.Requests())
	if err := newProvider(t, f).DeleteNetwork(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if left := f.Tagged(TagCluster, "demo"); len(left) > 0 {
		t.Errorf("DeleteNetwork left %v tagged", left)
	}
	if len(f.Tagged(TagCluster, "other")) == 0 {
		t.Errorf("DeleteNetwork(demo) took the other cluster's network")
	}
	// Dependency order: the load balancer before the subnets, NAT gateways before their EIPs, the
	// internet gateway detached before deleted, the VPC last.
	order := mutating(f.Requests()[before:])
	pos := func(a string) int { return slices.Index(order, a) }
	for _, pair := range [][2]string{
		{"DeleteLoadBalancer", "DeleteSubnet"}, {"DeleteNatGateway", "ReleaseAddress"}, {"DeleteRouteTable", "DeleteSubnet"},
		{"DeleteSecurityGroup", "DeleteVpc"}, {"DetachInternetGateway", "DeleteInternetGateway"}, {"DeleteSubnet", "DeleteVpc"},
	} {
		if pos(pair[0]) < 0 || pos(pair[1]) < 0 || pos(pair[0]) > pos(pair[1]) {
			t.Errorf("%s should come before %s in %v", pair[0], pair[1], order)
		}
	}
	if err := p.DeleteNetwork(ctx, "demo"); err != nil {
		t.Fatalf("second DeleteNetwork: %v", err)
	}
}

// settle lists until no machine of the cluster is shutting down any more.
func settle(t *testing.T, p *Provider, cluster string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		ms, err := p.List(ctx, cluster)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			return
		}
	}
}

func TestEnsureNetworkErrors(t *testing.T) {
	f := startFake(t)
	ctx := t.Context()
	spec := netSpec(t, testCluster("demo"))
	tcs := []struct {
		name string
		mod  func(*Options)
		spec func(*provisioner.NetworkSpec)
		want string
		is   error
	}{
		{name: "one zone", mod: func(o *Options) { o.AvailabilityZones = o.AvailabilityZones[:1] }, want: "availabilityZones has 1 zone(s)", is: ErrInvalidSpec},
		{name: "bad admin CIDR", mod: func(o *Options) { o.AdminCIDRs = []string{"nope"} }, want: `adminCIDRs[0] "nope"`, is: ErrInvalidConfig},
		{name: "no port", spec: func(s *provisioner.NetworkSpec) { s.APIEndpoint.Port = 0 }, want: "apiEndpoint.port", is: ErrInvalidSpec},
		{name: "missing VPC", mod: func(o *Options) { o.VPCID = "vpc-00000000000000000" }, want: "InvalidVpcID.NotFound"},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			mods := []func(*Options){}
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			s := spec
			if tc.spec != nil {
				tc.spec(&s)
			}
			before := len(f.Requests())
			_, err := newProvider(t, f, mods...).EnsureNetwork(ctx, s)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
			if changes := mutating(f.Requests()[before:]); len(changes) > 0 {
				t.Errorf("a failed EnsureNetwork changed AWS: %v", changes)
			}
		})
	}
}

func TestEnsureNetworkInExistingVPC(t *testing.T) {
	f := startFake(t)
	ctx := t.Context()
	admin := newProvider(t, f)
	vpc, err := admin.ec2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(vpc.Vpc.VpcId)
	p := newProvider(t, f, func(o *Options) { o.VPCID = id })
	n, err := p.EnsureNetwork(ctx, netSpec(t, testCluster("demo")))
	if err != nil {
		t.Fatal(err)
	}
	if n.ID != id {
		t.Errorf("network in VPC %s, want the given %s", n.ID, id)
	}
	if err := p.DeleteNetwork(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{id}}); err != nil {
		t.Errorf("DeleteNetwork deleted the user's VPC: %v", err)
	}
}
