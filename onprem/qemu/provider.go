package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/state/atomicfile"
)

// Files of a machine's directory.
const (
	metaFile    = "meta.json"
	configFile  = "config.ign"
	diskFile    = "disk.qcow2"
	pidFile     = "qemu.pid"
	serialFile  = "serial.log"
	switchDir   = ".switch"
	switchPID   = ".switch.pid"
	locksDir    = ".locks"
	allocLock   = "alloc"
	firstHostIP = 10
)

// Provider runs machines as local QEMU processes. It keeps no state in memory: everything is in
// Config.StateDir, so that several Providers (and several kiln processes) share the machines.
type Provider struct {
	cfg config
}

var (
	_ provisioner.Provider   = (*Provider)(nil)
	_ provisioner.Stopper    = (*Provider)(nil)
	_ provisioner.Addresser  = (*Provider)(nil)
	_ provisioner.APIReacher = (*Provider)(nil)
	// The cluster's network is its private switch, started with its first machine; DeleteNetwork
	// finishes what a Delete interrupted before the switch went.
	_ provisioner.NetworkDeleter = (*Provider)(nil)
)

// New checks cfg and returns a Provider. It makes the state directory.
func New(cfg Config) (*Provider, error) {
	c, err := cfg.check()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(c.StateDir, locksDir), 0o700); err != nil {
		return nil, fmt.Errorf("qemu: state directory: %w", err)
	}
	return &Provider{cfg: c}, nil
}

// meta is what meta.json records of a machine.
type meta struct {
	Name    string    `json:"name"`
	Cluster string    `json:"cluster"`
	Role    string    `json:"role"`
	Pool    string    `json:"pool"`
	Image   string    `json:"image"`
	Created time.Time `json:"created"`
	SSHPort int       `json:"sshPort"`
	// APIPort is the 127.0.0.1 port forwarded to a control-plane machine's API endpoint port; 0 for
	// a worker.
	APIPort int `json:"apiPort,omitempty"`
	// Address is the machine's address on the cluster's private network.
	Address string `json:"address"`
	MAC     string `json:"mac"`
	// Stopped is set by Stop: the process is gone on purpose.
	Stopped bool `json:"stopped,omitempty"`
	// ConfigPort is the 127.0.0.1 port of the cluster's config server that the machine reaches at
	// 10.0.2.100:8443; 0 when its cluster had none when it was created.
	ConfigPort int `json:"configPort,omitempty"`
	// Reserved: the name has its Address (Reserve) and no machine yet; only Name, Cluster, Address
	// and MAC are set. Create makes the machine with that address; Delete releases it.
	Reserved bool `json:"reserved,omitempty"`
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func checkName(field, v string) error {
	if !dnsLabel.MatchString(v) {
		return fmt.Errorf("qemu: %s %q is not a DNS label (lowercase letters, digits and '-', at most 63): %w", field, v, ErrInvalid)
	}
	return nil
}

func (p *Provider) clusterDir(cluster string) string { return filepath.Join(p.cfg.StateDir, cluster) }

// machineDir finds the directory of the machine called name, in whichever cluster holds it; "" if none.
func (p *Provider) machineDir(name string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(p.cfg.StateDir, "*", name, metaFile))
	if err != nil {
		return "", err
	}
	if len(matches) == 0 {
		return "", nil
	}
	return filepath.Dir(matches[0]), nil
}

