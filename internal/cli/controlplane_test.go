package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/bootstrap/clusterapply"
	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/internal/testtool"
)

// syncBuffer is a bytes.Buffer that a running command writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestControlPlaneRunAndSecure starts `kiln controlplane run` on a starter cluster with the real
// etcd and Kubernetes binaries, runs `kiln cluster secure` against it with the admin kubeconfig it
// prints, then sends it SIGTERM and checks that it stopped the control plane.
func TestControlPlaneRunAndSecure(t *testing.T) {
	binDir := filepath.Dir(testtool.Tool(t, "kubernetes"))
	t.Setenv(controlplane.EnvBinDir, "")
	dir := t.TempDir()
	// The starter spec labels the namespaces default and kube-system.
	mustKiln(t, dir, "init", "cpdemo")
	spec := filepath.Join(dir, "cluster.yaml")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		root := NewRoot()
		root.SetArgs([]string{"controlplane", "run", "--bin-dir", binDir, "--dir", filepath.Join(dir, "cp")})
		root.SetOut(&out)
		root.SetErr(&errOut)
		code := 0
		if err := root.ExecuteContext(ctx); err != nil {
			errOut.Write([]byte("kiln: " + err.Error() + "\n"))
			code = 1
		}
		done <- code
	}()
	ready := regexp.MustCompile(`ready in \S+: (https://127\.0\.0\.1:\d+)\nadmin kubeconfig: (\S+)\n`)
	var m []string
	deadline := time.After(3 * time.Minute)
	for m == nil {
		select {
		case code := <-done:
			t.Fatalf("kiln controlplane run exited (%d) before it was ready:\n%s%s", code, out.String(), errOut.String())
		case <-deadline:
			t.Fatalf("kiln controlplane run not ready after 3 minutes:\n%s%s", out.String(), errOut.String())
		case <-time.After(100 * time.Millisecond):
		}
		m = ready.FindStringSubmatch(out.String())
	}
	apiURL, kubeconfig := m[1], m[2]
	t.Logf("kiln controlplane run:\n%s%s", out.String(), errOut.String())
	if kubeconfig != filepath.Join(dir, "cp", "admin.conf") {
		t.Errorf("admin kubeconfig at %s, want %s", kubeconfig, filepath.Join(dir, "cp", "admin.conf"))
	}
	for _, want := range []string{"etcd ready after", "kube-apiserver ready after", "cluster init applied", "started kube-scheduler"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("the progress lacks %q", want)
		}
	}

	// The node's cluster init applied the namespaces already: nothing to change...
	sec := mustKiln(t, dir, "cluster", "secure", "--kubeconfig", kubeconfig, "-o", "json")
	var changes []clusterapply.Change
	if err := json.Unmarshal([]byte(sec), &changes); err != nil {
		t.Fatalf("cluster secure -o json: %v\n%s", err, sec)
	}
	// Two namespaces, five bindings, and the reboot locks of the control plane and the one pool:
	// a Lease, a ClusterRole and its binding each, and their admission policy and its binding.
	if len(changes) != 15 {
		t.Errorf("cluster secure applied %d objects, want 15: %v", len(changes), changes)
	}
	for _, ch := range changes {
		if ch.Action != clusterapply.Unchanged {
			t.Errorf("right after the cluster init: %s", ch)
		}
	}
	// ...until the spec asks for more: a new namespace is created, and the output is a table.
	data, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "cluster.yaml", strings.Replace(string(data), "      namespaces:\n", "      namespaces:\n        apps: {enforce: restricted}\n", 1))
	sec = mustKiln(t, dir, "cluster", "secure", "--kubeconfig", kubeconfig)
	if !regexp.MustCompile(`(?m)^Namespace\s+apps\s+created$`).MatchString(sec) || !regexp.MustCompile(`(?m)^Namespace\s+default\s+unchanged$`).MatchString(sec) {
		t.Errorf("cluster secure after adding namespace apps:\n%s", sec)
	}

	// A real SIGTERM to this process, which the running command has subscribed to: it stops the
	// control plane and returns.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("kiln controlplane run exited %d after SIGTERM:\n%s", code, errOut.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("kiln controlplane run did not stop within a minute of SIGTERM")
	}
	if !strings.Contains(errOut.String(), "stopped") {
		t.Errorf("no 'stopped' after SIGTERM:\n%s", errOut.String())
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	if resp, err := hc.Get(apiURL + "/readyz"); err == nil {
		resp.Body.Close()
		t.Errorf("the API server still answers at %s after the control plane stopped", apiURL)
	}
}

func TestControlPlaneRunMissingBinaries(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "nobins")
	t.Setenv(controlplane.EnvBinDir, "")
	t.Setenv("PATH", filepath.Join(dir, "empty"))
	code, _, errOut := kiln(t, dir, "controlplane", "run", "--bin-dir", filepath.Join(dir, "nothing-here"))
	if code == 0 {
		t.Fatal("controlplane run succeeded without binaries")
	}
	for _, want := range []string{"etcd, kube-apiserver, kube-controller-manager, kube-scheduler", "nothing-here", "hack/tools.sh kubernetes"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the error lacks %q:\n%s", want, errOut)
		}
	}
}
