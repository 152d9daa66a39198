package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/lease"
)

func newDelete(g *globals) *cobra.Command {
	var specPath string
	var yes bool
	var lo leaseOptions
	cmd := &cobra.Command{
		Use:   "delete -f cluster.yaml --yes",
		Short: "Delete every machine of the cluster, then its network",
		Long: `delete deletes every machine the provider lists for the cluster, then, on providers that made
it, the cluster's network, API endpoint and firewall, and forgets what apply remembered, the machines'
bootstrap tokens and their pinned SSH host keys. The cluster's secrets stay in the state store, so
that 'kiln apply' can bring the cluster back.

It asks for --yes, as nothing it deletes can be brought back. Like apply, it takes the cluster's
lease first: while another kiln changes the cluster it refuses, naming it, or with --wait waits.`,
		Example: `  kiln delete -f cluster.yaml --yes`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !yes {
				return errors.New("delete removes every machine of the cluster: add --yes to go ahead")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDelete(ctx, g, specPath, lo)
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	cmd.Flags().BoolVar(&yes, "yes", false, "really delete")
	addLeaseFlags(cmd, &lo)
	return cmd
}

func runDelete(ctx context.Context, g *globals, specPath string, lo leaseOptions) (err error) {
	c, err := loadSpec(specPath)
	if err != nil {
		return err
	}
	name := c.Metadata.Name
	l, err := g.takeLease(ctx, name, "kiln delete", lo)
	if err != nil {
		return err
	}
	defer l.release()
	ctx, stopKeeping := l.keep(ctx)
	defer stopKeeping()
	defer func() {
		if cause := context.Cause(ctx); cause != nil && errors.Is(cause, lease.ErrLost) {
			err = fmt.Errorf("stopped deleting %s: %w", name, cause)
		}
	}()
	p, err := g.provider(ctx, c, specPath)
	if err != nil {
		return err
	}
	ms, err := p.List(ctx, name)
	if err != nil {
		return fmt.Errorf("list machines of %s: %w", name, err)
	}
	var (
		errs    []error
		deleted []string
	)
	for _, m := range ms {
		if m.State == provisioner.StateGone {
			deleted = append(deleted, m.Name)
			continue
		}
		fmt.Fprintf(g.errOut, "deleting %s\n", m.Name)
		if err := p.Delete(ctx, m.Name); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", m.Name, err))
			continue
		}
		deleted = append(deleted, m.Name)
	}
	// The deleted machines' pinned host keys go with them: a new machine gets its own; and so do
	// their enrollment tickets, with the configs of those that never fetched theirs.
	if err := forgetMachines(g, name, deleted); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if nd, ok := p.(provisioner.NetworkDeleter); ok {
		fmt.Fprintf(g.errOut, "deleting the network of %s\n", name)
		if err := nd.DeleteNetwork(ctx, name); err != nil {
			return fmt.Errorf("delete network of %s: %w", name, err)
		}
	}
	st, err := g.openState()
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Delete(convergeBucket, name); err != nil && !errors.Is(err, state.ErrNotFound) {
		return err
	}
	// The machines' own bootstrap tokens went with them, and with the cluster's API.
	if b, err := secrets.Load(st, name); err == nil {
		var ids []string
		for _, t := range b.BootstrapTokens {
			if t.Machine != "" {
				ids = append(ids, t.ID)
			}
		}
		if err := secrets.ForgetTokens(st, name, ids...); err != nil {
			return err
		}
	} else if !errors.Is(err, state.ErrNotFound) {
		return err
	}
	fmt.Fprintf(g.errOut, "deleted %d machines of %s\n", len(ms), name)
	return nil
}

// forgetMachines drops the pinned host keys and the enrollment tickets of cluster's machines named.
func forgetMachines(g *globals, cluster string, machines []string) error {
	if len(machines) == 0 {
		return nil
	}
	st, err := g.openState()
	if err != nil {
		return err
	}
	defer st.Close()
	var errs []error
	for _, m := range machines {
		errs = append(errs, hostkeys.Forget(st, m), enroll.Revoke(st, cluster, m))
	}
	return errors.Join(errs...)
}