// Create makes the machine unless it exists, and returns it either way.
func (p *Provider) Create(ctx context.Context, spec provisioner.MachineSpec) (provisioner.Machine, error) {
	if err := ctx.Err(); err != nil {
		return provisioner.Machine{}, fmt.Errorf("qemu: create %s: %w", spec.Name, err)
	}
	if err := p.checkSpec(spec); err != nil {
		return provisioner.Machine{}, err
	}
	unlock, err := p.lock(ctx, "machine-"+spec.Name)
	if err != nil {
		return provisioner.Machine{}, fmt.Errorf("qemu: create %s: %w", spec.Name, err)
	}
	defer unlock()

	var reserved *meta
	if dir, err := p.machineDir(spec.Name); err != nil {
		return provisioner.Machine{}, fmt.Errorf("qemu: create %s: %w", spec.Name, err)
	} else if dir != "" {
		md, err := readMeta(dir)
		if err != nil {
			return provisioner.Machine{}, fmt.Errorf("qemu: create %s: %w", spec.Name, err)
		}
		if md.Cluster != spec.Cluster {
			return provisioner.Machine{}, fmt.Errorf("qemu: create %s: the name is taken by a machine of cluster %s: %w", spec.Name, md.Cluster, ErrInvalid)
		}
		if !md.Reserved {
			m, err := p.machine(dir)
			if err != nil {
				return provisioner.Machine{}, fmt.Errorf("qemu: create %s: %w", spec.Name, err)
			}
			return m, nil
		}
		reserved = &md
	}

	dir := filepath.Join(p.clusterDir(spec.Cluster), spec.Name)
	m, err := p.create(ctx, spec, dir, reserved)
	if err != nil {
		// Nothing half made stays behind: a later Create starts afresh, with the address reserved
		// for the name, if one was.
		p.kill(dir)
		os.RemoveAll(dir)
		if reserved != nil {
			if rerr := p.writeReservation(dir, *reserved); rerr != nil {
				err = errors.Join(err, fmt.Errorf("keep the reservation of %s: %w", reserved.Address, rerr))
			}
		}
		if derr := p.dropSwitchIfEmpty(context.WithoutCancel(ctx), spec.Cluster); derr != nil {
			err = errors.Join(err, derr)
		}
		return provisioner.Machine{}, fmt.Errorf("qemu: create %s: %w", spec.Name, err)
	}
	return m, nil
}

// Reserve gives the machine called name of cluster its address on the cluster's private network
// before the machine exists, so that the address can be rendered into its config: the lowest free
// one from .10 of Config.PrivateCIDR (never Config.EndpointAddress). Reserving a name again, or one
// whose machine exists, returns its address; Create makes the machine with it, and Delete releases
// it. The reservation is the machine's record (meta.json) without a machine, written under the same
// locks as Create's, so it outlives kiln and a failed Create.
func (p *Provider) Reserve(ctx context.Context, cluster, name string) (netip.Addr, error) {
	if err := ctx.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("qemu: reserve %s: %w", name, err)
	}
	for _, f := range []struct{ field, v string }{{"cluster", cluster}, {"name", name}} {
		if err := checkName(f.field, f.v); err != nil {
			return netip.Addr{}, err
		}
	}
	unlock, err := p.lock(ctx, "machine-"+name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("qemu: reserve %s: %w", name, err)
	}
	defer unlock()
	if dir, err := p.machineDir(name); err != nil {
		return netip.Addr{}, fmt.Errorf("qemu: reserve %s: %w", name, err)
	} else if dir != "" {
		md, err := readMeta(dir)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("qemu: reserve %s: %w", name, err)
		}
		if md.Cluster != cluster {
			return netip.Addr{}, fmt.Errorf("qemu: reserve %s: the name is taken by a machine of cluster %s: %w", name, md.Cluster, ErrInvalid)
		}
		a, err := netip.ParseAddr(md.Address)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("qemu: reserve %s: %s: %w", name, filepath.Join(dir, metaFile), err)
		}
		return a, nil
	}

	unlockAlloc, err := p.lock(ctx, allocLock)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("qemu: reserve %s: %w", name, err)
	}
	defer unlockAlloc()
	all, err := p.allMetas()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("qemu: reserve %s: %w", name, err)
	}
	addr, err := nextAddress(p.cfg.prefix, all, cluster, p.cfg.EndpointAddress)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("qemu: reserve %s: %w", name, err)
	}
	md := meta{Name: name, Cluster: cluster, Address: addr.String(), MAC: privateMAC(cluster, name), Reserved: true}
	if err := p.writeReservation(filepath.Join(p.clusterDir(cluster), name), md); err != nil {
		return netip.Addr{}, fmt.Errorf("qemu: reserve %s: %w", name, err)
	}
	return addr, nil
}

// writeReservation writes the record of a reserved name into its machine directory dir.
func (p *Provider) writeReservation(dir string, md meta) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return p.writeMeta(dir, meta{Name: md.Name, Cluster: md.Cluster, Address: md.Address, MAC: md.MAC, Reserved: true})
}

