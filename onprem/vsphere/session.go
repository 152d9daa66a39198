package vsphere

import (
	"context"
	"reflect"
	"sync"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// relogin is a soap.RoundTripper that logs in again when vCenter no longer knows the session (it
// expired while idle, or vCenter restarted) and repeats the call once. Concurrent calls that fail
// together make one login. login must not go through r.
type relogin struct {
	rt    soap.RoundTripper
	login func(ctx context.Context) error

	mu  sync.Mutex
	gen uint64 // logins so far
}

func (r *relogin) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	r.mu.Lock()
	gen := r.gen
	r.mu.Unlock()
	err := r.rt.RoundTrip(ctx, req, res)
	if err == nil || !fault.Is(err, &types.NotAuthenticated{}) {
		return err
	}
	r.mu.Lock()
	if r.gen == gen { // nobody has logged in again since this call started
		if lerr := r.login(ctx); lerr != nil {
			r.mu.Unlock()
			return err // the call's own error; the login's is no clearer
		}
		r.gen++
	}
	r.mu.Unlock()
	// Decoding leaves what the new response lacks as it was: clear the first response's fault.
	if v := reflect.ValueOf(res); v.Kind() == reflect.Pointer && !v.IsNil() {
		v.Elem().SetZero()
	}
	return r.rt.RoundTrip(ctx, req, res)
}
