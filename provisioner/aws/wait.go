package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/smithy-go"
	"k8s.io/apimachinery/pkg/util/wait"
)

// How the provider waits for AWS: an SDK waiter where EC2 has one for the state awaited (a NAT
// gateway deleted, an instance visible), wait.ExponentialBackoffWithContext otherwise (an instance
// that can be stopped, a dependency that is going away). Every wait makes PollAttempts checks at
// most, PollInterval apart, and ends with the caller's context.

// pollBackoff is the cadence of every wait: PollAttempts checks, PollInterval apart.
func (p *Provider) pollBackoff() wait.Backoff {
	return wait.Backoff{Duration: p.opts.PollInterval, Steps: p.opts.PollAttempts}
}

// timedOut is the error of a wait whose checks ran out.
func (p *Provider) timedOut(what string) error {
	return fmt.Errorf("aws: %s: still not done after %d checks %v apart: %w", what, p.opts.PollAttempts, p.opts.PollInterval, ErrTimeout)
}

// poll calls check every PollInterval until it reports done, an error, or PollAttempts run out.
func (p *Provider) poll(ctx context.Context, what string, check wait.ConditionWithContextFunc) error {
	var failed error
	err := wait.ExponentialBackoffWithContext(ctx, p.pollBackoff(), func(ctx context.Context) (bool, error) {
		done, err := check(ctx)
		failed = err
		return done, err
	})
	switch {
	case err == nil || failed != nil:
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("aws: %s: %w", what, ctx.Err())
	}
	return p.timedOut(what)
}

// retryWhile calls fn until it fails with none of the codes (AWS still settling a dependency), within
// the poll bounds. Its error names what, with AWS's last answer: after the last check, that is
// still one of the codes.
func (p *Provider) retryWhile(ctx context.Context, what string, codes []string, fn func(context.Context) error) error {
	var last error
	err := p.poll(ctx, what, func(ctx context.Context) (bool, error) {
		last = fn(ctx)
		return last == nil || !slices.Contains(codes, apiCode(last)), nil
	})
	if err != nil && !errors.Is(err, ErrTimeout) {
		return err // the caller's context ended
	}
	return wrap(last, "%s", what)
}

// capChecks wraps a waiter's Retryable, for a waiter that checks every PollInterval (its MinDelay
// and MaxDelay): a request that failed (after the SDK's own retries) ends the
// wait with its error, as AWS's answers that the waiter does not expect do, and the wait ends with
// ErrTimeout after PollAttempts checks.
func capChecks[In, Out any](p *Provider, what string, retryable func(context.Context, In, Out, error) (bool, error)) func(context.Context, In, Out, error) (bool, error) {
	checks := 0
	return func(ctx context.Context, in In, out Out, err error) (bool, error) {
		if err != nil && apiCode(err) == "" {
			return false, err
		}
		again, err := retryable(ctx, in, out, err)
		if checks++; again && checks >= p.opts.PollAttempts {
			return false, p.timedOut(what)
		}
		return again, err
	}
}

// waitBudget is the maxWaitDur an SDK waiter requires. capChecks ends the wait first, or the
// caller's context does: this is only as long as PollAttempts checks can take, each an API call
// that the SDK tries up to MaxAttempts times, MaxBackoff apart.
func (p *Provider) waitBudget() time.Duration {
	o := p.opts
	return time.Duration(o.PollAttempts) * (o.PollInterval + time.Duration(o.MaxAttempts)*o.MaxBackoff)
}

// waited turns what an SDK waiter returned into the provider's error.
func waited(ctx context.Context, what string, err error) error {
	var op *smithy.OperationError
	switch {
	case err == nil, errors.Is(err, ErrTimeout):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("aws: %s: %w", what, ctx.Err())
	case apiCode(err) != "", errors.As(err, &op):
		return wrap(err, "%s", what)
	}
	// The waiter's own bound (waitBudget) ran out.
	return fmt.Errorf("aws: %s: %v: %w", what, err, ErrTimeout)
}
