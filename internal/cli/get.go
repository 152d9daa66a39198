package cli

import "github.com/spf13/cobra"

// newGet is 'kiln get': lists of things kiln keeps track of.
func newGet(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get",
		Short: "List what kiln keeps track of",
	}
	cmd.AddCommand(newGetNodes(g), newGetMachines(g), newGetReboots(g))
	return cmd
}
