package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/state"
)

func newDelete(g *globals) *cobra.Command {
	var specPath string
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete -f cluster.yaml --yes",
		Short: "Delete every machine of the cluster, then its network",
		Long: `delete deletes every machine the provider lists for the cluster, then, on providers that made
it, the cluster's network, API endpoint and firewall, and forgets what apply remembered and the machines'
bootstrap tokens. The cluster's secrets stay in the state store, so that 'kiln apply' can bring the
cluster back.

It asks for --yes, as nothing it deletes can be brought back.`,
		Example: `  kiln delete -f cluster.yaml --yes`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !yes {
				return errors.New("delete removes every machine of the cluster: add --yes to go ahead")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDelete(ctx, g, specPath)
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	cmd.Flags().BoolVar(&yes, "yes", false, "really delete")
	return cmd
}

func runDelete(ctx context.Context, g *globals, specPath string) error {
	c, err := loadSpec(specPath)
	if err != nil {
		return err
	}
	name := c.Metadata.Name
	p, err := g.provider(ctx, c, specPath)
	if err != nil {
		return err
	}
	ms, err := p.List(ctx, name)
	if err != nil {
		return fmt.Errorf("list machines of %s: %w", name, err)
	}
	var errs []error
	for _, m := range ms {
		if m.State == provisioner.StateGone {
			continue
		}
		fmt.Fprintf(g.errOut, "deleting %s\n", m.Name)
		if err := p.Delete(ctx, m.Name); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", m.Name, err))
		}
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
