package aws

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/lint"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/aws/awstest"
)

func workerSpec(cluster string, ordinal int, ign []byte) provisioner.MachineSpec {
	return provisioner.MachineSpec{Cluster: cluster, Name: provisioner.MachineName(cluster, "workers", ordinal),
		Role: v1alpha1.RoleWorker, Pool: "workers", Image: testImage, Ignition: ign}
}

func controlPlaneSpec(cluster string, ordinal int, ign []byte) provisioner.MachineSpec {
	return provisioner.MachineSpec{Cluster: cluster, Name: provisioner.MachineName(cluster, provisioner.ControlPlanePool, ordinal),
		Role: v1alpha1.RoleControlPlane, Pool: provisioner.ControlPlanePool, Image: testImage, Ignition: ign}
}

// rendered holds real configs of the demo cluster, rendered by bootstrap/ignition with its secrets.
type rendered struct {
	worker, controlPlane []byte
	secrets              *secrets.Bundle
}

var (
	renderOnce sync.Once
	renderOut  rendered
	renderErr  error
)

func renderDemo(t testing.TB) rendered {
	t.Helper()
	renderOnce.Do(func() {
		c := testCluster("demo")
		rnd := rand.NewChaCha8([32]byte{'k', 'i', 'l', 'n', 'a', 'w', 's'})
		now := time.Now()
		b, err := secrets.Generate(c, rnd, now)
		if err != nil {
			renderErr = err
			return
		}
		tok, err := secrets.NewBootstrapToken(rnd, now, time.Hour, "kiln node join")
		if err != nil {
			renderErr = err
			return
		}
		b.BootstrapTokens = append(b.BootstrapTokens, tok)
		// The AWS placement names every node's address (Reserve gives them before rendering).
		cp := netip.MustParseAddr("10.0.0.4")
		in := ignition.Input{Cluster: c, Secrets: b, Token: tok, Placement: Placement(),
			ControlPlaneAddresses: map[string]netip.Addr{"demo-control-plane-0": cp}}
		r, err := ignition.New(in)
		if err != nil {
			renderErr = err
			return
		}
		renderOut.secrets = b
		if renderOut.worker, renderErr = r.Render(ignition.Node{Name: "demo-workers-0", Role: v1alpha1.RoleWorker, Pool: "workers", Address: netip.MustParseAddr("10.0.1.4")}); renderErr != nil {
			return
		}
		// A control-plane config reaches its node through S3: the AWS placement holds only workers to
		// user-data's 16 KiB.
		renderOut.controlPlane, renderErr = r.Render(ignition.Node{Name: "demo-control-plane-0", Role: v1alpha1.RoleControlPlane, Address: cp})
	})
	if renderErr != nil {
		t.Fatal(renderErr)
	}
	return renderOut
}

