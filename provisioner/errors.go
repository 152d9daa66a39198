package provisioner

import "errors"

// ErrNotReachable: the cluster's API endpoint cannot be reached from kiln's host yet (no control-plane
// machine forwards it).
var ErrNotReachable = errors.New("the cluster's API endpoint is not reachable from this host yet")
