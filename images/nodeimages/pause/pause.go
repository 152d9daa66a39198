// Package pause is the process of kiln's pod sandbox image (cmd/kiln-pause, the image
// kubecfg.SandboxImage): it holds a pod's namespaces open and otherwise does nothing, as Kubernetes'
// own pause.c does. It exits 0 on SIGINT or SIGTERM, and on SIGCHLD it reaps every exited child, since
// it is PID 1 of a pod whose containers share its PID namespace and orphans are re-parented to it.
package pause

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Version is printed by -v; cmd/kiln-pause may set it with -ldflags -X.
var Version = "dev"

// Main runs the pause process with the command-line arguments args (without the program name) and
// returns its exit status: 0 after SIGINT or SIGTERM, 2 on an unknown argument.
func Main(args []string, stdout, stderr io.Writer) int {
	for _, a := range args {
		switch a {
		case "-v", "--version":
			fmt.Fprintf(stdout, "kiln-pause %s\n", Version)
			return 0
		default:
			fmt.Fprintf(stderr, "kiln-pause: unknown argument %q (usage: kiln-pause [-v])\n", a)
			return 2
		}
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(stderr, "kiln-pause: warning: not PID 1, so orphaned processes are not re-parented to me")
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	// Children that exited before the handler was installed sent a SIGCHLD nobody saw.
	Reap()
	for s := range sigs {
		if s == syscall.SIGCHLD {
			Reap()
			continue
		}
		fmt.Fprintf(stderr, "kiln-pause: %v: exiting\n", s)
		return 0
	}
	return 0
}

// Reap collects every exited child without blocking and returns how many it collected. Signals
// coalesce (one SIGCHLD may stand for several exits), so it loops until no exited child remains.
func Reap() int {
	n := 0
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return n
		}
		n++
	}
}