func (p *Provider) checkSpec(spec provisioner.MachineSpec) error {
	var errs []error
	for _, f := range []struct{ field, v string }{{"cluster", spec.Cluster}, {"name", spec.Name}} {
		if err := checkName(f.field, f.v); err != nil {
			errs = append(errs, err)
		}
	}
	if spec.Role != v1alpha1.RoleControlPlane && spec.Role != v1alpha1.RoleWorker {
		errs = append(errs, fmt.Errorf("qemu: role %q is not %s or %s: %w", spec.Role, v1alpha1.RoleControlPlane, v1alpha1.RoleWorker, ErrInvalid))
	}
	if spec.Image == "" {
		errs = append(errs, fmt.Errorf("qemu: image: required: %w", ErrInvalid))
	} else if _, err := os.Stat(p.imagePath(spec.Image)); err != nil {
		errs = append(errs, fmt.Errorf("qemu: image: %w", err))
	}
	if len(spec.Ignition) == 0 {
		errs = append(errs, fmt.Errorf("qemu: ignition: required: %w", ErrInvalid))
	}
	return errors.Join(errs...)
}

func (p *Provider) imagePath(image string) string {
	if filepath.IsAbs(image) || p.cfg.ImageDir == "" {
		abs, _ := filepath.Abs(image)
		return abs
	}
	return filepath.Join(p.cfg.ImageDir, image)
}

func (p *Provider) create(ctx context.Context, spec provisioner.MachineSpec, dir string, reserved *meta) (provisioner.Machine, error) {
	// Ports and addresses are handed out under one provider-wide lock, held until QEMU has bound its
	// port, so that concurrent creators never pick the same; it also keeps Delete from removing the
	// cluster's directory and switch under a machine being made.
	unlock, err := p.lock(ctx, allocLock)
	if err != nil {
		return provisioner.Machine{}, err
	}
	defer unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return provisioner.Machine{}, err
	}
	image := p.imagePath(spec.Image)
	if out, err := exec.CommandContext(ctx, p.cfg.QEMUImg, "create", "-q", "-f", "qcow2", "-F", "qcow2",
		"-b", image, filepath.Join(dir, diskFile)).CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return provisioner.Machine{}, ctx.Err()
		}
		return provisioner.Machine{}, fmt.Errorf("overlay of %s: %w: %s", image, err, out)
	}
	boot, err := p.boot(image)
	if err != nil {
		return provisioner.Machine{}, err
	}

	all, err := p.allMetas()
	if err != nil {
		return provisioner.Machine{}, err
	}
	var addr netip.Addr
	if reserved != nil {
		if addr, err = netip.ParseAddr(reserved.Address); err != nil {
			return provisioner.Machine{}, fmt.Errorf("reserved address: %w", err)
		}
	} else if addr, err = nextAddress(p.cfg.prefix, all, spec.Cluster, p.cfg.EndpointAddress); err != nil {
		return provisioner.Machine{}, err
	}
	sw, err := p.ensureSwitch(ctx, spec.Cluster)
	if err != nil {
		return provisioner.Machine{}, err
	}
	md := meta{
		Name: spec.Name, Cluster: spec.Cluster, Role: spec.Role, Pool: spec.Pool, Image: spec.Image,
		Created: time.Now().UTC().Truncate(time.Second), Address: addr.String(),
		MAC: privateMAC(spec.Cluster, spec.Name),
	}
	// A cluster with a config server: its machines fetch their configs there on their first boot,
	// with the network up in the initramfs.
	if cs, err := p.readConfigServer(spec.Cluster); err == nil {
		md.ConfigPort = cs.Port
		boot.Args = strings.TrimSpace(boot.Args + " " + firstBootNetworkArg)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return provisioner.Machine{}, err
	}
	hosts := []hostEntry{{md.Address, md.Name}}
	for _, o := range all {
		if o.Cluster == spec.Cluster {
			hosts = append(hosts, hostEntry{o.Address, o.Name})
		}
	}
	outer, err := wrapIgnition(spec.Ignition, privateNetwork{MAC: md.MAC, Address: addr, Prefix: p.cfg.prefix}, hosts)
	if err != nil {
		return provisioner.Machine{}, err
	}
	if err := atomicfile.Write(filepath.Join(dir, configFile), outer, 0o600, false); err != nil {
		return provisioner.Machine{}, err
	}

	// Every machine's SSH port, and a control-plane machine's API port, are forwarded from 127.0.0.1.
	used := map[int]bool{}
	for _, o := range all {
		used[o.SSHPort], used[o.APIPort] = true, true
	}
	pick := func(base int) (int, error) {
		for port := base; port <= 65535; port++ {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			if !used[port] && portFree(port) {
				used[port] = true
				return port, nil
			}
		}
		return 0, fmt.Errorf("no free port from %d", base)
	}
	for {
		if md.SSHPort, err = pick(p.cfg.SSHPortBase); err != nil {
			return provisioner.Machine{}, err
		}
		if spec.Role == v1alpha1.RoleControlPlane {
			if md.APIPort, err = pick(p.cfg.APIPortBase); err != nil {
				return provisioner.Machine{}, err
			}
		}
		if err := p.writeMeta(dir, md); err != nil {
			return provisioner.Machine{}, err
		}
		args := qemuArgs(p.cfg.Config, md, dir, sw, boot)
		nice := 0
		if spec.Role == v1alpha1.RoleWorker {
			nice = workerNice
		}
		err := startQEMU(ctx, p.cfg.QEMU, args, nice)
		if errors.Is(err, errPortTaken) {
			continue // something took a port between the check and QEMU's bind: both stay used
		}
		if err != nil {
			return provisioner.Machine{}, err
		}
		return p.machine(dir)
	}
}

