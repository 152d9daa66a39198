package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// bootSpec is how a machine boots: a kernel and initrd with a command line, or (Kernel empty) the
// firmware from the disk.
type bootSpec struct {
	Kernel, Initrd, Args string
}

// switchRef is a cluster's private network switch.
type switchRef struct {
	// Dir is the switch's control directory, given to QEMU's vde netdev.
	Dir string
}

// qemuArgs returns the arguments of a machine's QEMU process. The process daemonizes, writes its
// pidfile into dir (which List's liveness check relies on) and keeps the serial console in
// serial.log.
func qemuArgs(cfg Config, md meta, dir string, sw switchRef, boot bootSpec) []string {
	args := []string{
		"-name", "kiln-" + md.Name,
		"-machine", "q35", "-accel", "tcg,thread=multi",
		"-m", strconv.Itoa(cfg.MemoryMiB), "-smp", strconv.Itoa(cfg.CPUs),
		"-nodefaults", "-display", "none",
		"-serial", "file:" + filepath.Join(dir, serialFile),
		"-pidfile", filepath.Join(dir, pidFile), "-daemonize",
		"-drive", "file=" + filepath.Join(dir, diskFile) + ",if=virtio,format=qcow2",
		"-fw_cfg", "name=opt/com.coreos/config,file=" + filepath.Join(dir, configFile),
		// Entropy from the host: without it a guest's first getrandom() (ssh-keygen, etcd) waits minutes.
		"-device", "virtio-rng-pci",
		"-netdev", userNetdev(cfg, md),
		"-device", "virtio-net-pci,netdev=user0",
		"-netdev", "vde,id=private0,sock=" + sw.Dir,
		"-device", "virtio-net-pci,netdev=private0,mac=" + md.MAC,
	}
	if boot.Kernel != "" {
		args = append(args, "-kernel", boot.Kernel)
		if boot.Initrd != "" {
			args = append(args, "-initrd", boot.Initrd)
		}
		args = append(args, "-append", boot.Args)
	}
	return args
}

// userNetdev is the user networking NIC's netdev: restricted (the guest reaches nothing outside), with
// the guest's SSH forwarded from 127.0.0.1:SSHPort, on a control-plane machine the API endpoint's
// port (haproxy, on every address of the guest) from 127.0.0.1:APIPort, and, when its cluster has a
// config server, 10.0.2.100:8443 forwarded to 127.0.0.1:ConfigPort.
func userNetdev(cfg Config, md meta) string {
	s := "user,id=user0,restrict=on,hostfwd=tcp:127.0.0.1:" + strconv.Itoa(md.SSHPort) + "-:22"
	if md.APIPort != 0 {
		s += ",hostfwd=tcp:127.0.0.1:" + strconv.Itoa(md.APIPort) + "-:" + strconv.Itoa(cfg.APIPort)
	}
	if md.ConfigPort != 0 {
		s += guestConfigForward(cfg.Socat, md.ConfigPort)
	}
	return s
}

// errPortTaken is QEMU failing to bind a forwarded port.
var errPortTaken = errors.New("port taken")

// workerNice is the CPU priority (nice value) of a worker's QEMU; the control plane's run at the
// default, 0. On one host under TCG the VMs compete for a few cores, and a starved API server stalls
// the whole cluster (nodes go NotReady, kiln cannot read them) while a slow worker delays only its own
// pods.
const workerNice = 5

// startQEMU runs QEMU, at CPU priority nice (through nice(1) when not 0, so that every thread of the
// VM has it from the start), which daemonizes once the VM is set up; its first process's exit says
// whether that worked.
func startQEMU(ctx context.Context, bin string, args []string, nice int) error {
	cmd := exec.Command(bin, args...)
	if nice != 0 {
		cmd = exec.Command("nice", append([]string{"-n", strconv.Itoa(nice), bin}, args...)...)
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// Its own session: a signal to kiln's process group (Ctrl-C) does not reach the VM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			msg := strings.TrimSpace(stderr.String())
			if strings.Contains(msg, "host forwarding rule") {
				return fmt.Errorf("%s: %w: %s", bin, errPortTaken, msg)
			}
			return fmt.Errorf("%s: %w: %s", bin, err, msg)
		}
		return nil
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return ctx.Err()
	}
}

// livePID returns the pid in dir's pidfile and whether that process is alive and is this machine's
// QEMU (its command line names the pidfile: a reused pid, or a zombie, is not).
func livePID(dir string) (int, bool) {
	pidPath := filepath.Join(dir, pidFile)
	return live(pidPath, pidPath)
}

