package podnet

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Nft loads nftables rulesets with the nft program.
type Nft struct {
	// Command runs nft: {"nft"} when empty; a test runs it in a network namespace with
	// {"ip", "netns", "exec", NAME, "nft"}.
	Command []string
}

// Load loads ruleset with `nft -f -`; its error holds nft's own message.
func (n Nft) Load(ctx context.Context, ruleset []byte) error {
	args := n.Command
	if len(args) == 0 {
		args = []string{"nft"}
	}
	cmd := exec.CommandContext(ctx, args[0], append(args[1:], "-f", "-")...)
	cmd.Stdin = bytes.NewReader(ruleset)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("podnet: nft -f (table inet %s): %w: %s", NftTable, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
