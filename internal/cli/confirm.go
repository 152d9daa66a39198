package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/kiln-dev/kiln/provisioner/reconcile"
)

// isTerminal reports whether kiln can ask its user: stdin and stderr are terminals.
func isTerminal() bool {
	return term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stderr.Fd()))
}

// approver is apply's Executor.Approve: it shows every plan that acts before the pass acts on it,
// and, when the plan deletes healthy machines without a replacement, acts only on --yes or on a yes
// at the terminal.
type approver struct {
	g       *globals
	cluster string
	yes     bool
}

func (a approver) approve(ctx context.Context, p reconcile.Plan) error {
	g := a.g
	if g.logFormat == "json" {
		g.log.Info("plan", "cluster", a.cluster, "plan", p.Document(a.cluster))
	} else if err := p.WriteText(g.errOut); err != nil {
		return err
	}
	dels := p.NeedConfirmation()
	if len(dels) == 0 || a.yes {
		return nil
	}
	names := make([]string, len(dels))
	for i, d := range dels {
		names[i] = d.Name
	}
	what := fmt.Sprintf("%s (%s)", plural(len(dels), "healthy machine"), strings.Join(names, ", "))
	if !g.terminal() {
		return fmt.Errorf("the plan deletes %s that no replacement takes the place of, and there is no terminal to ask: pass --yes to go ahead (kiln plan shows the plan)", what)
	}
	fmt.Fprintf(g.errOut, "Delete %s? [y/N] ", what)
	ok, err := readYes(ctx, g.in)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("not deleting %s: declined", what)
	}
	return nil
}

// readYes reads one answer from in: y or yes (any case) is yes, anything else no. It gives up when
// ctx is done.
func readYes(ctx context.Context, in io.Reader) (bool, error) {
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		// A byte at a time, so that nothing after the answer's line is consumed.
		var line []byte
		b := make([]byte, 1)
		for {
			n, err := in.Read(b)
			if n == 1 && b[0] != '\n' {
				line = append(line, b[0])
			}
			if err != nil || (n == 1 && b[0] == '\n') {
				ch <- answer{string(line), err}
				return
			}
		}
	}()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case a := <-ch:
		if a.err != nil && !errors.Is(a.err, io.EOF) {
			return false, fmt.Errorf("read the answer: %w", a.err)
		}
		switch strings.ToLower(strings.TrimSpace(a.line)) {
		case "y", "yes":
			return true, nil
		}
		return false, nil
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
