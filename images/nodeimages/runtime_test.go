package nodeimages_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/internal/testtool"
)

// runtime is a containerd of the test's own: its root, state, socket and runc root under a
// temporary directory, so that nothing of the host's is touched. (The shims' sockets live in
// /run/containerd/s, a fixed place, named by a hash that includes the socket address.)
type runtime struct {
	t        *testing.T
	bin      string // the directory of containerd, containerd-shim-runc-v2 and ctr
	dir      string
	address  string
	runcRoot string
	env      []string
}

// ctr runs `ctr -n k8s.io ARGS...` against the runtime and returns its stdout.
func (r *runtime) ctr(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(r.bin, "ctr"), append([]string{"-n", "k8s.io"}, args...)...)
	cmd.Env = r.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func (r *runtime) mustCtr(args ...string) string {
	r.t.Helper()
	out, err := r.ctr(args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// removeContainer kills and deletes a container's task and the container, ignoring what is not there.
func (r *runtime) removeContainer(id string) {
	_, _ = r.ctr("tasks", "kill", "-s", "SIGKILL", id)
	_ = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		_, err := r.ctr("tasks", "delete", id)
		out, _ := r.ctr("tasks", "ls", "-q")
		return err == nil || !strings.Contains(out, id), nil
	})
	_, _ = r.ctr("containers", "delete", id)
}

// startContainerd starts the built containerd with kiln's node config (kubecfg.ContainerdConfig) and
// waits until it answers; the test's cleanup stops it.
func startContainerd(t *testing.T, containerd string) *runtime {
	t.Helper()
	dir, err := os.MkdirTemp("", "kiln-containerd-")
	if err != nil {
		t.Fatal(err)
	}
	r := &runtime{t: t, bin: filepath.Dir(containerd), dir: dir, address: filepath.Join(dir, "containerd.sock"), runcRoot: filepath.Join(dir, "runc")}
	r.env = append(os.Environ(), "PATH="+r.bin+":"+os.Getenv("PATH"), "CONTAINERD_ADDRESS="+r.address)
	config := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(config, kubecfg.ContainerdConfig(), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(containerd, "--config", config, "--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state"), "--address", r.address)
	cmd.Env = r.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("containerd's log:\n%s", b)
			}
		}
		if b, err := os.ReadFile("/proc/mounts"); err == nil && strings.Contains(string(b), dir) {
			t.Errorf("something is still mounted under %s; left it in place", dir)
			return
		}
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var last error
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("containerd exited: %v", err)
		default:
		}
		_, last = r.ctr("version")
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("containerd did not come up: %v (last: %v)", err, last)
	}
	return r
}

// toolsVersion reads NAME=VALUE from hack/tools.sh.
func toolsVersion(t *testing.T, name string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testtool.RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "hack/tools.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("hack/tools.sh sets no %s", name)
	}
	return string(m[1])
}

