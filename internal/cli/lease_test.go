package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/state/lease"
)

// envProcess makes the test binary run as the kiln command line, on a provider in its memory, for
// the tests that need kiln in processes of its own (to kill them).
const envProcess = "KILN_CLI_TEST_PROCESS"

func TestMain(m *testing.M) {
	if os.Getenv(envProcess) == "1" {
		mem := providertest.NewMemory(nil)
		g := &globals{
			newProvider: memoryProvider(mem),
			terminal:    func() bool { return false },
		}
		os.Exit(run(newRoot(g), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// process is kiln running in a process of its own.
type process struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startKiln starts kiln args in dir, with dir/state as its state directory.
func startKiln(t *testing.T, dir string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(os.Args[0], args...), done: make(chan struct{})}
	p.cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KILN_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, envProcess+"=1", "KILN_STATE_DIR="+filepath.Join(dir, "state"))
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// eventually waits up to a minute (the machine may be busy) for cond.
func eventually(t *testing.T, what string, cond func() bool, show ...*process) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, p := range show {
				fmt.Fprintf(&b, "--- pid %d:\n%s", p.cmd.Process.Pid, p.output())
			}
			t.Fatalf("no %s within a minute\n%s", what, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Two kiln apply --watch on one state: exactly one acts, the other refuses naming it. One with
// --wait takes over once the first is killed (SIGKILL: its lease is not released) and the lease has
// expired; interrupted, it releases the lease.
func TestApplyLease(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	const ttl = 2 * time.Second
	watch := []string{"apply", "--watch", "--interval", "200ms", "--lease-ttl", ttl.String()}

	a, b := startKiln(t, dir, watch...), startKiln(t, dir, watch...)
	eventually(t, "refusal", func() bool { return a.exited() || b.exited() }, a, b)
	refused, holder := a, b
	if b.exited() {
		refused, holder = b, a
	}
	want := fmt.Sprintf("held by another process: kiln apply (pid %d on ", holder.cmd.Process.Pid)
	if refused.err == nil || !strings.Contains(refused.output(), want) || !strings.Contains(refused.output(), "--wait") {
		t.Fatalf("the second apply: %v, want a refusal naming %q:\n%s", refused.err, want, refused.output())
	}
	if strings.Contains(refused.output(), "lease taken") || strings.Contains(refused.output(), "msg=create") {
		t.Fatalf("the refused apply acted:\n%s", refused.output())
	}
	eventually(t, "pass of the holder", func() bool { return strings.Contains(holder.output(), "msg=pass") }, holder)
	if !strings.Contains(holder.output(), "msg=create") {
		t.Fatalf("the holder did not act:\n%s", holder.output())
	}

	// While it holds the lease, delete refuses too, --wait-lease gives up, and plan and apply
	// --dry-run only read.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"delete", "--yes"}, want},
		{append(watch, "--wait-lease", "300ms"), "gave up waiting after --wait-lease 300ms"},
		{[]string{"plan"}, ""},
		{[]string{"apply", "--dry-run"}, ""},
	} {
		p := startKiln(t, dir, tc.args...)
		<-p.done
		if tc.want == "" && p.err != nil || tc.want != "" && (p.err == nil || !strings.Contains(p.output(), tc.want)) {
			t.Fatalf("kiln %s while the lease is held: %v, want %q\n%s", strings.Join(tc.args, " "), p.err, tc.want, p.output())
		}
	}

	waiting := startKiln(t, dir, append(watch, "--wait")...)
	eventually(t, "wait", func() bool { return strings.Contains(waiting.output(), "waiting for the lease of demo") }, waiting)
	if strings.Contains(waiting.output(), "lease taken") {
		t.Fatalf("took the lease of a live holder:\n%s", waiting.output())
	}
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-holder.done
	killed := time.Now()
	eventually(t, "takeover", func() bool { return strings.Contains(waiting.output(), "msg=pass") }, waiting)
	if !strings.Contains(waiting.output(), "lease taken") || !strings.Contains(waiting.output(), "msg=create") {
		t.Fatalf("the waiting apply did not take over:\n%s", waiting.output())
	}
	t.Logf("took over %s after the holder was killed (lease ttl %s)", time.Since(killed).Round(time.Millisecond), ttl)

	if err := waiting.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-waiting.done
	if waiting.err != nil || !strings.Contains(waiting.output(), "interrupted") {
		t.Fatalf("interrupted apply: %v\n%s", waiting.err, waiting.output())
	}
	st, err := (&globals{stateDir: filepath.Join(dir, "state")}).openState()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := lease.Get(st, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if l.Holder.PID != waiting.cmd.Process.Pid || !l.Expires.Before(l.Renewed.Add(ttl)) {
		t.Fatalf("the lease after SIGTERM is not released: %+v", l)
	}
}
