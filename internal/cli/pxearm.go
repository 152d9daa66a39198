package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/onprem/pxe"
	"github.com/kiln-dev/kiln/state"
)

func newPXEArm(g *globals) *cobra.Command {
	var lasts time.Duration
	cmd := &cobra.Command{
		Use:   "arm NAME|MAC...",
		Short: "Let machines of the inventory install at their next network boot, once",
		Long: `arm lets each named machine of the inventory (by name or MAC) install at its next network boot:
'kiln pxe serve' gives it, once, a script whose Ignition URL carries a one-time token, which only the
address that asked for the script may use (with --dhcp full, only the address kiln leased the
machine). The first fetch of the config spends the token and disarms the machine; a machine that is
not armed gets a script that exits to its next boot device, the same as a MAC kiln does not know.

The arm is recorded in the state store (who armed the machine, when, and until when) and shown by
'kiln get machines'; a running 'kiln pxe serve' reads it within --flush-every. If the machine has not
fetched its config within --for, the arm lapses (0: it lasts until the config is fetched or the
machine is disarmed). The metal provider arms the machines it creates itself.`,
		Example: `  kiln pxe arm demo-control-plane-0
  kiln pxe arm 52:54:00:00:00:02 demo-workers-1 --for 30m`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if lasts < 0 {
				return fmt.Errorf("--for %v: want 0 or more", lasts)
			}
			return withInventoryMachines(g, args, func(st *state.Store, m *pxe.Machine) error {
				now := time.Now().UTC()
				a := pxe.Arm{MAC: m.MAC, By: pxe.ArmedByCLI, At: now}
				until := "its config is fetched"
				if lasts > 0 {
					a.Expires = now.Add(lasts)
					until = a.Expires.Local().Format(time.DateTime)
				}
				if err := pxe.ArmMachine(st, a); err != nil {
					return err
				}
				fmt.Fprintf(g.out, "armed %s (%s) until %s: its next network boot installs it\n", m.Name, m.MAC, until)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&lasts, "for", time.Hour, "how long the arm lasts if the machine does not fetch its config (0: until it does)")
	return cmd
}

func newPXEDisarm(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "disarm NAME|MAC...",
		Short: "Keep machines from installing at their next network boot",
		Long: `disarm removes the arm of each named machine of the inventory (by name or MAC) and revokes the
enrollment ticket of a script it was given and has not used yet: its next network boot, and the
Ignition URL it may hold, install nothing.`,
		Example: `  kiln pxe disarm demo-control-plane-0`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withInventoryMachines(g, args, func(st *state.Store, m *pxe.Machine) error {
				if err := pxe.Disarm(st, m.MAC); err != nil {
					return err
				}
				msg := "disarmed " + m.Name
				revoked, err := revokePending(st, m.MAC)
				if err != nil {
					return err
				}
				if revoked {
					msg += "; the ticket of the script it was given is revoked"
				}
				fmt.Fprintln(g.out, msg)
				return nil
			})
		},
	}
}

// withInventoryMachines calls fn with the state store and each machine of the stored inventory that
// args name (by name or MAC), after checking that every one of them is in it.
func withInventoryMachines(g *globals, args []string, fn func(st *state.Store, m *pxe.Machine) error) error {
	st, err := g.openState()
	if err != nil {
		return err
	}
	defer st.Close()
	inv, err := pxe.LoadInventory(st)
	if errors.Is(err, state.ErrNotFound) {
		return errors.New("no machine inventory in the state store: run 'kiln pxe load -i machines.yaml' first")
	}
	if err != nil {
		return err
	}
	var (
		machines []*pxe.Machine
		unknown  []error
	)
	for _, a := range args {
		m, ok := inv.Find(a)
		if !ok {
			unknown = append(unknown, fmt.Errorf("%s: no machine of that name or MAC in the inventory", a))
			continue
		}
		machines = append(machines, m)
	}
	if err := errors.Join(unknown...); err != nil {
		return err
	}
	for _, m := range machines {
		if err := fn(st, m); err != nil {
			return err
		}
	}
	return nil
}

// revokePending revokes the ticket of the last script the machine with mac was given, if it is
// still pending, and reports whether it did.
func revokePending(st *state.Store, mac string) (bool, error) {
	var rec pxe.Record
	err := st.Get(pxe.BucketRecords, mac, &rec)
	if errors.Is(err, state.ErrNotFound) || (err == nil && rec.Ticket == nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("boot record %s: %w", mac, err)
	}
	t, err := enroll.Get(st, rec.Ticket.Cluster, rec.Ticket.Machine)
	if errors.Is(err, state.ErrNotFound) || (err == nil && (t.Spent != nil || !time.Now().Before(t.Expires))) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, enroll.Revoke(st, t.Cluster, t.Machine)
}
