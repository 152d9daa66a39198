package converge

import "errors"

// ErrNotApproved is returned by Pass when Executor.Approve refused the plan: nothing was stored or
// done.
var ErrNotApproved = errors.New("plan not approved")