// live reads the pid in pidPath and reports whether that process is alive with mark among its
// arguments.
func live(pidPath, mark string) (int, bool) {
	data, err := os.ReadFile(pidPath)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(cmdline) == 0 { // gone, or a zombie
		return pid, false
	}
	for _, a := range bytes.Split(cmdline, []byte{0}) {
		if string(a) == mark {
			return pid, true
		}
	}
	return pid, false
}

// stop ends the machine's QEMU in dir: SIGTERM (QEMU flushes its disk and exits), then SIGKILL after
// the grace. A machine without a live process is already stopped.
func (p *Provider) stop(ctx context.Context, dir string) error {
	pid, alive := livePID(dir)
	if !alive {
		return nil
	}
	return terminate(ctx, pid, func() bool { _, ok := livePID(dir); return ok }, p.cfg.StopTimeout)
}

// kill ends dir's QEMU at once, for cleaning up after a failed Create.
func (p *Provider) kill(dir string) {
	if pid, alive := livePID(dir); alive {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// terminate sends SIGTERM to pid and waits until alive says it is gone, sending SIGKILL after grace.
func terminate(ctx context.Context, pid int, alive func() bool, grace time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	deadline := time.Now().Add(grace)
	killed := false
	for alive() {
		if !killed && time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			killed = true
			deadline = time.Now().Add(grace)
		} else if killed && time.Now().After(deadline) {
			return fmt.Errorf("process %d survived SIGKILL", pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// ensureSwitch starts the cluster's private network switch unless it runs. The caller holds the
// allocation lock.
func (p *Provider) ensureSwitch(ctx context.Context, cluster string) (switchRef, error) {
	cdir := p.clusterDir(cluster)
	sw := switchRef{Dir: filepath.Join(cdir, switchDir)}
	// QEMU and vde_switch reach the switch by unix socket paths under Dir, limited to 108 bytes.
	if len(sw.Dir)+len("/ctl")+16 > 107 {
		return switchRef{}, fmt.Errorf("state directory %s is too long for the private network's unix sockets (keep it under about 80 characters): %w", p.cfg.StateDir, ErrInvalid)
	}
	pidPath := filepath.Join(cdir, switchPID)
	if _, ok := live(pidPath, sw.Dir); ok {
		return sw, nil
	}
	os.RemoveAll(sw.Dir)
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		return switchRef{}, err
	}
	cmd := exec.CommandContext(ctx, p.cfg.VDESwitch, "--sock", sw.Dir, "--mode", "0600", "--dirmode", "0700",
		"--pidfile", pidPath, "--daemon")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if out, err := cmd.CombinedOutput(); err != nil {
		return switchRef{}, fmt.Errorf("private network switch: %s: %w: %s", p.cfg.VDESwitch, err, bytes.TrimSpace(out))
	}
	// The daemon writes its pidfile and control socket after it forks; wait for both.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, ok := live(pidPath, sw.Dir); ok && exists(filepath.Join(sw.Dir, "ctl")) {
			return sw, nil
		}
		if time.Now().After(deadline) {
			return switchRef{}, fmt.Errorf("private network switch %s did not come up", sw.Dir)
		}
		select {
		case <-ctx.Done():
			return switchRef{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// dropSwitchIfEmpty stops the cluster's switch and removes the cluster's directory once it has no
// machine left.
func (p *Provider) dropSwitchIfEmpty(ctx context.Context, cluster string) error {
	unlock, err := p.lock(ctx, allocLock)
	if err != nil {
		return err
	}
	defer unlock()
	cdir := p.clusterDir(cluster)
	entries, err := os.ReadDir(cdir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			return nil // a machine (or one being created) is still there
		}
	}
	pidPath := filepath.Join(cdir, switchPID)
	swDir := filepath.Join(cdir, switchDir)
	if pid, ok := live(pidPath, swDir); ok {
		if err := terminate(ctx, pid, func() bool { _, ok := live(pidPath, swDir); return ok }, p.cfg.StopTimeout); err != nil {
			return fmt.Errorf("qemu: stop the private network switch of %s: %w", cluster, err)
		}
	}
	return os.RemoveAll(cdir)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// privateMAC is the machine's MAC address on the private network: locally administered, derived from
// cluster and name so that it is the same on every start.
func privateMAC(cluster, name string) string {
	h := sha256.Sum256([]byte(cluster + "/" + name))
	return net.HardwareAddr{0x52, 0x54, 0x00, h[0], h[1], h[2]}.String()
}

// lock takes the provider-wide lock called name (a file under StateDir/.locks, flock'd), waiting
// for it until ctx ends, and returns its release.
func (p *Provider) lock(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(p.cfg.StateDir, locksDir, name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
