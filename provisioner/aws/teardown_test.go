package aws

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kiln-dev/kiln/provisioner/aws/awstest"
)

func TestTeardownOrder(t *testing.T) {
	var got []string
	for _, s := range teardown {
		got = append(got, s.String())
	}
	want := []string{
		"delete listener", "delete load balancer", "delete target group",
		"delete NAT gateway", "release Elastic IP",
		"disassociate route table association", "delete route table",
		"delete network interface",
		"revoke group rules of security group", "delete security group",
		"delete subnet",
		"detach internet gateway", "delete internet gateway",
		"delete VPC",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("teardown order (-want +got):\n%s", d)
	}
}

// row is the teardown table's step of that kind and resource type.
func row[T any](t *testing.T, kind string) step[T] {
	t.Helper()
	for _, s := range teardown {
		if r, ok := s.(step[T]); ok && r.kind == kind {
			return r
		}
	}
	t.Fatalf("no %s step in the teardown table", kind)
	return step[T]{}
}

// fixture is what a teardown case starts from: a VPC of the cluster "demo" with one subnet.
type fixture struct {
	p           *Provider
	f           *awstest.Server
	vpc, subnet string
}

func newFixture(t *testing.T, attempts int) *fixture {
	t.Helper()
	f := startFake(t)
	p := newProvider(t, f, func(o *Options) { o.PollAttempts = attempts })
	ctx := t.Context()
	v, err := p.ec2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16"), TagSpecifications: tagSpec(ec2types.ResourceTypeVpc, "demo", "vpc")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: v.Vpc.VpcId, CidrBlock: aws.String("10.0.0.0/24"), AvailabilityZone: aws.String(testAZs[0]),
		TagSpecifications: tagSpec(ec2types.ResourceTypeSubnet, "demo", "private-0")})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{p: p, f: f, vpc: aws.ToString(v.Vpc.VpcId), subnet: aws.ToString(s.Subnet.SubnetId)}
}

// instance launches an instance into the fixture's subnet: the subnet cannot go while it lives.
func (x *fixture) instance(t *testing.T) string {
	t.Helper()
	out, err := x.p.ec2.RunInstances(t.Context(), &ec2.RunInstancesInput{ImageId: aws.String(testImage), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SubnetId: aws.String(x.subnet)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.Instances[0].InstanceId)
}

// terminate ends the instance and lets EC2 settle, as a Describe does in the fake.
func (x *fixture) terminate(ctx context.Context, id string) error {
	if _, err := x.p.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		return err
	}
	_, err := x.p.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	return err
}

// answers are the fake's answers to action from the request n on: "" for success, else the code.
func answers(f *awstest.Server, from int, action string) []string {
	var out []string
	for _, r := range f.Requests()[from:] {
		if r.Action == action {
			out = append(out, r.Code)
		}
	}
	return out
}

