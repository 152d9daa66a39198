package metal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/redfish"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/onprem/pxe"
)

// Power turns machines on into a network boot, and off, through their BMCs.
type Power interface {
	// BootPXE sets the machine to boot from the network once and powers it on, or restarts it if it is on.
	BootPXE(ctx context.Context, m *pxe.Machine) error
	// Off powers the machine off (forcibly: it is being released or kept for forensics).
	Off(ctx context.Context, m *pxe.Machine) error
}

// BMCs dispatches to the driver each machine's inventory entry names.
type BMCs struct {
	Redfish *Redfish
	IPMI    *IPMI
}

// ErrPlainHTTP is returned for a Redfish BMC at an http:// address whose inventory entry does not
// set insecure: true: the password would travel in clear.
var ErrPlainHTTP = errors.New("an http:// address sends the BMC password in clear: use https://, or set insecure: true in the inventory")

// ErrNoBMC is returned for a machine whose inventory entry has no (known) BMC.
var ErrNoBMC = errors.New("metal: machine has no BMC in the inventory")

func (b BMCs) driver(m *pxe.Machine) (Power, error) {
	if m.BMC == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoBMC, m.Name)
	}
	switch {
	case m.BMC.Driver == "redfish" && b.Redfish != nil:
		return b.Redfish, nil
	case m.BMC.Driver == "ipmi" && b.IPMI != nil:
		return b.IPMI, nil
	}
	return nil, fmt.Errorf("%w: %s: driver %q not configured", ErrNoBMC, m.Name, m.BMC.Driver)
}

// BootPXE implements Power.
func (b BMCs) BootPXE(ctx context.Context, m *pxe.Machine) error {
	d, err := b.driver(m)
	if err != nil {
		return err
	}
	return d.BootPXE(ctx, m)
}

// Off implements Power.
func (b BMCs) Off(ctx context.Context, m *pxe.Machine) error {
	d, err := b.driver(m)
	if err != nil {
		return err
	}
	return d.Off(ctx, m)
}

// readPassword reads a BMC password file; its contents never appear in errors.
func readPassword(m *pxe.Machine) (string, error) {
	if m.BMC.PasswordFile == "" {
		return "", nil
	}
	b, err := readlimit.ReadFile(m.BMC.PasswordFile, readlimit.Secret)
	if err != nil {
		return "", fmt.Errorf("metal: %s: BMC password: %w", m.Name, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Redfish controls power with the DMTF Redfish API (github.com/stmcginnis/gofish).
type Redfish struct{}

func (r *Redfish) system(ctx context.Context, m *pxe.Machine) (*gofish.APIClient, *redfish.ComputerSystem, error) {
	if u, err := url.Parse(m.BMC.Address); err != nil || (u.Scheme == "http" && !m.BMC.Insecure) {
		return nil, nil, fmt.Errorf("metal: %s: redfish %s: %w", m.Name, m.BMC.Address, ErrPlainHTTP)
	}
	pw, err := readPassword(m)
	if err != nil {
		return nil, nil, err
	}
	c, err := gofish.ConnectContext(ctx, gofish.ClientConfig{Endpoint: m.BMC.Address, Username: m.BMC.Username,
		Password: pw, Insecure: m.BMC.Insecure, BasicAuth: true})
	if err != nil {
		return nil, nil, fmt.Errorf("metal: %s: redfish %s: %s", m.Name, m.BMC.Address, redact(err, pw))
	}
	var sys *redfish.ComputerSystem
	if m.BMC.SystemID != "" {
		sys, err = redfish.GetComputerSystem(c, "/redfish/v1/Systems/"+m.BMC.SystemID)
	} else {
		var all []*redfish.ComputerSystem
		if all, err = c.Service.Systems(); err == nil && len(all) != 1 {
			err = fmt.Errorf("%d systems: set bmc.systemID", len(all))
		}
		if err == nil {
			sys = all[0]
		}
	}
	if err != nil {
		c.Logout()
		return nil, nil, fmt.Errorf("metal: %s: redfish system: %s", m.Name, redact(err, pw))
	}
	return c, sys, nil
}

// BootPXE implements Power: a one-time PXE boot override, then On or ForceRestart.
func (r *Redfish) BootPXE(ctx context.Context, m *pxe.Machine) error {
	c, sys, err := r.system(ctx, m)
	if err != nil {
		return err
	}
	defer c.Logout()
	if err := sys.SetBoot(redfish.Boot{BootSourceOverrideTarget: redfish.PxeBootSourceOverrideTarget,
		BootSourceOverrideEnabled: redfish.OnceBootSourceOverrideEnabled}); err != nil {
		return fmt.Errorf("metal: %s: set PXE boot: %w", m.Name, err)
	}
	reset := redfish.ForceRestartResetType
	if sys.PowerState == redfish.OffPowerState {
		reset = redfish.OnResetType
	}
	if err := sys.Reset(reset); err != nil {
		return fmt.Errorf("metal: %s: reset %s: %w", m.Name, reset, err)
	}
	return nil
}

// Off implements Power.
func (r *Redfish) Off(ctx context.Context, m *pxe.Machine) error {
	c, sys, err := r.system(ctx, m)
	if err != nil {
		return err
	}
	defer c.Logout()
	if sys.PowerState == redfish.OffPowerState {
		return nil
	}
	if err := sys.Reset(redfish.ForceOffResetType); err != nil {
		return fmt.Errorf("metal: %s: power off: %w", m.Name, err)
	}
	return nil
}

// IPMI controls power with ipmitool over IPMI v2.0 (lanplus). The password reaches ipmitool through
// the environment (-E), never its command line.
type IPMI struct {
	// Path of ipmitool; defaults to the one on PATH.
	Path string
}

func (i *IPMI) run(ctx context.Context, m *pxe.Machine, args ...string) (string, error) {
	pw, err := readPassword(m)
	if err != nil {
		return "", err
	}
	bin := i.Path
	if bin == "" {
		bin = "ipmitool"
	}
	host, port := m.BMC.Address, ""
	if h, p, err := net.SplitHostPort(m.BMC.Address); err == nil {
		host, port = h, p
	}
	full := []string{"-I", "lanplus", "-H", host}
	if port != "" {
		full = append(full, "-p", port)
	}
	if m.BMC.Username != "" {
		full = append(full, "-U", m.BMC.Username)
	}
	full = append(full, "-E")
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+pw)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("metal: %s: ipmitool %s: %w: %s", m.Name, strings.Join(args, " "), err,
			redact(errors.New(strings.TrimSpace(errOut.String())), pw))
	}
	return out.String(), nil
}

// BootPXE implements Power: chassis bootdev pxe, then power on or cycle.
func (i *IPMI) BootPXE(ctx context.Context, m *pxe.Machine) error {
	if _, err := i.run(ctx, m, "chassis", "bootdev", "pxe"); err != nil {
		return err
	}
	status, err := i.run(ctx, m, "chassis", "power", "status")
	if err != nil {
		return err
	}
	action := "cycle"
	if strings.Contains(status, "is off") {
		action = "on"
	}
	_, err = i.run(ctx, m, "chassis", "power", action)
	return err
}

// Off implements Power.
func (i *IPMI) Off(ctx context.Context, m *pxe.Machine) error {
	_, err := i.run(ctx, m, "chassis", "power", "off")
	return err
}

// redact keeps a password out of an error text.
func redact(err error, secret string) string {
	s := err.Error()
	if secret != "" {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}
