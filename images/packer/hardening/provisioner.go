package hardening

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2/hcldec"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/kiln-dev/kiln/images/harden"
)

// PoweroffDelaySeconds is how long after scheduling it the machine powers itself off when the
// build user is removed: long enough for Packer to start its shutdown_command on the connection it
// already has, which needs no sudo (for example `shutdown_command = "true"`).
const PoweroffDelaySeconds = 15

// Provisioner is the kiln-harden provisioner.
type Provisioner struct {
	config Config
}

// ConfigSpec returns the HCL2 layout of the configuration.
func (p *Provisioner) ConfigSpec() hcldec.ObjectSpec { return p.config.FlatMapstructure().HCL2Spec() }

// Prepare decodes and checks the configuration, returning every problem at once.
func (p *Provisioner) Prepare(raws ...interface{}) error {
	if err := p.config.decode(raws...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return p.config.validate()
}

// Provision applies the profile to the machine behind comm, verifies the result and cleans the image.
// generatedData is Packer's build data; its "User" is the communicator's user.
func (p *Provisioner) Provision(ctx context.Context, ui packersdk.Ui, comm packersdk.Communicator, generatedData map[string]interface{}) error {
	user, _ := generatedData["User"].(string)
	r := &remote{comm: comm, ui: ui}
	return run(ctx, r, &p.config, user)
}

// run is Provision's body: detect, plan, apply, verify, clean.
func run(ctx context.Context, r *remote, c *Config, commUser string) error {
	uid, err := r.output(ctx, []string{"id", "-u"})
	if err != nil {
		return fmt.Errorf("kiln-harden: %w", err)
	}
	r.sudo = strings.TrimSpace(string(uid)) != "0"

	distro, err := detectDistro(ctx, r, c.Distro)
	if err != nil {
		return err
	}
	buildUser := commUser
	if buildUser == "root" {
		buildUser = ""
	}
	profile := c.Profile(buildUser)
	if err := profile.Validate(); err != nil {
		return fmt.Errorf("kiln-harden: %w", errors.Join(profileErrors(err)...))
	}
	plan, err := harden.NewPlan(profile, distro)
	if err != nil {
		return fmt.Errorf("kiln-harden: %w", err)
	}
	ui := r.ui
	rules := profile.Active(distro.Family)
	ui.Say(fmt.Sprintf("kiln-harden: hardening %s at level %s: %d rules, %d steps (sudo: %t)", distro, profile.Level, len(rules), len(plan.Steps), r.sudo))
	for _, id := range profile.Skip {
		ui.Say(fmt.Sprintf("kiln-harden: skipping %s, as the template asks (recorded in %s)", id, harden.Provenance))
	}
	apply, clean := splitPlan(plan)
	if err := r.applySteps(ctx, apply, 0, len(plan.Steps)); err != nil {
		return err
	}
	ui.Say("kiln-harden: verifying the effective state (sshd -T, apt-config dump, each rule's check)")
	if err := verify(ctx, r, profile, distro); err != nil {
		return err
	}
	ui.Say("kiln-harden: no drift; cleaning the image")
	if profile.Hygiene.RemoveBuildUser && len(clean) > 0 {
		// The last step removes the user this session runs as: after it no sudo works, so the
		// poweroff is scheduled now, as a transient unit of PID 1 that outlives the session.
		last := clean[len(clean)-1]
		if err := r.applySteps(ctx, clean[:len(clean)-1], len(apply), len(plan.Steps)); err != nil {
			return err
		}
		if _, err := r.output(ctx, poweroffCommand(profile.Hygiene.BuildUser)); err != nil {
			return fmt.Errorf("kiln-harden: schedule the poweroff: %w", err)
		}
		ui.Say(fmt.Sprintf("kiln-harden: the machine powers off in %d s (the build user is removed now)", PoweroffDelaySeconds))
		return r.applySteps(ctx, []harden.Step{last}, len(plan.Steps)-1, len(plan.Steps))
	}
	if err := r.applySteps(ctx, clean, len(apply), len(plan.Steps)); err != nil {
		return err
	}
	_, err = r.output(ctx, []string{"sync"})
	return err
}

// poweroffCommand schedules the poweroff as a transient unit of PID 1 that first removes the sudoers
// drop-ins granting the build user (the build's own grant must not outlive the user: a later user of
// the same name would inherit it), then powers off. The unit's command has no "$": systemd expands
// environment variables in it. buildUser is a valid user name (Profile.Validate).
func poweroffCommand(buildUser string) []string {
	script := `sync; find /etc/sudoers.d -maxdepth 1 -type f -exec grep -qsE '^` + buildUser +
		`[[:space:]]' {} ';' -delete; exec systemctl poweroff`
	return []string{"systemd-run", "--quiet", "--on-active=" + fmt.Sprint(PoweroffDelaySeconds),
		"--timer-property=AccuracySec=1s", "/bin/sh", "-c", script}
}

// splitPlan splits a plan at its first hygiene step, the removal of the host keys: everything before
// it configures the machine, everything from it on cleans the image. sshd -T needs the host keys, so
// the verification runs between the two.
func splitPlan(pl harden.Plan) (apply, clean []harden.Step) {
	for i, s := range pl.Steps {
		if s.Command != nil && strings.Contains(harden.ShellQuote(s.Command.Argv), "ssh_host_*") {
			return pl.Steps[:i], pl.Steps[i:]
		}
	}
	return pl.Steps, nil
}

// detectDistro reads /etc/os-release (ID, then each ID_LIKE) unless override names the distro.
func detectDistro(ctx context.Context, r *remote, override string) (harden.Distro, error) {
	if override != "" {
		return harden.ParseDistro(override)
	}
	out, err := r.outputNoSudo(ctx, []string{"cat", "/etc/os-release"})
	if err != nil {
		return harden.Distro{}, fmt.Errorf("kiln-harden: detect the distro: %w", err)
	}
	d, err := ParseOSRelease(out)
	if err != nil {
		return harden.Distro{}, fmt.Errorf("kiln-harden: /etc/os-release: %w (set distro to override)", err)
	}
	return d, nil
}

// ParseOSRelease returns the distro of an os-release file: its ID if kiln knows it, else the first
// known ID_LIKE entry.
func ParseOSRelease(data []byte) (harden.Distro, error) {
	vals := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		vals[k] = strings.Trim(v, `"'`)
	}
	if vals["ID"] == "" {
		return harden.Distro{}, fmt.Errorf("%w: no ID", harden.ErrUnknownDistro)
	}
	d, err := harden.ParseDistro(vals["ID"])
	if err == nil {
		return d, nil
	}
	for _, like := range strings.Fields(vals["ID_LIKE"]) {
		if d, e := harden.ParseDistro(like); e == nil {
			return d, nil
		}
	}
	return harden.Distro{}, err
}

// verify reads the effective sshd and apt configuration and returns every drift as one error.
func verify(ctx context.Context, r *remote, p harden.Profile, d harden.Distro) error {
	drifts, err := harden.Audit(p, d, func(argv []string) ([]byte, error) { return r.output(ctx, argv) })
	if err != nil {
		return fmt.Errorf("kiln-harden: verify: %w", err)
	}
	if len(drifts) > 0 {
		lines := make([]string, len(drifts))
		for i, dr := range drifts {
			lines[i] = describe(dr)
		}
		return fmt.Errorf("kiln-harden: %w: %d drifts:\n  %s", ErrDrift, len(lines), strings.Join(lines, "\n  "))
	}
	return nil
}

// describe is one drift on one line, with the wanted value when the message does not say it.
func describe(d harden.Drift) string {
	s := d.String()
	if d.Want != "" && !strings.Contains(d.Message, d.Want) {
		s += fmt.Sprintf(" (want %q)", d.Want)
	}
	return s
}