func instanceNamed(t *testing.T, f *awstest.Server, name string) awstest.Instance {
	t.Helper()
	var found []awstest.Instance
	for _, in := range f.Instances() {
		if in.Tags[TagName] == name && in.State != "terminated" && in.State != "shutting-down" {
			found = append(found, in)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d live instances named %s, want 1", len(found), name)
	}
	return found[0]
}

func TestCreateWorkerAndControlPlane(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	ctx := t.Context()
	ensureNetwork(t, p, "demo")
	r := renderDemo(t)

	w, err := p.Create(ctx, workerSpec("demo", 0, r.worker))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := p.Create(ctx, controlPlaneSpec("demo", 0, r.controlPlane))
	if err != nil {
		t.Fatal(err)
	}
	groups := p.nets["demo"].groups

	t.Run("every instance is private, IMDSv2-only, encrypted and tagged", func(t *testing.T) {
		for _, m := range []provisioner.Machine{w, cp} {
			in := instanceNamed(t, f, m.Name)
			if in.PublicIP != "" {
				t.Errorf("%s has public IP %s", m.Name, in.PublicIP)
			}
			if in.HTTPTokens != "required" || in.HopLimit != 1 {
				t.Errorf("%s: HttpTokens %q, hop limit %d, want required and 1", m.Name, in.HTTPTokens, in.HopLimit)
			}
			if !in.RootEncrypted {
				t.Errorf("%s: root volume not encrypted (%v)", m.Name, in.BlockDevices)
			}
			if in.InstanceProfile != "kiln-node" {
				t.Errorf("%s: instance profile %q", m.Name, in.InstanceProfile)
			}
			for k, v := range map[string]string{TagCluster: "demo", TagRole: m.Role, TagPool: m.Pool, TagName: m.Name} {
				if in.Tags[k] != v {
					t.Errorf("%s: tag %s = %q, want %q", m.Name, k, in.Tags[k], v)
				}
			}
			if len(in.SecurityGroups) != 1 || in.SecurityGroups[0] != groups[m.Role] {
				t.Errorf("%s: security groups %v, want the %s group %s", m.Name, in.SecurityGroups, m.Role, groups[m.Role])
			}
			private := false
			for _, s := range f.Subnets() {
				if s.ID == in.SubnetID {
					private = s.Tags["kiln.dev/tier"] == "private"
				}
			}
			if !private {
				t.Errorf("%s is in subnet %s, not a private one", m.Name, in.SubnetID)
			}
			if in.ClientToken != provisioner.ClientToken("demo", m.Name) {
				t.Errorf("%s: client token %q, want provisioner.ClientToken", m.Name, in.ClientToken)
			}
		}
	})

	for _, m := range []struct {
		machine provisioner.Machine
		config  []byte
	}{{cp, r.controlPlane}, {w, r.worker}} {
		t.Run(m.machine.Name+"'s user-data is a stub that fetches its config from S3", func(t *testing.T) {
			stubFetches(t, f, p, m.machine.Name, m.config, r.secrets)
		})
	}
	t.Run("a presigned URL stops working after the enrollment TTL", func(t *testing.T) {
		cfg, _, err := v3_5.Parse(instanceNamed(t, f, w.Name).UserData)
		if err != nil {
			t.Fatal(err)
		}
		f.SetClock(func() time.Time { return time.Now().Add(v1alpha1.DefaultEnrollmentTTL + time.Minute) })
		defer f.SetClock(time.Now)
		resp, err := f.HTTPClient().Get(*cfg.Ignition.Config.Merge[0].Source)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET the presigned URL 16 minutes on: %s, want 403", resp.Status)
		}
	})

	t.Run("Joined deletes the bootstrap object and registers the control plane", func(t *testing.T) {
		if _, err := p.List(ctx, "demo"); err != nil { // lets the instances reach running
			t.Fatal(err)
		}
		for _, m := range []provisioner.Machine{w, cp} {
			if err := p.Joined(ctx, m.Name); err != nil {
				t.Fatalf("Joined(%s): %v", m.Name, err)
			}
		}
		if objs := f.Objects(testBucket); len(objs) != 0 {
			t.Errorf("bootstrap objects left after Joined: %v", objs)
		}
		targets := f.Targets(shortName("demo", "api"))
		if want := instanceNamed(t, f, cp.Name).ID; len(targets) != 1 || targets[0] != want {
			t.Errorf("API targets %v, want only the control plane %s", targets, want)
		}
		if err := p.Joined(ctx, cp.Name); err != nil {
			t.Errorf("second Joined: %v", err)
		}
	})
}

func fetch(t *testing.T, f *awstest.Server, url string) []byte {
	t.Helper()
	resp, err := f.HTTPClient().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET presigned URL: %s: %s", resp.Status, body)
	}
	return body
}

func TestLargeWorkerConfigGoesThroughS3(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	ensureNetwork(t, p, "demo")
	big := []byte(`{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,` +
		strings.Repeat("x", 17<<10) + `"}}]}}`)
	spec := workerSpec("demo", 0, big)
	if _, err := p.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	in := instanceNamed(t, f, spec.Name)
	if len(in.UserData) >= awstest.UserDataLimit || bytes.Equal(in.UserData, big) {
		t.Fatalf("user-data of %d bytes, want a stub", len(in.UserData))
	}
	if err := p.Delete(t.Context(), spec.Name); err != nil {
		t.Fatal(err)
	}
	if objs := f.Objects(testBucket); len(objs) != 0 {
		t.Errorf("Delete left the bootstrap object: %v", objs)
	}
}