// boot says how to boot image: the configured kernel, the one beside the image, or the firmware.
func (p *Provider) boot(image string) (bootSpec, error) {
	b := bootSpec{Kernel: p.cfg.Kernel, Initrd: p.cfg.Initrd, Args: p.cfg.KernelArgs}
	dir := filepath.Dir(image)
	if b.Kernel == "" {
		if k := filepath.Join(dir, ImageKernel); isFile(k) {
			b.Kernel = k
			if i := filepath.Join(dir, ImageInitrd); isFile(i) {
				b.Initrd = i
			}
		}
	}
	if b.Kernel == "" {
		return bootSpec{}, nil // firmware
	}
	if b.Args == "" {
		b.Args = DefaultKernelArgs
		if data, err := os.ReadFile(filepath.Join(dir, ImageCmdline)); err == nil && len(data) > 0 {
			b.Args = string(trimNewline(data))
		}
	}
	for _, f := range []string{b.Kernel, b.Initrd} {
		if f != "" && !isFile(f) {
			return bootSpec{}, fmt.Errorf("kernel or initrd %s: %w", f, fs.ErrNotExist)
		}
	}
	return b, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// portFree reports whether 127.0.0.1:port can be bound now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// nextAddress returns the lowest address from .10 of prefix that no machine of cluster has or has
// reserved, and that is none of exclude (the API endpoint's).
func nextAddress(prefix netip.Prefix, all []meta, cluster string, exclude ...netip.Addr) (netip.Addr, error) {
	taken := map[netip.Addr]bool{}
	for _, a := range exclude {
		taken[a] = true
	}
	for _, m := range all {
		if m.Cluster != cluster {
			continue
		}
		if a, err := netip.ParseAddr(m.Address); err == nil {
			taken[a] = true
		}
	}
	a := prefix.Addr()
	for range firstHostIP {
		a = a.Next()
	}
	for ; prefix.Contains(a) && prefix.Contains(a.Next()); a = a.Next() { // the last address is broadcast
		if !taken[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address in %s for cluster %s", prefix, cluster)
}

// Delete stops the machine's process and removes its directory, which releases its address. A
// missing machine is not an error; a name that is only reserved loses its reservation. The cluster's
// switch goes with its last machine.
func (p *Provider) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qemu: delete %s: %w", name, err)
	}
	if err := checkName("name", name); err != nil {
		return err
	}
	unlock, err := p.lock(ctx, "machine-"+name)
	if err != nil {
		return fmt.Errorf("qemu: delete %s: %w", name, err)
	}
	defer unlock()
	dir, err := p.machineDir(name)
	if err != nil || dir == "" {
		return err
	}
	if err := p.stop(ctx, dir); err != nil {
		return fmt.Errorf("qemu: delete %s: %w", name, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("qemu: delete %s: %w", name, err)
	}
	return p.dropSwitchIfEmpty(ctx, filepath.Base(filepath.Dir(dir)))
}

// DeleteNetwork removes what is left of cluster once its machines are deleted: the addresses still
// reserved for names that got no machine, the directories of creates that were interrupted before
// their machine was recorded, and the cluster's private network switch with the cluster's directory.
// A Delete does the last itself when it removes the cluster's last machine, but a kiln killed in
// between leaves them to this. It is an error if a machine of the cluster is still there.
func (p *Provider) DeleteNetwork(ctx context.Context, cluster string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qemu: delete network of %s: %w", cluster, err)
	}
	if err := checkName("cluster", cluster); err != nil {
		return err
	}
	entries, err := os.ReadDir(p.clusterDir(cluster))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("qemu: delete network of %s: %w", cluster, err)
	}
	var left []string
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		kept, err := p.releaseUnmade(ctx, filepath.Join(p.clusterDir(cluster), e.Name()))
		if err != nil {
			return fmt.Errorf("qemu: delete network of %s: %w", cluster, err)
		}
		if kept {
			left = append(left, e.Name())
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("qemu: delete network of %s: machines %s are still there: %w", cluster, strings.Join(left, ", "), ErrInvalid)
	}
	return p.dropSwitchIfEmpty(ctx, cluster)
}

