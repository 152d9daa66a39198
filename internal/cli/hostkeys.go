package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
	"github.com/kiln-dev/kiln/sshexec"
	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/atomicfile"
)

// reportPoll is how often a wait for machines' host key reports reads them again.
const reportPoll = 2 * time.Second

// machineHostKeys are the host keys kiln accepts for one machine.
type machineHostKeys struct {
	machine provisioner.Machine
	// addr is where kiln's host reaches the machine's SSH, host:port; "" when it cannot.
	addr string
	// keys are the pinned keys, the only ones accepted; empty with err.
	keys []ssh.PublicKey
	pin  *hostkeys.Pin
	// pinned: this run pinned them.
	pinned bool
	err    error
}

// sshEndpoint is where kiln's host reaches m's SSH: the address its provider forwards it to, else
// m's own address, port 22; "" when there is none.
func sshEndpoint(p provisioner.Provider, m provisioner.Machine) string {
	if ep, ok := p.(endpointer); ok {
		return ep.Endpoint(m, 22)
	}
	if m.Address == "" {
		return ""
	}
	return net.JoinHostPort(m.Address, "22")
}

// hostKeysOf reads the host key report of each machine through the provider (waiting up to wait for
// running machines that have not reported yet), pins the first report of each and checks a later
// one against the pin. A machine whose report differs from its pin, or that has neither, gets an
// error and no keys. A machine that has not reported again since it was pinned (its console was
// reset) keeps its pin.
func (g *globals) hostKeysOf(ctx context.Context, c *v1alpha1.Cluster, p provisioner.Provider, ms []provisioner.Machine, wait time.Duration) ([]machineHostKeys, error) {
	reports := readReports(ctx, p, ms, wait)
	now := g.clock()
	out := make([]machineHostKeys, len(ms))
	// One opening of the store at a time: apply probes several machines at once.
	err := openingStore{g: g, mu: &g.state}.do(func(st *state.Store) error {
		for i, m := range ms {
			r := reports[i]
			mk := machineHostKeys{machine: m, addr: sshEndpoint(p, m)}
			pin, perr := hostkeys.Load(st, m.Name)
			if perr != nil && !errors.Is(perr, state.ErrNotFound) {
				return perr
			}
			switch {
			case r.err == nil:
				mk.keys, mk.pinned, mk.err = hostkeys.Check(st, c.Metadata.Name, m.Name, r.keys, now)
				if mk.err == nil {
					mk.pin, mk.err = hostkeys.Load(st, m.Name)
				}
			case pin != nil && errors.Is(r.err, provisioner.ErrNoHostKeys):
				if pin.Cluster != c.Metadata.Name {
					mk.err = fmt.Errorf("machine %s: its pin belongs to cluster %s", m.Name, pin.Cluster)
					break
				}
				mk.pin = pin
				mk.keys, mk.err = pin.PublicKeys()
			case errors.Is(r.err, provisioner.ErrNoHostKeys):
				mk.err = fmt.Errorf("machine %s (%s): %w; try again once it has booted, or with --wait", m.Name, m.State, r.err)
			default:
				mk.err = r.err
			}
			out[i] = mk
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

type report struct {
	keys []ssh.PublicKey
	err  error
}

// readReports reads each machine's report, at most every reportPoll until every machine that runs
// has reported or waitFor has passed.
func readReports(ctx context.Context, p provisioner.Provider, ms []provisioner.Machine, waitFor time.Duration) []report {
	out := make([]report, len(ms))
	hk, ok := p.(provisioner.HostKeyReporter)
	if !ok {
		for i, m := range ms {
			out[i].err = fmt.Errorf("machine %s: its provider does not carry host key reports yet (only qemu does): %w", m.Name, provisioner.ErrNoHostKeys)
		}
		return out
	}
	read := func(ctx context.Context) (bool, error) {
		done := true
		for i, m := range ms {
			if out[i].keys != nil {
				continue
			}
			out[i].keys, out[i].err = hk.HostKeys(ctx, m.Name)
			if errors.Is(out[i].err, provisioner.ErrNoHostKeys) && (m.State == provisioner.StateRunning || m.State == provisioner.StatePending) {
				done = false
			}
		}
		return done, nil
	}
	if waitFor <= 0 {
		read(ctx)
		return out
	}
	// A timeout leaves the reports as last read: each says what it lacks.
	_ = wait.PollUntilContextTimeout(ctx, reportPoll, waitFor, true, read)
	return out
}

// knownHostsText is the known_hosts file of machines' accepted keys: a comment naming each machine,
// then one line per key at its SSH endpoint.
func knownHostsText(mks []machineHostKeys) string {
	var b strings.Builder
	for _, mk := range mks {
		if mk.err != nil || mk.addr == "" {
			continue
		}
		fmt.Fprintf(&b, "# %s, pinned %s\n", mk.machine.Name, mk.pin.Pinned.Format(time.RFC3339))
		for _, l := range hostkeys.KnownHostsLines(mk.addr, mk.keys) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func newKnownHosts(g *globals) *cobra.Command {
	var (
		specPath, outPath string
		waitFor           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "known-hosts [-f cluster.yaml] [--output-file FILE]",
		Short: "Print known_hosts lines of the cluster's machines, from the host keys they reported and kiln pinned",
		Long: `known-hosts prints a known_hosts line for each SSH host key of each machine of the cluster, at the
address this host reaches its SSH at (on qemu: [127.0.0.1]:PORT), for ssh -o StrictHostKeyChecking=yes
-o UserKnownHostsFile=FILE, or kiln image audit --known-hosts FILE.

The keys come from the machine itself: every node writes its host public keys at each boot to a
channel its platform binds to it (on qemu its serial console, which only its VM writes and only root
on this host reads). The first keys read of a machine are pinned in the state store; a later report
that differs is refused, naming the machine and both fingerprints, and is never pinned in their
place. A deleted machine (kiln delete, or replaced by kiln apply) loses its pin. Only the qemu
provider carries the reports so far; on others, known-hosts uses the pins the store holds.

A machine without keys (not booted that far, or refused) gets no line, and known-hosts then exits
non-zero after writing the others; --wait waits that long for running machines to report.`,
		Example: `  kiln known-hosts -f cluster.yaml --output-file demo/known_hosts
  ssh -o StrictHostKeyChecking=yes -o UserKnownHostsFile=demo/known_hosts -i id_demo -p 2222 kiln@127.0.0.1
  kiln known-hosts -f cluster.yaml --wait 2m >> ~/.ssh/known_hosts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadSpec(specPath)
			if err != nil {
				return err
			}
			p, ms, err := g.machines(cmd.Context(), c, specPath)
			if err != nil {
				return err
			}
			ms = slices.DeleteFunc(ms, func(m provisioner.Machine) bool { return m.State == provisioner.StateGone })
			mks, err := g.hostKeysOf(cmd.Context(), c, p, ms, waitFor)
			if err != nil {
				return err
			}
			var errs []error
			for _, mk := range mks {
				switch {
				case mk.err != nil:
					errs = append(errs, mk.err)
				case mk.addr == "":
					errs = append(errs, fmt.Errorf("machine %s: no address to reach its SSH at yet", mk.machine.Name))
				case mk.pinned:
					fmt.Fprintf(g.errOut, "pinned the host keys of %s: %s\n", mk.machine.Name, strings.Join(hostkeys.Fingerprints(mk.keys), ", "))
				}
			}
			text := knownHostsText(mks)
			if outPath == "" {
				fmt.Fprint(g.out, text)
			} else {
				if err := atomicfile.Write(outPath, []byte(text), 0o600, false); err != nil {
					return err
				}
				fmt.Fprintf(g.errOut, "wrote %s (0600)\n", outPath)
			}
			if len(ms) == 0 {
				errs = append(errs, fmt.Errorf("cluster %s has no machines", c.Metadata.Name))
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	addOutputFileFlag(cmd, &outPath, "file to write the known_hosts lines to (mode 0600, replaced atomically)")
	cmd.Flags().DurationVar(&waitFor, "wait", 0, "how long to wait for running machines that have not reported their host keys yet")
	return cmd
}

func newSSH(g *globals) *cobra.Command {
	var (
		specPath, user string
		waitFor        time.Duration
		timeout        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ssh NODE [-- COMMAND...]",
		Short: "Log in to a machine of the cluster with the cluster's SSH key, accepting only its pinned host keys",
		Long: `ssh connects to the machine NODE of the cluster at the address this host reaches its SSH at, as
the spec's admin user with the cluster's generated SSH key (from the state store), and runs COMMAND,
or a login shell: interactive, on a pseudo-terminal, when standard input is a terminal.

The host keys it accepts are the machine's pinned ones and no others, as kiln known-hosts reads and
pins them: a host key that differs, or a report that differs from the pin, is refused. The exit
status is the command's.`,
		Example: `  kiln ssh demo-workers-0 -- hostname
  kiln ssh demo-control-plane-0 -- sudo crictl ps
  kiln ssh demo-workers-0          # an interactive shell`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if at := cmd.ArgsLenAtDash(); at > 1 || (at < 0 && len(args) > 1) {
				return fmt.Errorf("one NODE, then -- and the command: kiln ssh NODE -- %s", strings.Join(args[1:], " "))
			}
			return runSSH(cmd.Context(), g, specPath, user, args[0], args[1:], waitFor, timeout)
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	cmd.Flags().StringVarP(&user, "user", "l", "", "user to log in as (default: the spec's admin user)")
	cmd.Flags().DurationVar(&waitFor, "wait", 0, "how long to wait for the machine to report its host keys, if it has not")
	cmd.Flags().DurationVar(&timeout, "timeout", sshexec.DefaultTimeout, "how long the connection and login may take")
	return cmd
}

func runSSH(ctx context.Context, g *globals, specPath, user, node string, command []string, waitFor, timeout time.Duration) error {
	c, b, err := g.loadCluster(specPath)
	if err != nil {
		return err
	}
	if len(b.SSH.PrivateKeyPEM) == 0 {
		return fmt.Errorf("cluster %s uses your own SSH keys (spec.ssh.authorizedKeys); kiln holds no private key for it: use ssh with the output of kiln known-hosts", c.Metadata.Name)
	}
	signer, err := ssh.ParsePrivateKey(b.SSH.PrivateKeyPEM)
	if err != nil {
		return fmt.Errorf("cluster %s: SSH key: %w", c.Metadata.Name, err)
	}
	if user == "" {
		user = c.Spec.SSH.User
	}
	p, ms, err := g.machines(ctx, c, specPath)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(ms, func(m provisioner.Machine) bool { return m.Name == node })
	if i < 0 {
		var names []string
		for _, m := range ms {
			names = append(names, m.Name)
		}
		return fmt.Errorf("cluster %s has no machine %s (it has: %s)", c.Metadata.Name, node, strings.Join(names, ", "))
	}
	mks, err := g.hostKeysOf(ctx, c, p, ms[i:i+1], waitFor)
	if err != nil {
		return err
	}
	mk := mks[0]
	if mk.err != nil {
		return mk.err
	}
	if mk.addr == "" {
		return fmt.Errorf("machine %s: no address to reach its SSH at yet", node)
	}
	dir, err := os.MkdirTemp("", "kiln-ssh-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	known := filepath.Join(dir, "known_hosts")
	if err := atomicfile.Write(known, []byte(knownHostsText(mks)), 0o600, true); err != nil {
		return err
	}
	client, err := sshexec.Dial(ctx, mk.addr, sshexec.Config{User: user, Signer: signer, KnownHosts: known, Timeout: timeout})
	if err != nil {
		if errors.Is(err, sshexec.ErrHostKeyMismatch) || errors.Is(err, sshexec.ErrUnknownHostKey) {
			return fmt.Errorf("machine %s: refused: its SSH server offered a host key other than the ones it reported and kiln pinned (%s): %w",
				node, strings.Join(hostkeys.Fingerprints(mk.keys), ", "), err)
		}
		return err
	}
	defer client.Close()
	stdio := sshexec.Stdio{In: g.in, Out: g.out, Err: g.errOut}
	if len(command) == 0 {
		if f, ok := g.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			restore, tty, err := rawTerminal(f)
			if err != nil {
				return err
			}
			defer restore()
			stdio.TTY = tty
		}
	}
	err = client.Attach(ctx, strings.Join(command, " "), stdio)
	var xe *sshexec.ExitError
	if errors.As(err, &xe) && xe.Status > 0 {
		return &exitStatus{err: err, code: xe.Status}
	}
	return err
}

// rawTerminal puts the terminal f into raw mode for an interactive session, and returns how to put it
// back and the pseudo-terminal to ask the host for.
func rawTerminal(f *os.File) (func(), *sshexec.TTY, error) {
	fd := int(f.Fd())
	w, h, err := term.GetSize(fd)
	if err != nil {
		w, h = 80, 24
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("terminal: %w", err)
	}
	restore := func() { term.Restore(fd, old) }
	return restore, &sshexec.TTY{Term: orDefault(os.Getenv("TERM"), "xterm"), Width: w, Height: h}, nil
}

// exitStatus is an error that makes kiln exit with code, as kiln ssh does with its command's status.
type exitStatus struct {
	err  error
	code int
}

func (e *exitStatus) Error() string { return e.err.Error() }
func (e *exitStatus) Unwrap() error { return e.err }
