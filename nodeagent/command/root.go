// Package command is kiln-node's command line: the agents that run on every kiln node, each a
// subcommand run by a systemd unit (`kiln-node podnet`, the pod network; `kiln-node serve-fleetlock`,
// FleetLock for Zincati), with RunE so that each can be tested; only cmd/kiln-node's main exits.
package command

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Version information, set with -ldflags -X.
var (
	Version = "dev"
	Commit  = "unknown"
)

// globals are the flags every command shares.
type globals struct {
	logFormat, logLevel string
}

// logger returns the logger the flags ask for, writing to w.
func (g *globals) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
}

// NewRoot returns the kiln-node command tree.
func NewRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "kiln-node",
		Short: "The agents that run on every kiln node",
		Long: `kiln-node runs on every node of a kiln cluster, one subcommand per agent, each started by its
systemd unit: 'kiln-node podnet' keeps the node's pod network (its CNI config, and routes to the
other nodes' pods); 'kiln-node reboot' takes the reboots that security updates need, one node of a
pool at a time, drained first, through a lock in the cluster; 'kiln-node serve-fleetlock' serves
FleetLock, Zincati's reboot coordination, on the same lock.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	_ = root.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	root.AddCommand(newPodnet(g), newReboot(g), newServeFleetlock(g), newVersion())
	return root
}

// Main runs the command line with args until it ends or ctx does, and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "kiln-node: "+err.Error())
		return 1
	}
	return 0
}

// Run is main's body: SIGINT and SIGTERM (systemd's stop) end the running agent cleanly.
func Run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
