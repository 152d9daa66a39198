package aws

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/firewall"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/aws/awstest"
)

const (
	testImage  = "ami-0123456789abcdef0"
	testBucket = "kiln-bootstrap-test"
)

var testAZs = []string{"us-east-1a", "us-east-1b"}

// startFake starts the AWS fake with the test image and bucket.
func startFake(t testing.TB) *awstest.Server {
	t.Helper()
	f := awstest.Start(t)
	f.AddImage(testImage, "/dev/xvda")
	f.CreateBucket(testBucket)
	return f
}

// testOptions are fast to wait and retry, and page DescribeInstances by 5 so that pagination runs.
func testOptions() Options {
	return Options{
		AvailabilityZones: testAZs,
		AdminCIDRs:        []string{"203.0.113.0/24"},
		Bucket:            testBucket,
		S3PathStyle:       true,
		InstanceProfile:   "kiln-node",
		QPS:               2000,
		Burst:             100,
		RetryBaseDelay:    time.Millisecond,
		MaxBackoff:        20 * time.Millisecond,
		PollInterval:      2 * time.Millisecond,
		PageSize:          5,
	}
}

func newProvider(t testing.TB, f *awstest.Server, mods ...func(*Options)) *Provider {
	t.Helper()
	o := testOptions()
	for _, m := range mods {
		m(&o)
	}
	p, err := New(f.Config(), o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testCluster is an AWS cluster spec with its defaults set.
func testCluster(name string) *v1alpha1.Cluster {
	c := &v1alpha1.Cluster{
		APIVersion: v1alpha1.GroupVersion,
		Kind:       v1alpha1.KindCluster,
		Metadata:   v1alpha1.Metadata{Name: name},
		Spec: v1alpha1.ClusterSpec{
			Provider: v1alpha1.Provider{Name: v1alpha1.ProviderAWS, AWS: &v1alpha1.AWSProvider{
				Region: awstest.Region, AvailabilityZones: testAZs,
			}},
			Network: v1alpha1.Network{
				NodeCIDR:   "10.0.0.0/16",
				AdminCIDRs: []string{"203.0.113.0/24"},
			},
			ControlPlane: v1alpha1.ControlPlane{Count: 1, Image: testImage},
			NodePools:    []v1alpha1.NodePool{{Name: "workers", Count: 2, Image: testImage}},
			SSH:          v1alpha1.SSH{Generate: true},
		},
	}
	v1alpha1.SetDefaults(c)
	return c
}

func netSpec(t testing.TB, c *v1alpha1.Cluster) provisioner.NetworkSpec {
	t.Helper()
	intent, err := firewall.NewIntent(c)
	if err != nil {
		t.Fatal(err)
	}
	n := c.Spec.Network
	return provisioner.NetworkSpec{
		Cluster:     c.Metadata.Name,
		NodeCIDR:    n.NodeCIDR,
		Subnets:     n.PrivateSubnets,
		APIEndpoint: provisioner.Endpoint{Name: n.APIEndpoint.LoadBalancerName, Address: n.APIEndpoint.Address, Port: n.APIEndpoint.Port},
		Firewall:    intent,
	}
}

func ensureNetwork(t testing.TB, p *Provider, cluster string) provisioner.Network {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := p.EnsureNetwork(ctx, netSpec(t, testCluster(cluster)))
	if err != nil {
		t.Fatalf("EnsureNetwork(%s): %v", cluster, err)
	}
	return n
}