func TestCreateErrors(t *testing.T) {
	f := startFake(t)
	ensureNetwork(t, newProvider(t, f), "demo")
	ign := []byte(`{"ignition":{"version":"3.5.0"}}`)
	noBucket := func(o *Options) { o.Bucket = "" }
	missingBucket := func(o *Options) { o.Bucket = "no-such-bucket" }
	tcs := []struct {
		name string
		mod  func(*Options)
		spec provisioner.MachineSpec
		is   error
		want string
	}{
		{"control plane without a bucket", noBucket, controlPlaneSpec("demo", 0, ign), ErrNoBucket, "its config goes through S3"},
		{"worker without a bucket", noBucket, workerSpec("demo", 0, ign), ErrNoBucket, "its config goes through S3"},
		{"control plane with a missing bucket", missingBucket, controlPlaneSpec("demo", 0, ign), nil, "the bootstrap bucket does not exist (NoSuchBucket)"},
		{"unknown image", nil, func() provisioner.MachineSpec {
			s := workerSpec("demo", 0, ign)
			s.Image = "ami-00000000000000000"
			return s
		}(), nil, "InvalidAMIID.NotFound"},
		{"no network", nil, workerSpec("elsewhere", 0, ign), ErrNoNetwork, "run EnsureNetwork first"},
		{"no role", nil, func() provisioner.MachineSpec { s := workerSpec("demo", 0, ign); s.Role = ""; return s }(), ErrInvalidSpec, "[Role]"},
		{"no config", nil, workerSpec("demo", 0, nil), ErrInvalidSpec, "no Ignition config"},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			var mods []func(*Options)
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			before := f.Calls("RunInstances")
			_, err := newProvider(t, f, mods...).Create(t.Context(), tc.spec)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.spec.Name) {
				t.Fatalf("err = %v, want one naming %s and %q", err, tc.spec.Name, tc.want)
			}
			if n := f.Calls("RunInstances") - before; n != 0 {
				t.Errorf("a Create that could not work called RunInstances %d times", n)
			}
		})
	}
}

