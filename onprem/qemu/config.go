package qemu

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// Defaults of Config.
const (
	DefaultMemoryMiB   = v1alpha1.DefaultQEMUMemoryMiB
	DefaultCPUs        = v1alpha1.DefaultQEMUCPUs
	DefaultSSHPortBase = v1alpha1.DefaultQEMUSSHPortBase
	DefaultAPIPortBase = v1alpha1.DefaultQEMUAPIPortBase
	DefaultAPIPort     = v1alpha1.DefaultAPIPort
	DefaultPrivateCIDR = "10.0.0.0/24"
	DefaultQEMU        = "qemu-system-x86_64"
	DefaultQEMUImg     = "qemu-img"
	DefaultVDESwitch   = "vde_switch"
	DefaultStopTimeout = 10 * time.Second
	// DefaultKernelArgs boot the kiln base image (images/base): its root file system is labelled
	// kiln-root, and Ignition's dracut module runs when the image's first-boot stamp is there.
	DefaultKernelArgs = "root=LABEL=kiln-root rw console=ttyS0 ignition.firstboot ignition.platform.id=qemu"
)

// Files looked for beside an image when Config names no kernel: the layout hack/tools.sh base-image
// writes.
const (
	ImageKernel  = "vmlinuz"
	ImageInitrd  = "initrd.img"
	ImageCmdline = "cmdline"
)

// Config of a Provider. Zero fields take their defaults.
type Config struct {
	// StateDir holds a directory per cluster with one per machine in it. Required.
	StateDir string
	// ImageDir is where relative MachineSpec.Image paths are found. Defaults to the working directory.
	ImageDir string
	// Kernel and Initrd to boot with -kernel/-initrd. When Kernel is empty, the provider uses vmlinuz
	// and initrd.img beside the image if they are there, else it boots the disk with the firmware.
	Kernel string
	Initrd string
	// KernelArgs is the kernel command line. Defaults to the cmdline file beside the image, else
	// DefaultKernelArgs.
	KernelArgs string
	// MemoryMiB per VM. Defaults to 2048.
	MemoryMiB int
	// CPUs per VM. Defaults to 2.
	CPUs int
	// SSHPortBase is the first 127.0.0.1 port forwarded to a guest's SSH; each machine gets the lowest
	// free one from there. Defaults to 2222.
	SSHPortBase int
	// APIPortBase is the first 127.0.0.1 port forwarded to a control-plane machine's APIPort, where
	// haproxy serves the cluster's API endpoint; each control-plane machine gets the lowest free one
	// from there. Defaults to 16443.
	APIPortBase int
	// APIPort is the API endpoint's port on the guests (spec.network.apiEndpoint.port). Defaults to
	// 6443.
	APIPort int
	// PrivateCIDR is the private network's range; machines get its addresses from .10 on. Defaults to
	// "10.0.0.0/24" (the spec's default first private subnet).
	PrivateCIDR string
	// EndpointAddress is the cluster's API endpoint address (spec.network.apiEndpoint.address), which
	// keepalived holds on a control-plane machine: never given to a machine. The zero Addr: none.
	EndpointAddress netip.Addr
	// ConfigPortBase is the first 127.0.0.1 port a cluster's config server may get (ConfigServer).
	// Defaults to 17443.
	ConfigPortBase int
	// Socat relays a machine's connections to its cluster's config server, found on PATH when not
	// absolute. Defaults to socat; needed only by ConfigServer and the machines created after it.
	Socat string
	// QEMU, QEMUImg and VDESwitch are the programs to run, found on PATH when not absolute.
	// Default to qemu-system-x86_64, qemu-img and vde_switch.
	QEMU      string
	QEMUImg   string
	VDESwitch string
	// StopTimeout is how long Stop and Delete wait after SIGTERM before SIGKILL. Defaults to 10s.
	StopTimeout time.Duration
	// WorkersWithControlPlane: kiln apply creates a new cluster's workers together with its control
	// plane, not once the control plane's Node is Ready (spec.provider.qemu.workersWithControlPlane;
	// see Provider.ControlPlaneFirst).
	WorkersWithControlPlane bool
}

