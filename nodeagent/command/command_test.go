package command

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/nodeagent/podnet"
)

func run(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, t.Context(), "version")
	if code != 0 || !strings.HasPrefix(out, "kiln-node dev (commit unknown, go") {
		t.Errorf("version: %d %q", code, out)
	}
	code, out, _ = run(t, t.Context(), "version", "-o", "json")
	var v versionInfo
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Version != "dev" || v.Platform == "" {
		t.Errorf("version -o json: %d %q", code, out)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown command", args: []string{"reboot-now"}, want: `unknown command "reboot-now"`},
		{name: "unknown flag", args: []string{"podnet", "--cluster-cidr", "10.244.0.0/16", "--bogus"}, want: "unknown flag: --bogus"},
		{name: "no cluster cidr", args: []string{"podnet"}, want: `required flag(s) "cluster-cidr" not set`},
		{name: "a cluster cidr with host bits", args: []string{"podnet", "--cluster-cidr", "10.244.0.1/16"}, want: `--cluster-cidr "10.244.0.1/16"`},
		{name: "not a cidr", args: []string{"podnet", "--cluster-cidr", "pods"}, want: `--cluster-cidr "pods"`},
		{name: "a bad log level", args: []string{"--log-level", "loud", "podnet", "--cluster-cidr", "10.244.0.0/16"}, want: `--log-level "loud"`},
		{name: "a bad log format", args: []string{"--log-format", "xml", "podnet", "--cluster-cidr", "10.244.0.0/16"}, want: `--log-format "xml"`},
		{name: "a bad output format", args: []string{"version", "-o", "yaml"}, want: `-o "yaml"`},
		{name: "reboot without a pool", args: []string{"reboot"}, want: `required flag(s) "pool" not set`},
		{name: "reboot with no slots", args: []string{"reboot", "--pool", "w", "--slots", "0"}, want: "--slots 0: at least 1"},
		{name: "the control plane rebooting two", args: []string{"reboot", "--pool", "control-plane", "--slots", "2"}, want: "one node at a time"},
		{name: "a lease too short", args: []string{"reboot", "--pool", "w", "--lease-duration", "1s"}, want: "--lease-duration 1s: at least 10s"},
		{name: "renewing slower than the lease", args: []string{"reboot", "--pool", "w", "--lease-duration", "30s", "--renew-every", "1m"}, want: "--renew-every 1m0s: shorter than"},
		{name: "a bad window", args: []string{"reboot", "--pool", "w", "--window", "Mon-Fry 02:00-05:00"}, want: `--window: `},
		{name: "a time zone without a window", args: []string{"reboot", "--pool", "w", "--time-zone", "Europe/Berlin"}, want: "--time-zone \"Europe/Berlin\" without --window"},
		{name: "no kubeconfig", args: []string{"reboot", "--pool", "w", "--kubeconfig", "/nonexistent/kubelet.conf"}, want: "--kubeconfig: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, t.Context(), tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want non-zero and %q", code, stderr, tc.want)
			}
		})
	}
}

// Before the kubelet's TLS bootstrap there is no kubeconfig: podnet says it waits for it, and a stop
// (SIGTERM, here the context) ends it cleanly.
func TestPodnetWaitsForTheKubeconfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	kubeconfig := t.TempDir() + "/kubelet.conf"
	code, _, stderr := run(t, ctx, "--log-format", "json", "podnet", "--cluster-cidr", "10.244.0.0/16",
		"--node-name", "n1", "--kubeconfig", kubeconfig)
	if code != 0 {
		t.Errorf("exit %d after the stop, want 0: %s", code, stderr)
	}
	var line struct{ Msg, Node, Why string }
	if err := json.Unmarshal([]byte(strings.SplitN(stderr, "\n", 2)[0]), &line); err != nil {
		t.Fatalf("%v: %q", err, stderr)
	}
	if line.Msg != "waiting" || line.Node != "n1" || !strings.Contains(line.Why, "no kubeconfig at "+kubeconfig) {
		t.Errorf("log %+v, want that it waits for %s", line, kubeconfig)
	}
}

// The unit Ignition installs runs a command line that kiln-node's flags accept, with the cluster's
// pod range and the defaults a node needs.
func TestPodnetUnitCommandLine(t *testing.T) {
	unit, err := podnet.Unit(netip.MustParsePrefix("10.244.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			args = strings.Fields(v)
		}
	}
	if len(args) < 2 || args[0] != podnet.BinaryPath {
		t.Fatalf("ExecStart %q does not run %s", args, podnet.BinaryPath)
	}
	cmd, rest, err := NewRoot().Find(args[1:])
	if err != nil || cmd.Name() != "podnet" {
		t.Fatalf("%q: command %v, %v", args, cmd.Name(), err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{
		"cluster-cidr": "10.244.0.0/16",
		"kubeconfig":   DefaultKubeconfig,
		"cni-dir":      podnet.DefaultCNIDir,
		"interface":    "",
	} {
		if got := cmd.Flag(flag).Value.String(); got != want {
			t.Errorf("--%s=%q, want %q", flag, got, want)
		}
	}
}