// releaseUnmade removes the machine directory dir if it holds no machine (a reservation only, or a
// create interrupted before it wrote the machine's record), under the name's lock, and reports
// whether a machine is there.
func (p *Provider) releaseUnmade(ctx context.Context, dir string) (kept bool, err error) {
	unlock, err := p.lock(ctx, "machine-"+filepath.Base(dir))
	if err != nil {
		return false, err
	}
	defer unlock()
	md, err := readMeta(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.kill(dir) // no record, so no QEMU was started; to be sure
	case err != nil:
		return false, err
	case !md.Reserved:
		return true, nil
	}
	return false, os.RemoveAll(dir)
}

// Stop stops the machine's process and keeps its disk; List then reports it stopped. A missing or
// already stopped machine is not an error.
func (p *Provider) Stop(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qemu: stop %s: %w", name, err)
	}
	if err := checkName("name", name); err != nil {
		return err
	}
	unlock, err := p.lock(ctx, "machine-"+name)
	if err != nil {
		return fmt.Errorf("qemu: stop %s: %w", name, err)
	}
	defer unlock()
	dir, err := p.machineDir(name)
	if err != nil || dir == "" {
		return err
	}
	md, err := readMeta(dir)
	if err != nil {
		return fmt.Errorf("qemu: stop %s: %w", name, err)
	}
	if md.Reserved {
		return nil // no machine yet
	}
	if err := p.stop(ctx, dir); err != nil {
		return fmt.Errorf("qemu: stop %s: %w", name, err)
	}
	if md.Stopped {
		return nil
	}
	md.Stopped = true
	return p.writeMeta(dir, md)
}

// List returns the cluster's machines with the state of their processes.
func (p *Provider) List(ctx context.Context, cluster string) ([]provisioner.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("qemu: list %s: %w", cluster, err)
	}
	if err := checkName("cluster", cluster); err != nil {
		return nil, err
	}
	metas, err := filepath.Glob(filepath.Join(p.clusterDir(cluster), "*", metaFile))
	if err != nil {
		return nil, fmt.Errorf("qemu: list %s: %w", cluster, err)
	}
	var out []provisioner.Machine
	for _, f := range metas {
		m, err := p.machine(filepath.Dir(f))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errReserved) {
			continue // deleted while we looked, or only a reserved address
		}
		if err != nil {
			return nil, fmt.Errorf("qemu: list %s: %w", cluster, err)
		}
		if m.Cluster == cluster {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b provisioner.Machine) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SSHAddress returns the 127.0.0.1:PORT that the machine's SSH is forwarded to.
