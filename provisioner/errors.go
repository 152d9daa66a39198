package provisioner

import "errors"

// ErrNotReachable: the cluster's API endpoint cannot be reached from kiln's host yet (no control-plane
// machine forwards it).
var ErrNotReachable = errors.New("the cluster's API endpoint is not reachable from this host yet")

// ErrNoHostKeys: the machine has not reported its SSH host keys yet (it has not booted that far).
var ErrNoHostKeys = errors.New("the machine has not reported its SSH host keys yet")
