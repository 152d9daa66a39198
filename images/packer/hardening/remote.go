package hardening

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/kiln-dev/kiln/images/harden"
)

// remote runs a plan's steps over a Packer communicator.
type remote struct {
	comm packersdk.Communicator
	ui   packersdk.Ui
	// sudo prefixes every command but the os-release read with `sudo -n`: the build user is not root.
	sudo bool
	// stage is the private directory files are uploaded to before install puts them in place:
	// made by mktemp -d (a random name, mode 0700, owned by the build user) for the steps of one
	// applySteps, and removed after them. Empty when none is made.
	stage string
}

// stageTemplate is mktemp's template for the staging directory: ten random characters, so that no
// other user of the build VM can guess the path and plant a file or a symlink there first.
const stageTemplate = "/tmp/kiln-harden.XXXXXXXXXX"

// maxOutputInError is how much of a failed command's output an error carries.
const maxOutputInError = 2048

// start runs one command line and returns its stdout, stderr and exit status. stream passes the
// output through to the UI as it comes.
func (r *remote) start(ctx context.Context, line string, stream bool) (stdout, stderr []byte, status int, err error) {
	var out, errOut bytes.Buffer
	cmd := &packersdk.RemoteCmd{Command: line, Stdout: &out, Stderr: &errOut}
	if stream {
		err = cmd.RunWithUi(ctx, r.comm, r.ui)
	} else if err = r.comm.Start(ctx, cmd); err == nil {
		cmd.Wait()
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("run %s: %w", line, err)
	}
	return out.Bytes(), errOut.Bytes(), cmd.ExitStatus(), nil
}

// line is argv as one shell command line, with sudo when needed.
func (r *remote) line(argv []string, sudo bool) string {
	l := harden.ShellQuote(argv)
	if sudo {
		l = "sudo -n " + l
	}
	return l
}

// check turns a non-zero exit status into an error carrying the end of stderr.
func check(line string, stderr []byte, status int) error {
	if status == 0 {
		return nil
	}
	tail := strings.TrimSpace(string(stderr))
	if len(tail) > maxOutputInError {
		tail = "..." + tail[len(tail)-maxOutputInError:]
	}
	return fmt.Errorf("%w: %s: exit status %d: %s", ErrCommand, line, status, tail)
}

// output runs argv (with sudo when needed) and returns its stdout.
func (r *remote) output(ctx context.Context, argv []string) ([]byte, error) {
	return r.outputAs(ctx, argv, r.sudo)
}

// outputNoSudo runs argv as the build user.
func (r *remote) outputNoSudo(ctx context.Context, argv []string) ([]byte, error) {
	return r.outputAs(ctx, argv, false)
}

func (r *remote) outputAs(ctx context.Context, argv []string, sudo bool) ([]byte, error) {
	line := r.line(argv, sudo)
	out, errOut, status, err := r.start(ctx, line, false)
	if err != nil {
		return nil, err
	}
	return out, check(line, errOut, status)
}

// applySteps runs steps, numbered from first+1 of total, stopping at the first failure.
func (r *remote) applySteps(ctx context.Context, steps []harden.Step, first, total int) (err error) {
	defer func() {
		if rmErr := r.removeStage(ctx); err == nil {
			err = rmErr
		}
	}()
	for i, s := range steps {
		n := first + i + 1
		switch {
		case s.File != nil:
			f := s.File
			r.ui.Say(fmt.Sprintf("kiln-harden: [%d/%d] write %s: %s", n, total, f.Path, f.Purpose))
			if err := r.writeFile(ctx, *f, n); err != nil {
				return fmt.Errorf("kiln-harden: step %d (%s): %w", n, f.Purpose, err)
			}
		case s.Command != nil:
			c := s.Command
			r.ui.Say(fmt.Sprintf("kiln-harden: [%d/%d] %s", n, total, c.Purpose))
			line := r.line(c.Argv, r.sudo)
			_, errOut, status, err := r.start(ctx, line, true)
			if err == nil {
				err = check(line, errOut, status)
			}
			if err != nil {
				return fmt.Errorf("kiln-harden: step %d (%s): %w", n, c.Purpose, err)
			}
		}
	}
	return nil
}

// writeFile uploads f to a temporary file and installs it in place with its owner and mode; install
// creates missing parent directories.
func (r *remote) writeFile(ctx context.Context, f harden.File, n int) error {
	dir, err := r.stageDir(ctx)
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s/step-%d", dir, n)
	if err := r.comm.Upload(tmp, bytes.NewReader(f.Contents), nil); err != nil {
		return fmt.Errorf("upload %s: %w", f.Path, err)
	}
	owner, group, ok := strings.Cut(f.Owner, ":")
	if !ok {
		group = owner
	}
	install := []string{"install", "-D", "-o", owner, "-g", group, "-m", fmt.Sprintf("%04o", f.Mode.Perm()), tmp, f.Path}
	if _, err := r.output(ctx, install); err != nil {
		return err
	}
	_, err = r.outputNoSudo(ctx, []string{"rm", "-f", tmp})
	return err
}

// stageDir makes the private staging directory on the build VM, as the build user, once per
// applySteps: mktemp -d with a random name, then chmod 0700 so that its mode does not rest on
// mktemp's defaults.
func (r *remote) stageDir(ctx context.Context) (string, error) {
	if r.stage != "" {
		return r.stage, nil
	}
	out, err := r.outputNoSudo(ctx, []string{"mktemp", "-d", stageTemplate})
	if err != nil {
		return "", fmt.Errorf("make the staging directory: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	prefix := strings.TrimSuffix(stageTemplate, "XXXXXXXXXX")
	if !strings.HasPrefix(dir, prefix) || len(dir) != len(stageTemplate) || strings.TrimFunc(dir[len(prefix):], isAlnum) != "" {
		return "", fmt.Errorf("make the staging directory: mktemp printed %q, want a path like %s", dir, stageTemplate)
	}
	if _, err := r.outputNoSudo(ctx, []string{"chmod", "0700", dir}); err != nil {
		return "", fmt.Errorf("make the staging directory private: %w", err)
	}
	r.stage = dir
	return dir, nil
}

// removeStage removes the staging directory, if one was made.
func (r *remote) removeStage(ctx context.Context) error {
	if r.stage == "" {
		return nil
	}
	dir := r.stage
	r.stage = ""
	if _, err := r.outputNoSudo(ctx, []string{"rm", "-rf", dir}); err != nil {
		return fmt.Errorf("remove the staging directory: %w", err)
	}
	return nil
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}