func TestTeardownExecutor(t *testing.T) {
	errList := errors.New("aws: list the things of cluster \"demo\": boom")
	// never is a step that must not run.
	never := func(t *testing.T) teardownStep {
		return step[ec2types.Vpc]{kind: "VPC", id: func(v ec2types.Vpc) string { return aws.ToString(v.VpcId) },
			list: func(context.Context, *Provider, string) ([]ec2types.Vpc, error) {
				t.Error("a step after the failed one ran")
				return nil, nil
			}}
	}
	tcs := []struct {
		name     string
		attempts int
		// steps builds the table to run.
		steps   func(t *testing.T, x *fixture) []teardownStep
		ctx     func(context.Context) (context.Context, context.CancelFunc)
		wantErr []string
		is      error
		// answers are the fake's answers to action, in order.
		action  string
		answers []string
		check   func(t *testing.T, x *fixture)
	}{
		{
			name: "steps run in order",
			steps: func(t *testing.T, x *fixture) []teardownStep {
				return []teardownStep{row[ec2types.Subnet](t, "subnet"), row[ec2types.Vpc](t, "VPC")}
			},
			action: "DeleteVpc", answers: []string{""},
			check: func(t *testing.T, x *fixture) {
				if left := x.f.Tagged(TagCluster, "demo"); len(left) > 0 {
					t.Errorf("left %v", left)
				}
			},
		},
		{
			name: "a resource already gone is done",
			steps: func(t *testing.T, x *fixture) []teardownStep {
				s := row[ec2types.Subnet](t, "subnet")
				list := s.list
				s.list = func(ctx context.Context, p *Provider, c string) ([]ec2types.Subnet, error) {
					subnets, err := list(ctx, p, c)
					// Someone else deletes it between the list and the delete.
					if _, err := p.ec2.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: aws.String(x.subnet)}); err != nil {
						t.Fatal(err)
					}
					return subnets, err
				}
				return []teardownStep{s, row[ec2types.Vpc](t, "VPC")}
			},
			action: "DeleteSubnet", answers: []string{"", "InvalidSubnetID.NotFound"},
		},
		{
			name: "a dependency going away is waited for",
			steps: func(t *testing.T, x *fixture) []teardownStep {
				in := x.instance(t)
				s := row[ec2types.Subnet](t, "subnet")
				tries := 0
				del := s.delete
				s.delete = func(ctx context.Context, p *Provider, sn ec2types.Subnet) error {
					if tries++; tries == 3 {
						if err := x.terminate(ctx, in); err != nil {
							return err
						}
					}
					return del(ctx, p, sn)
				}
				return []teardownStep{s}
			},
			action: "DeleteSubnet", answers: []string{"DependencyViolation", "DependencyViolation", ""},
		},
		{
			name:     "a dependency that stays ends the walk after PollAttempts tries",
			attempts: 3,
			steps: func(t *testing.T, x *fixture) []teardownStep {
				x.instance(t)
				return []teardownStep{row[ec2types.Subnet](t, "subnet"), never(t)}
			},
			wantErr: []string{"aws: delete subnet subnet-", "something still uses the resource (DependencyViolation)"},
			action:  "DeleteSubnet", answers: []string{"DependencyViolation", "DependencyViolation", "DependencyViolation"},
		},
		{
			name: "an error neither retryable nor gone ends the walk",
			steps: func(t *testing.T, x *fixture) []teardownStep {
				s := row[ec2types.SecurityGroup](t, "security group")
				// The VPC's default group, which EC2 refuses to delete.
				s.list = func(ctx context.Context, p *Provider, _ string) ([]ec2types.SecurityGroup, error) {
					out, err := p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{filter("vpc-id", x.vpc)}})
					if err != nil {
						return nil, err
					}
					return out.SecurityGroups, nil
				}
				return []teardownStep{s, never(t)}
			},
			wantErr: []string{"aws: delete security group sg-", "CannotDelete"},
			action:  "DeleteSecurityGroup", answers: []string{"CannotDelete"},
		},
		{
			name: "a failed list ends the walk",
			steps: func(t *testing.T, x *fixture) []teardownStep {
				s := row[ec2types.Subnet](t, "subnet")
				s.list = func(context.Context, *Provider, string) ([]ec2types.Subnet, error) { return nil, errList }
				return []teardownStep{s, never(t)}
			},
			is:     errList,
			action: "DeleteSubnet",
		},
		{
			name:     "the caller's context ends the retries",
			attempts: 1 << 20,
			steps: func(t *testing.T, x *fixture) []teardownStep {
				x.instance(t)
				return []teardownStep{row[ec2types.Subnet](t, "subnet"), never(t)}
			},
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, 100*time.Millisecond)
			},
			wantErr: []string{"aws: delete subnet subnet-"},
			is:      context.DeadlineExceeded,
		},
		{
			name: "NAT gateways are waited for until deleted, then their Elastic IPs go",
			steps: func(t *testing.T, x *fixture) []teardownStep {
				ctx := t.Context()
				a, err := x.p.ec2.AllocateAddress(ctx, &ec2.AllocateAddressInput{Domain: ec2types.DomainTypeVpc, TagSpecifications: tagSpec(ec2types.ResourceTypeElasticIp, "demo", "eip-a")})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := x.p.ec2.CreateNatGateway(ctx, &ec2.CreateNatGatewayInput{SubnetId: aws.String(x.subnet), AllocationId: a.AllocationId,
					TagSpecifications: tagSpec(ec2types.ResourceTypeNatgateway, "demo", "nat-a")}); err != nil {
					t.Fatal(err)
				}
				return []teardownStep{row[ec2types.NatGateway](t, "NAT gateway"), row[ec2types.Address](t, "Elastic IP")}
			},
			// Listed, then seen deleting by the waiter, then deleted.
			action: "DescribeNatGateways", answers: []string{"", "", ""},
			check: func(t *testing.T, x *fixture) {
				if got := answers(x.f, 0, "ReleaseAddress"); !cmp.Equal(got, []string{""}) {
					t.Errorf("ReleaseAddress answered %q, want one success", got)
				}
			},
		},
		{
			name: "nothing left: nothing done, nothing waited for",
			steps: func(t *testing.T, x *fixture) []teardownStep {
				return []teardownStep{row[ec2types.NatGateway](t, "NAT gateway"), row[ec2types.Address](t, "Elastic IP")}
			},
			action: "DescribeNatGateways", answers: []string{""},
			check: func(t *testing.T, x *fixture) {
				if n := x.f.Calls("ReleaseAddress"); n > 0 {
					t.Errorf("ReleaseAddress called %d times", n)
				}
			},
		},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			attempts := tc.attempts
			if attempts == 0 {
				attempts = 60
			}
			x := newFixture(t, attempts)
			steps := tc.steps(t, x)
			ctx, cancel := context.WithCancel(t.Context())
			if tc.ctx != nil {
				ctx, cancel = tc.ctx(ctx)
			}
			defer cancel()
			before := len(x.f.Requests())
			err := x.p.tearDown(ctx, "demo", steps)
			if len(tc.wantErr) == 0 && tc.is == nil && err != nil {
				t.Fatalf("tearDown: %v", err)
			}
			for _, want := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("tearDown = %v, want an error saying %q", err, want)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("tearDown = %v, want errors.Is %v", err, tc.is)
			}
			if tc.action != "" {
				if d := cmp.Diff(tc.answers, answers(x.f, before, tc.action), cmpopts.EquateEmpty()); d != "" {
					t.Errorf("answers to %s (-want +got):\n%s", tc.action, d)
				}
			}
			if tc.check != nil {
				tc.check(t, x)
			}
		})
	}
}