// TestNodeRuntime runs the node's container runtime as a node has it: the containerd 2.x that the
// base image carries (hack/tools.sh containerd) with kiln's rendered config and Debian's runc imports
// the node images (hack/tools.sh node-images) with the base image's own importer
// (images/base/rootfs/usr/lib/kiln/kiln-images-import), runs the echo image and asks it, and stops
// the pause image with SIGTERM.
//
// It needs root, runc (Debian's package; hack/tools.sh deps) and the two tools, which it builds on
// first use (containerd: about 7 minutes cold).
func TestNodeRuntime(t *testing.T) {
	testtool.RequireRoot(t)
	if _, err := exec.LookPath("runc"); err != nil {
		msg := "runc is not installed; run: sudo apt-get install runc (or sudo hack/tools.sh deps)"
		if testtool.CI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	containerd := testtool.Tool(t, "containerd")
	images := testtool.Dir(t, "node-images")
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testtool.RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	importer := filepath.Join(root, "images/base/rootfs/usr/lib/kiln/kiln-images-import")

	t.Run("version", func(t *testing.T) {
		want := toolsVersion(t, "CONTAINERD_VERSION")
		if !strings.HasPrefix(want, "v2.") {
			t.Errorf("hack/tools.sh builds containerd %s; kubelet v1.37 needs containerd 2.x", want)
		}
		out, err := exec.Command(containerd, "--version").Output()
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(out)); len(f) < 3 || f[0] != "containerd" || f[2] != want {
			t.Errorf("containerd --version: %q, want containerd <package> %s <revision>", out, want)
		}
	})

	r := startContainerd(t, containerd)

	t.Run("config", func(t *testing.T) {
		// containerd reads kiln's config as meant: its effective config, after its own migration.
		cmd := exec.Command(containerd, "--config", filepath.Join(r.dir, "config.toml"), "config", "dump")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("containerd config dump: %v", err)
		}
		for _, want := range []string{
			"sandbox = '" + kubecfg.SandboxImage + "'",
			"runtime_type = 'io.containerd.runc.v2'",
			"SystemdCgroup = true",
			"bin_dirs = ['" + kubecfg.CNIBinDir + "']",
			"conf_dir = '" + kubecfg.CNIConfDir + "'",
		} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("containerd's effective config lacks %q", want)
			}
		}
		// And the CRI plugins that the kubelet talks to loaded with it.
		plugins := r.mustCtr("plugins", "ls")
		for _, p := range []string{"io.containerd.grpc.v1 +cri", "io.containerd.cri.v1 +images", "io.containerd.cri.v1 +runtime"} {
			if !regexp.MustCompile(`(?m)^` + p + ` .* ok\s*$`).MatchString(plugins) {
				t.Errorf("plugin %s is not ok:\n%s", p, plugins)
			}
		}
	})

	importImages := func(t *testing.T) string {
		t.Helper()
		cmd := exec.Command(importer, images)
		cmd.Env = r.env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kiln-images-import: %v\n%s", err, out)
		}
		return string(out)
	}
	refs := []string{kubecfg.SandboxImage, kubecfg.EchoImage}
	t.Run("import", func(t *testing.T) {
		first := importImages(t)
		second := importImages(t)
		for _, ref := range refs {
			if !strings.Contains(first, ref+": importing ") {
				t.Errorf("the first import did not import %s:\n%s", ref, first)
			}
			if !strings.Contains(second, ref+": present, not imported again") {
				t.Errorf("the second import did not skip %s:\n%s", ref, second)
			}
		}
		list := r.mustCtr("images", "ls")
		for _, ref := range refs {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(ref) + ` .*io\.cri-containerd\.pinned=pinned`).MatchString(list) {
				t.Errorf("%s is not in the k8s.io namespace, pinned:\n%s", ref, list)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	})
	if t.Failed() {
		return
	}

	t.Run("echo", func(t *testing.T) {
		const id = "kiln-test-echo"
		port := testtool.FreePort(t)
		logPath := filepath.Join(r.dir, "echo.log")
		t.Cleanup(func() { r.removeContainer(id) })
		r.mustCtr("run", "-d", "--net-host", "--runc-root", r.runcRoot, "--log-uri", "file://"+logPath,
			kubecfg.EchoImage, id, "/kiln-echo", "-listen", fmt.Sprintf("127.0.0.1:%d", port))
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		var body string
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false, nil
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
			return resp.StatusCode == http.StatusOK, nil
		})
		if err != nil {
			t.Fatalf("the echo container never answered on %s: %v", url, err)
		}
		if !regexp.MustCompile(`^hostname=\S+ ip=\S+\n$`).MatchString(body) {
			t.Errorf("answer %q, want hostname=NAME ip=ADDR", body)
		}
		// It runs as the image says: user 65535, not root.
		tasks := r.mustCtr("tasks", "ls")
		m := regexp.MustCompile(`(?m)^` + id + `\s+(\d+)\s+RUNNING`).FindStringSubmatch(tasks)
		if m == nil {
			t.Fatalf("no running task %s:\n%s", id, tasks)
		}
		status, err := os.ReadFile("/proc/" + m[1] + "/status")
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^Uid:\s+65535\s+65535\s+65535\s+65535$`).Match(status) {
			t.Errorf("the echo process is not user 65535:\n%s", status)
		}
		// Each request is logged to stdout, which is what `kubectl logs` shows.
		err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
			b, _ := os.ReadFile(logPath)
			return strings.Contains(string(b), " GET / 200\n"), nil
		})
		if err != nil {
			b, _ := os.ReadFile(logPath)
			t.Errorf("the container's stdout has no request line:\n%s", b)
		}
	})

	t.Run("pause", func(t *testing.T) {
		const id = "kiln-test-pause"
		t.Cleanup(func() { r.removeContainer(id) })
		cmd := exec.Command(filepath.Join(r.bin, "ctr"), "-n", "k8s.io", "run", "--rm", "--runc-root", r.runcRoot, kubecfg.SandboxImage, id)
		cmd.Env = r.env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
			tasks, _ := r.ctr("tasks", "ls")
			return regexp.MustCompile(`(?m)^` + id + `\s+\d+\s+RUNNING`).MatchString(tasks), nil
		})
		if err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("the pause container never ran: %v\n%s", err, out.String())
		}
		r.mustCtr("tasks", "kill", "-s", "SIGTERM", id)
		select {
		case err := <-done:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				t.Fatalf("the pause container exited %d after SIGTERM, want 0\n%s", exit.ExitCode(), out.String())
			}
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("the pause container still runs 20 s after SIGTERM\n%s", out.String())
		}
	})
}
