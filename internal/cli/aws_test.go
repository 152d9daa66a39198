package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/provisioner/aws/awstest"
)

// TestApplyOnAWSFake runs kiln apply, get nodes and delete with the real AWS SDK, configured only
// through the environment as a user would, against the AWS API fake (no EC2 emulator can be had),
// and a real API server whose Nodes the test registers as the instances' kubelets would: the control
// plane's bootstrap object leaves S3, and the control plane joins the API load balancer, only once
// its Node is Ready.
func TestApplyOnAWSFake(t *testing.T) {
	controlplanetest.Binaries(t) // found from the repository, before kiln's runs change the directory
	f := awstest.Start(t)
	const ami = "ami-0123456789abcdef0"
	f.AddImage(ami, "/dev/xvda")
	f.CreateBucket("kiln-bootstrap")

	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo", "--provider", "aws")
	path := filepath.Join(dir, "cluster.yaml")
	spec, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v1alpha1.Decode(spec, path)
	if err != nil {
		t.Fatal(err)
	}
	c.Spec.Provider.AWS.Region = awstest.Region
	c.Spec.Provider.AWS.AvailabilityZones = []string{"us-east-1a", "us-east-1b"}
	c.Spec.ControlPlane.Image = ami
	for i := range c.Spec.NodePools {
		c.Spec.NodePools[i].Image = ami
	}
	if spec, err = v1alpha1.Marshal(c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "fake-ca.pem")
	if err := os.WriteFile(ca, f.CertificatePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": f.URL, "AWS_CA_BUNDLE": ca, "AWS_REGION": awstest.Region,
		"AWS_ACCESS_KEY_ID": awstest.AccessKeyID, "AWS_SECRET_ACCESS_KEY": awstest.SecretAccessKey,
		"AWS_CONFIG_FILE": filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"),
		"AWS_EC2_METADATA_DISABLED": "true", envAWSS3PathStyle: "true",
	} {
		t.Setenv(k, v)
	}

	code, _, errOut := kiln(t, dir, "apply")
	if code == 0 || !strings.Contains(errOut, envAWSBucket) {
		t.Fatalf("apply without a bucket: exit %d, %s", code, errOut)
	}
	t.Setenv(envAWSBucket, "kiln-bootstrap")

	// A slow first boot: the instances run at once, and nothing of them answers yet. Nor could it:
	// kiln reaches no AWS machine's SSH, and the API's load balancer is not reachable from here. apply
	// says so once, counts no machine ready, keeps the control plane's config in S3 and out of the API
	// load balancer.
	machines := []string{"demo-control-plane-0", "demo-workers-0", "demo-workers-1"}
	cpObject := func() bool {
		for key := range f.Objects("kiln-bootstrap") {
			if strings.Contains(key, "demo-control-plane-0") {
				return true
			}
		}
		return false
	}
	code, _, errOut = kiln(t, dir, "apply", "--interval", "10ms", "--qps", "1000", "--timeout", "20s")
	if code == 0 || strings.Count(errOut, "no machine can be judged ready") != 1 || !strings.Contains(errOut, "apply --kubeconfig FILE") ||
		!strings.Contains(errOut, "ensuring the network") || !strings.Contains(errOut, "demo has not converged within --timeout 20s") {
		t.Fatalf("apply with nothing to hear the machines by: exit %d\n%s", code, errOut)
	}
	if !cpObject() || f.Calls("RegisterTargets") != 0 {
		t.Fatalf("before the control plane answered: its bootstrap object there %v, API target registrations %d; want it there and none",
			cpObject(), f.Calls("RegisterTargets"))
	}

	// The cluster's API, through a tunnel of the user's own; the Nodes become Ready.
	api := startClusterAPI(t, dir, "demo")
	for _, name := range machines {
		readyNode(t, api.admin, name)
	}
	_, progress := kilnOK(t, dir, "apply", "--kubeconfig", api.kubeconfig, "--interval", "10ms", "--qps", "1000", "--timeout", "3m")
	if !strings.Contains(progress, "demo has converged: 3 machines") || strings.Count(progress, "msg=joined") != 3 {
		t.Fatalf("apply said:\n%s", progress)
	}
	if cpObject() || f.Calls("RegisterTargets") == 0 {
		t.Fatalf("once the Nodes are Ready: the bootstrap object there %v, API target registrations %d; want it gone and the control plane registered",
			cpObject(), f.Calls("RegisterTargets"))
	}
	if left := f.Objects("kiln-bootstrap"); len(left) != 0 {
		t.Errorf("bootstrap objects left once every Node is Ready: %d (every machine's config goes through S3)", len(left))
	}
	if n := f.Calls("RunInstances"); n != 3 {
		t.Errorf("RunInstances called %d times, want 3", n)
	}
	// Each node's address was reserved before its config was rendered, and it was launched with it.
	enis := map[string]awstest.NetworkInterface{}
	for _, n := range f.NetworkInterfaces() {
		enis[n.ID] = n
	}
	for _, in := range f.Instances() {
		if n, ok := enis[in.NetworkInterface]; !ok || n.PrivateIP != in.PrivateIP || n.Tags["kiln.dev/name"] != in.Tags["kiln.dev/name"] {
			t.Errorf("instance %s (%s) at %s was not launched with its reserved network interface (%q)", in.ID, in.Tags["kiln.dev/name"], in.PrivateIP, in.NetworkInterface)
		}
	}
	out, _ := kilnOK(t, dir, "get", "nodes")
	if strings.Count(out, "ready") != 3 {
		t.Fatalf("get nodes:\n%s", out)
	}
	kilnOK(t, dir, "delete", "--yes")
	if left := f.NetworkInterfaces(); len(left) > 0 {
		t.Errorf("delete left network interfaces: %+v", left)
	}
	out, _ = kilnOK(t, dir, "get", "nodes")
	if strings.Contains(out, "ready") {
		t.Fatalf("after delete:\n%s", out)
	}
}