func TestListIsOnePaginatedCall(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f) // pages of 5
	ensureNetwork(t, p, "demo")
	ign := []byte(`{"ignition":{"version":"3.5.0"}}`)
	const n = 12
	for i := range n {
		if _, err := p.Create(t.Context(), workerSpec("demo", i, ign)); err != nil {
			t.Fatal(err)
		}
	}
	before := f.Calls("DescribeInstances")
	ms, err := p.List(t.Context(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != n {
		t.Fatalf("List = %d machines, want %d", len(ms), n)
	}
	if calls := f.Calls("DescribeInstances") - before; calls != 3 {
		t.Errorf("List made %d DescribeInstances calls, want 3 pages of at most 5", calls)
	}
	names := map[string]bool{}
	for _, m := range ms {
		if names[m.Name] || m.Address == "" || m.Created.IsZero() {
			t.Errorf("machine %+v repeated or without address or creation time", m)
		}
		names[m.Name] = true
	}
}

func TestPoolIngressGroup(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	c := testCluster("demo")
	c.Spec.NodePools = append(c.Spec.NodePools, v1alpha1.NodePool{Name: "edge", Count: 1, Image: testImage,
		Ingress: []v1alpha1.IngressRule{{Protocol: "tcp", Port: 30000, EndPort: 32767, FromCIDRs: []string{"198.51.100.0/24"}, Reason: "NodePorts for the edge LB"}}})
	c.Spec.Network.Egress = v1alpha1.Egress{Policy: v1alpha1.EgressRestricted, AllowedCIDRs: []string{"192.0.2.53/32"}}
	if _, err := p.EnsureNetwork(t.Context(), netSpec(t, c)); err != nil {
		t.Fatal(err)
	}
	ign := []byte(`{"ignition":{"version":"3.5.0"}}`)
	edge := provisioner.MachineSpec{Cluster: "demo", Name: provisioner.MachineName("demo", "edge", 0), Role: v1alpha1.RoleWorker,
		Pool: "edge", Image: testImage, Ignition: ign}
	for _, spec := range []provisioner.MachineSpec{edge, workerSpec("demo", 0, ign)} {
		if _, err := newProvider(t, f).Create(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	groups := f.SecurityGroups()
	byKey := map[string]awstest.SecurityGroup{}
	for _, g := range groups {
		if g.Tags[TagCluster] == "demo" {
			byKey[GroupSpec{Role: g.Tags[TagRole], Pool: g.Tags[TagPool]}.Key()] = g
		}
	}
	pool, ok := byKey["pool-edge"]
	if !ok || len(pool.Ingress) != 1 || pool.Ingress[0].FromPort != 30000 || pool.Ingress[0].ToPort != 32767 || pool.Ingress[0].CIDR != "198.51.100.0/24" {
		t.Fatalf("pool group %+v, want the NodePort range from 198.51.100.0/24", pool)
	}
	for _, g := range byKey {
		if len(g.Egress) != 1 || g.Egress[0].Protocol != "-1" || g.Egress[0].CIDR != "0.0.0.0/0" {
			t.Errorf("group %s egress %v, want AWS's open default", g.Name, g.Egress)
		}
	}
	if got := instanceNamed(t, f, edge.Name).SecurityGroups; len(got) != 2 || got[0] != byKey["worker"].ID || got[1] != pool.ID {
		t.Errorf("edge worker groups %v, want the worker group then the pool's", got)
	}
	if got := instanceNamed(t, f, "demo-workers-0").SecurityGroups; len(got) != 1 || got[0] != byKey["worker"].ID {
		t.Errorf("plain worker groups %v, want the worker group only", got)
	}
}

// stubFetches checks that machine's user-data is a stub holding no key that fetches config from S3.
func stubFetches(t *testing.T, f *awstest.Server, p *Provider, machine string, config []byte, b *secrets.Bundle) {
	t.Helper()
	ud := instanceNamed(t, f, machine).UserData
	if len(ud) > 2048 {
		t.Errorf("stub is %d bytes", len(ud))
	}
	if err := lint.Bytes(ud, lint.Policy{Role: v1alpha1.RoleWorker, Channel: lint.Limits["aws"], Forbidden: ignition.ForbiddenSecrets(v1alpha1.RoleWorker, b)}); err != nil {
		t.Fatalf("the stub must hold no key at all, and pass https + hash: %v", err)
	}
	cfg, _, err := v3_5.Parse(ud)
	if err != nil {
		t.Fatal(err)
	}
	merge := cfg.Ignition.Config.Merge
	if len(merge) != 1 || merge[0].Source == nil || merge[0].Verification.Hash == nil {
		t.Fatalf("stub merges %+v, want one source with a hash", merge)
	}
	sum := sha512.Sum512(config)
	if *merge[0].Verification.Hash != "sha512-"+hex.EncodeToString(sum[:]) {
		t.Errorf("stub hash %s is not the config's sha512", *merge[0].Verification.Hash)
	}
	url := *merge[0].Source
	if !strings.HasPrefix(url, "https://") || !strings.Contains(url, "X-Amz-Signature=") || !strings.Contains(url, p.ObjectKey(machine)) {
		t.Errorf("stub source %s is not a presigned https URL of the bootstrap object", url)
	}
	if !strings.Contains(url, "X-Amz-Expires=900&") {
		t.Errorf("stub source %s does not expire after the default enrollment TTL (15m)", url)
	}
	if got := fetch(t, f, url); !bytes.Equal(got, config) {
		t.Errorf("the presigned URL serves %d bytes, not the %d-byte config", len(got), len(config))
	}
	obj, ok := f.Objects(testBucket)[p.ObjectKey(machine)]
	if !ok || obj.ServerSideEncryption != "AES256" {
		t.Errorf("bootstrap object %+v, want it stored with SSE AES256", obj)
	}
}
