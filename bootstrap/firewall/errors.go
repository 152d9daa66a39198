package firewall

import "errors"

var (
	// ErrInvalidSpec is wrapped by the errors of Intent when the cluster spec lacks what the firewall is
	// computed from, or holds values it cannot use (run v1alpha1.SetDefaults and Validate first).
	ErrInvalidSpec = errors.New("invalid cluster spec")

	// ErrInvalidRule is wrapped by the errors of Nftables when a rule or the role cannot be rendered.
	ErrInvalidRule = errors.New("invalid firewall rule")
)
