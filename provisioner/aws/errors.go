package aws

import "errors"

var (
	// ErrInvalidConfig is wrapped by errors about the provider's own configuration.
	ErrInvalidConfig = errors.New("invalid AWS provider configuration")
	// ErrInvalidSpec is wrapped by errors about a machine or network spec kiln was asked for.
	ErrInvalidSpec = errors.New("invalid spec")
	// ErrNoNetwork is wrapped when a cluster's network does not exist (run EnsureNetwork first).
	ErrNoNetwork = errors.New("cluster network not found")
	// ErrNoBucket is wrapped when a node's config must go through S3 and no bucket is configured.
	ErrNoBucket = errors.New("no bootstrap bucket configured")
	// ErrInUse is wrapped when DeleteNetwork finds machines still running in the network.
	ErrInUse = errors.New("network still in use")
	// ErrDrift is wrapped when an existing resource contradicts the spec in a way kiln does not
	// change in place (a subnet's CIDR, a load balancer of another cluster).
	ErrDrift = errors.New("existing resource differs from the spec")
	// ErrTimeout is wrapped when AWS did not reach the awaited state in time.
	ErrTimeout = errors.New("timed out waiting for AWS")
)
