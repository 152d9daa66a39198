// Package cli is kiln's command line: one cobra command per verb, each with RunE so that it can be
// tested; only cmd/kiln's main exits.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/state"
)

// Version information, set with -ldflags -X by the Makefile.
var (
	Version = "dev"
	Commit  = "unknown"
)

// globals are the flags every command shares, and what the root makes of them before any command
// runs.
type globals struct {
	stateDir  string
	logFormat string
	logLevel  string
	// log is the logger of --log-format and --log-level, writing to errOut.
	log    *slog.Logger
	out    io.Writer
	errOut io.Writer
	// in is where answers to questions are read; terminal reports whether there is someone to ask
	// (tests set both).
	in       io.Reader
	terminal func() bool
	// newProvider, when set (by tests), replaces the provider the spec names.
	newProvider func(ctx context.Context, c *v1alpha1.Cluster) (provisioner.Provider, error)
	// now, when set (by tests), replaces time.Now for the lifetimes of bootstrap tokens.
	now func() time.Time

	// state serializes this process's use of the state store through openingStore: apply renders and
	// creates several machines at once, each minting a token and reserving an address in the store,
	// and the store's file lock admits one holder at a time.
	state sync.Mutex
}

// clock is the time for bootstrap tokens: g.now, or time.Now.
func (g *globals) clock() time.Time {
	if g.now != nil {
		return g.now()
	}
	return time.Now()
}

// NewRoot returns the kiln command tree.
func NewRoot() *cobra.Command { return newRoot(&globals{}) }

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "kiln",
		Short: "Bake, boot, place and heal immutable Kubernetes nodes",
		Long: `kiln builds hardened, immutable machine images, boots them with Ignition so that they join a
Kubernetes cluster on first boot, places them into private networks, and replaces nodes that fail.

A cluster starts with 'kiln init NAME', which writes a starter spec (cluster.yaml) and generates the
cluster's secrets (CAs, keys, the SSH key, the encryption key) into the state store. 'kiln apply'
then makes the cluster's network and machines on the spec's provider (qemu, vsphere, aws), each
booting its own Ignition config, and with --watch keeps replacing machines that fail; 'kiln get
nodes' shows them. 'kiln image build' bakes the images they boot, 'kiln pxe serve' boots bare metal.

The state store is a file (state.db, mode 0600) in --state-dir; its values are encrypted with the
key in state.key (mode 0600) next to it, or with KILN_STATE_KEY (base64 of 32 bytes) when set.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			g.out = cmd.OutOrStdout()
			g.errOut = cmd.ErrOrStderr()
			if g.in == nil {
				g.in = cmd.InOrStdin()
			}
			if g.terminal == nil {
				g.terminal = isTerminal
			}
			log, err := newLogger(g.errOut, g.logFormat, g.logLevel)
			if err != nil {
				return err
			}
			g.log = log
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", state.DefaultDir(),
		"directory of the state store (env KILN_STATE_DIR)")
	root.MarkPersistentFlagDirname("state-dir")
	addLogFlags(root, g)
	root.AddCommand(
		newInit(g),
		newValidate(g),
		newRender(g),
		newLint(g),
		newAudit(g),
		newImage(g),
		newControlPlane(g),
		newCluster(g),
		newSSHKey(g),
		newKnownHosts(g),
		newSSH(g),
		newPXE(g),
		newGet(g),
		newPlan(g),
		newApply(g),
		newDelete(g),
		newKubeconfig(g),
		newRotate(g),
		newVersion(g),
	)
	requireKnownCommands(root)
	return root
}

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	return run(NewRoot(), args, stdout, stderr)
}

func run(root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Cobra adds its 'completion' command (bash, zsh, fish, powershell) as the command line runs,
	// writing to the output set just now; added here, it is a command group like the others.
	root.InitDefaultCompletionCmd(args...)
	requireKnownCommands(root)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "kiln: "+err.Error())
		if xs := (*exitStatus)(nil); errors.As(err, &xs) {
			return xs.code
		}
		return 1
	}
	return 0
}

// Run is main's body.
func Run() int { return Main(os.Args[1:], os.Stdout, os.Stderr) }