func (p *Provider) SSHAddress(name string) (string, error) {
	dir, err := p.machineDir(name)
	if err != nil {
		return "", fmt.Errorf("qemu: ssh address of %s: %w", name, err)
	}
	if dir == "" {
		return "", fmt.Errorf("qemu: ssh address of %s: %w", name, ErrNotFound)
	}
	md, err := readMeta(dir)
	if err != nil {
		return "", fmt.Errorf("qemu: ssh address of %s: %w", name, err)
	}
	if md.Reserved {
		return "", fmt.Errorf("qemu: ssh address of %s: only its address is reserved: %w", name, ErrNotFound)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(md.SSHPort)), nil
}

// APIAddress returns the 127.0.0.1:PORT forwarded to the API endpoint's port of a running
// control-plane machine of cluster (the one first by name): haproxy there balances to every
// kube-apiserver. It wraps provisioner.ErrNotReachable while no control-plane machine runs.
func (p *Provider) APIAddress(ctx context.Context, cluster string) (string, error) {
	ms, err := p.List(ctx, cluster)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.Role != v1alpha1.RoleControlPlane || m.State != provisioner.StateRunning {
			continue
		}
		dir, err := p.machineDir(m.Name)
		if err != nil || dir == "" {
			continue // deleted since List
		}
		md, err := readMeta(dir)
		if err != nil || md.APIPort == 0 {
			continue // made before the API port was forwarded
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(md.APIPort)), nil
	}
	return "", fmt.Errorf("qemu: api address of %s: no running control-plane machine forwards it: %w", cluster, provisioner.ErrNotReachable)
}

// Endpoint is the host:port where port of m is reached from this host, for
// provisioner/converge.TCPProber.Endpoint: the forwarded SSH port for port 22, "" (unreachable) for
// any other port.
func (p *Provider) Endpoint(m provisioner.Machine, port int) string {
	if port != 22 {
		return ""
	}
	addr, err := p.SSHAddress(m.Name)
	if err != nil {
		return ""
	}
	return addr
}

// errReserved is machine's answer for a name that has only its address reserved.
var errReserved = errors.New("only the address is reserved")

// machine reads a machine's record and the state of its process.
func (p *Provider) machine(dir string) (provisioner.Machine, error) {
	md, err := readMeta(dir)
	if err != nil {
		return provisioner.Machine{}, err
	}
	if md.Reserved {
		return provisioner.Machine{}, errReserved
	}
	state := provisioner.StateRunning
	if _, alive := livePID(dir); !alive {
		state = provisioner.StateError // killed or crashed: a failed machine
		if md.Stopped {
			state = provisioner.StateStopped
		}
	}
	return provisioner.Machine{
		Name: md.Name, Cluster: md.Cluster, Role: md.Role, Pool: md.Pool, Image: md.Image,
		State: state, Created: md.Created, Address: md.Address,
	}, nil
}

// allMetas reads the records of every machine of every cluster.
func (p *Provider) allMetas() ([]meta, error) {
	files, err := filepath.Glob(filepath.Join(p.cfg.StateDir, "*", "*", metaFile))
	if err != nil {
		return nil, err
	}
	var out []meta
	for _, f := range files {
		md, err := readMeta(filepath.Dir(f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, md)
	}
	return out, nil
}

func readMeta(dir string) (meta, error) {
	data, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return meta{}, err
	}
	var md meta
	if err := json.Unmarshal(data, &md); err != nil {
		return meta{}, fmt.Errorf("%s: %w", filepath.Join(dir, metaFile), err)
	}
	return md, nil
}

func (p *Provider) writeMeta(dir string, md meta) error {
	data, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, metaFile), append(data, '\n'), 0o600, false)
}

// CheckImage reports whether image can be booted: a regular file, relative to Config.ImageDir.
func (p *Provider) CheckImage(image string) error {
	path := p.imagePath(image)
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("qemu: image %s: %w (build one with 'hack/tools.sh base-image' or 'kiln image build --target qemu')", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("qemu: image %s: not a regular file: %w", path, ErrInvalid)
	}
	return nil
}
