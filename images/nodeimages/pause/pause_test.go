package pause_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-dev/kiln/images/nodeimages/pause"
)

// runEnv makes the test binary run pause.Main instead of the tests, so that the tests can start the
// real process, signal it and watch it reap.
const runEnv = "KILN_PAUSE_TEST_RUN"

func TestMain(m *testing.M) {
	if os.Getenv(runEnv) == "1" {
		os.Exit(pause.Main(nil, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// start runs `sh -c script self` with pause.Main as self; the script prints the PID of a child it
// leaves behind, then execs self (or something else), which so inherits the child.
func start(t *testing.T, script string) (cmd *exec.Cmd, childPID int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("sh", "-c", script, self)
	cmd.Env = append(os.Environ(), runEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("stderr of the process: %s", stderr.String())
		}
	})
	line := make([]byte, 32)
	n, err := out.Read(line)
	if err != nil {
		t.Fatalf("reading the child's PID: %v", err)
	}
	childPID, err = strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatalf("child PID %q: %v", line[:n], err)
	}
	return cmd, childPID
}

// state returns the one-letter state of a process from /proc (Z: a zombie), or "" once it is gone.
func state(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return "?"
	}
	return s[i+2 : i+3]
}

func TestReapsOrphans(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		reaped bool
	}{
		// The control case: a parent that never waits leaves its exited child a zombie, which is what
		// the test would see if kiln-pause did not reap.
		{name: "a parent that does not reap keeps a zombie", script: `sleep 0.2 & echo $!; exec sleep 30`, reaped: false},
		{name: "kiln-pause reaps its exited child", script: `sleep 0.2 & echo $!; exec "$0"`, reaped: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, child := start(t, tc.script)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var last string
			err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
				last = state(child)
				return last == "" || last == "Z", nil
			})
			if err != nil {
				t.Fatalf("child %d never exited (state %q)", child, last)
			}
			if !tc.reaped {
				if last != "Z" {
					t.Fatalf("child %d: state %q, want a zombie (Z)", child, last)
				}
				return
			}
			// A zombie may be seen for a moment before the SIGCHLD is handled.
			err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
				last = state(child)
				return last == "", nil
			})
			if err != nil {
				t.Fatalf("child %d was not reaped: state %q", child, last)
			}
		})
	}
}

func TestExitsZeroOnSignal(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{
		{name: "SIGTERM", sig: syscall.SIGTERM},
		{name: "SIGINT", sig: syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// start wants a child PID to read; this child outlives the test by a few seconds at most.
			cmd, _ := start(t, `sleep 5 >/dev/null 2>&1 & echo $!; exec "$0"`)
			// Let Main install its handler: until then the signal would kill the process.
			time.Sleep(300 * time.Millisecond)
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					t.Fatalf("exit status %d after %v, want 0", exit.ExitCode(), tc.sig)
				}
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("still running 10 s after %v", tc.sig)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		wantStatus int
		wantOut    string
		wantErr    string
	}{
		{name: "version", args: []string{"-v"}, wantStatus: 0, wantOut: "kiln-pause dev\n"},
		{name: "unknown argument", args: []string{"-x"}, wantStatus: 2, wantErr: `unknown argument "-x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if got := pause.Main(tc.args, &out, &errb); got != tc.wantStatus {
				t.Errorf("status %d, want %d", got, tc.wantStatus)
			}
			if out.String() != tc.wantOut {
				t.Errorf("stdout %q, want %q", out.String(), tc.wantOut)
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", errb.String(), tc.wantErr)
			}
		})
	}
}