// FromSpec returns the Config of a cluster spec's QEMU block, with stateDir and imageDir.
func FromSpec(c *v1alpha1.Cluster, stateDir, imageDir string) Config {
	cfg := Config{StateDir: stateDir, ImageDir: imageDir}
	if q := c.Spec.Provider.QEMU; q != nil {
		cfg.MemoryMiB, cfg.CPUs, cfg.SSHPortBase, cfg.APIPortBase = q.MemoryMiB, q.CPUs, q.SSHPortBase, q.APIPortBase
		cfg.WorkersWithControlPlane = q.WorkersWithControlPlane
	}
	if subs := c.Spec.Network.PrivateSubnets; len(subs) > 0 {
		cfg.PrivateCIDR = subs[0]
	}
	cfg.APIPort = c.Spec.Network.APIEndpoint.Port
	if a, err := netip.ParseAddr(c.Spec.Network.APIEndpoint.Address); err == nil {
		cfg.EndpointAddress = a
	}
	return cfg
}

// config is a checked Config with its defaults filled in.
type config struct {
	Config
	prefix netip.Prefix
}

func (c Config) check() (config, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("qemu: config: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalid))
	}
	if c.StateDir == "" {
		bad("StateDir", "required")
	} else if abs, err := filepath.Abs(c.StateDir); err == nil {
		c.StateDir = abs
	}
	if c.ImageDir != "" {
		if abs, err := filepath.Abs(c.ImageDir); err == nil {
			c.ImageDir = abs
		}
	}
	setInt(&c.MemoryMiB, DefaultMemoryMiB)
	setInt(&c.CPUs, DefaultCPUs)
	setInt(&c.SSHPortBase, DefaultSSHPortBase)
	setInt(&c.APIPortBase, DefaultAPIPortBase)
	setInt(&c.APIPort, DefaultAPIPort)
	setInt(&c.ConfigPortBase, DefaultConfigPortBase)
	if c.Socat == "" {
		c.Socat = DefaultSocat
	}
	if path, err := exec.LookPath(c.Socat); err == nil {
		c.Socat = path
	}
	if c.MemoryMiB < 32 {
		bad("MemoryMiB", "%d is less than 32", c.MemoryMiB)
	}
	if c.CPUs < 1 {
		bad("CPUs", "%d is less than 1", c.CPUs)
	}
	if c.SSHPortBase < 1024 || c.SSHPortBase > 65000 {
		bad("SSHPortBase", "%d is not in 1024..65000", c.SSHPortBase)
	}
	if c.APIPortBase < 1024 || c.APIPortBase > 65000 {
		bad("APIPortBase", "%d is not in 1024..65000", c.APIPortBase)
	}
	if c.ConfigPortBase < 1024 || c.ConfigPortBase > 65000 {
		bad("ConfigPortBase", "%d is not in 1024..65000", c.ConfigPortBase)
	}
	if c.APIPort < 1 || c.APIPort > 65535 {
		bad("APIPort", "%d is not a port", c.APIPort)
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.PrivateCIDR == "" {
		c.PrivateCIDR = DefaultPrivateCIDR
	}
	prefix, err := netip.ParsePrefix(c.PrivateCIDR)
	switch {
	case err != nil:
		bad("PrivateCIDR", "%q is not a CIDR", c.PrivateCIDR)
	case !prefix.Addr().Is4() || prefix.Bits() > 27:
		bad("PrivateCIDR", "%q is not an IPv4 range of at least 32 addresses", c.PrivateCIDR)
	}
	if c.Initrd != "" && c.Kernel == "" {
		bad("Initrd", "set without Kernel")
	}
	for _, p := range []struct {
		field string
		v     *string
		def   string
	}{{"QEMU", &c.QEMU, DefaultQEMU}, {"QEMUImg", &c.QEMUImg, DefaultQEMUImg}, {"VDESwitch", &c.VDESwitch, DefaultVDESwitch}} {
		if *p.v == "" {
			*p.v = p.def
		}
		path, err := exec.LookPath(*p.v)
		if err != nil {
			bad(p.field, "%v (Debian: apt-get install qemu-system-x86 qemu-utils vde2)", err)
			continue
		}
		*p.v = path
	}
	if len(errs) > 0 {
		return config{}, errors.Join(errs...)
	}
	return config{Config: c, prefix: prefix.Masked()}, nil
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}
