// Command qemustandin stands in for qemu-system-x86_64, qemu-img and vde_switch (chosen by the name it
// is run as) in the QEMU provider's crash-point test, where booting a real VM at every crash point
// would take hours. It does what the real programs do that the provider relies on, and no more:
//
//   - qemu-img create -f qcow2 -F qcow2 -b BACKING OVERLAY writes the overlay, refusing a missing
//     backing file or directory;
//   - vde_switch --sock DIR --pidfile P --daemon daemonizes, makes DIR/ctl, writes P and runs until
//     SIGTERM, when it removes them;
//   - qemu-system-x86_64 ... -pidfile P -daemonize checks its disk, config, switch and options,
//     daemonizes, binds every hostfwd port on 127.0.0.1 (failing as QEMU does when one is taken),
//     writes P, and then does what a booted guest does that kiln relies on: it reports its SSH host
//     key (made at its first boot and kept on its disk) on its serial console (-serial file:LOG,
//     kiln-ssh-hostkeys-report.service's block) and answers on the SSH port with an SSH server that
//     proves it in the key exchange (and lets nobody log in); it runs until SIGTERM, when it
//     removes P.
//
// Each call that changes something is reported, once done and before the program answers its caller,
// to the harness listening on the unix socket $KILN_CRASHPOINT_SOCKET, which may kill the caller then
// (the harness's crash point) and answers when it is dead.
package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/provisioner/hostkeys"
)

// envDaemon marks the daemon half of a program started with -daemonize/--daemon.
const envDaemon = "KILN_STANDIN_DAEMON"

func main() {
	prog := filepath.Base(os.Args[0])
	var err error
	switch prog {
	case "qemu-img":
		err = qemuImg(os.Args[1:])
	case "vde_switch":
		err = vdeSwitch(os.Args[1:])
	case "qemu-system-x86_64":
		err = qemuSystem(os.Args[1:])
	default:
		err = fmt.Errorf("run me as qemu-img, vde_switch or qemu-system-x86_64, not %s", prog)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(1)
	}
}

// report tells the harness that call happened and waits for its answer; without a harness it does
// nothing.
func report(call string) {
	sock := os.Getenv("KILN_CRASHPOINT_SOCKET")
	if sock == "" {
		return
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Fprintf(os.Stderr, "report %s: %v\n", call, err)
		return
	}
	defer c.Close()
	fmt.Fprintln(c, call)
	bufio.NewReader(c).ReadString('\n')
}

func qemuImg(args []string) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("only create is supported, got %q", args)
	}
	var backing, format, backingFormat string
	var rest []string
	for i := 1; i < len(args); i++ {
		switch a := args[i]; a {
		case "-q":
		case "-f", "-F", "-b":
			if i+1 == len(args) {
				return fmt.Errorf("option '%s' requires an argument", a)
			}
			i++
			switch a {
			case "-f":
				format = args[i]
			case "-F":
				backingFormat = args[i]
			case "-b":
				backing = args[i]
			}
		default:
			if strings.HasPrefix(a, "-") {
				return fmt.Errorf("invalid option -- '%s'", strings.TrimLeft(a, "-"))
			}
			rest = append(rest, a)
		}
	}
	if format != "qcow2" || (backing != "" && backingFormat != "qcow2") || len(rest) != 1 {
		return fmt.Errorf("want create -f qcow2 [-F qcow2 -b BACKING] FILE, got %q", args)
	}
	if backing != "" {
		if _, err := os.Stat(backing); err != nil {
			return fmt.Errorf("%s: Could not open '%s': %w", rest[0], backing, err)
		}
	}
	// A qcow2 header's magic, enough for anyone who looks.
	if err := os.WriteFile(rest[0], []byte("QFI\xfb\x00\x00\x00\x03"), 0o644); err != nil {
		return fmt.Errorf("%s: Could not create '%s': %w", rest[0], rest[0], err)
	}
	report("qemu-img-create-" + filepath.Base(filepath.Dir(rest[0])))
	return nil
}

// daemonize starts this program again as its daemon half, in its own session with its output on
// /dev/null, and waits until the daemon says it is up (an empty line) or why it is not. The daemon
// finds its end of the pipe as fd 3.
func daemonize() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), envDaemon+"=1")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	if line == "" {
		cmd.Wait()
		return errors.New("the daemon died while starting")
	}
	if line = strings.TrimSpace(line); line != "" {
		cmd.Wait()
		return errors.New(line)
	}
	cmd.Process.Release()
	return nil
}

// up tells the parent the daemon is up (err nil) or why not.
func up(err error) {
	f := os.NewFile(3, "ready")
	if err != nil {
		fmt.Fprintln(f, strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
	fmt.Fprintln(f)
	f.Close()
}

// lockPIDFile writes the pidfile as QEMU does: locked while the process lives, so that a second QEMU
// given the same pidfile refuses to start.
func lockPIDFile(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cannot open pid file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("cannot lock pid file: %w", err)
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("failed to write pid file: %w", err)
	}
	if _, err := fmt.Fprintf(f, "%d\n", os.Getpid()); err != nil {
		return fmt.Errorf("failed to write pid file: %w", err)
	}
	pidLock = f // open, and locked, until the process ends
	return nil
}

// pidLock is the locked pidfile; the finalizer of an unreferenced *os.File would close it.
var pidLock *os.File

func writePIDFile(path string) error {
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
}

// untilTerm waits for SIGTERM (or SIGINT), reports call and returns.
func untilTerm(call string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	report(call)
}

func vdeSwitch(args []string) error {
	var sock, pidfile string
	daemon := false
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "--sock", "--pidfile", "--mode", "--dirmode":
			if i+1 == len(args) {
				return fmt.Errorf("option '%s' requires an argument", a)
			}
			i++
			switch a {
			case "--sock":
				sock = args[i]
			case "--pidfile":
				pidfile = args[i]
			}
		case "--daemon":
			daemon = true
		default:
			return fmt.Errorf("unrecognized option '%s'", a)
		}
	}
	if sock == "" || pidfile == "" || !daemon {
		return fmt.Errorf("want --sock DIR --pidfile FILE --daemon, got %q", args)
	}
	if os.Getenv(envDaemon) == "" {
		if err := daemonize(); err != nil {
			return err
		}
		report("vde_switch-start")
		return nil
	}
	ctl := filepath.Join(sock, "ctl")
	var l net.Listener
	err := os.MkdirAll(sock, 0o700)
	if err == nil {
		l, err = net.Listen("unix", ctl)
	}
	if err == nil {
		err = writePIDFile(pidfile)
	}
	up(err)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	untilTerm("vde_switch-stop")
	l.Close()
	os.Remove(pidfile)
	return nil
}

// qemuOptions is what the stand-in takes from QEMU's command line.
type qemuOptions struct {
	name, pidfile, disk, config, vdeSock, serial string
	daemonize                                    bool
	hostfwd                                      []string // tcp:127.0.0.1:PORT-:GUESTPORT
	kernel, initrd                               string
}

// qemuArgsTaking are QEMU's options with an argument, of those the provider uses.
var qemuArgsTaking = map[string]bool{
	"-name": true, "-machine": true, "-accel": true, "-m": true, "-smp": true, "-display": true,
	"-serial": true, "-pidfile": true, "-drive": true, "-fw_cfg": true, "-device": true, "-netdev": true,
	"-kernel": true, "-initrd": true, "-append": true,
}

func parseQEMU(args []string) (qemuOptions, error) {
	var o qemuOptions
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-nodefaults":
			continue
		case a == "-daemonize":
			o.daemonize = true
			continue
		case !qemuArgsTaking[a]:
			return o, fmt.Errorf("%s: invalid option", a)
		case i+1 == len(args):
			return o, fmt.Errorf("%s: requires an argument", a)
		}
		i++
		v := args[i]
		switch a {
		case "-name":
			o.name = v
		case "-pidfile":
			o.pidfile = v
		case "-kernel":
			o.kernel = v
		case "-serial":
			f, ok := strings.CutPrefix(v, "file:")
			if !ok {
				return o, fmt.Errorf("-serial %s: want file:LOG", v)
			}
			o.serial = f
		case "-initrd":
			o.initrd = v
		case "-drive":
			for _, kv := range strings.Split(v, ",") {
				if f, ok := strings.CutPrefix(kv, "file="); ok {
					o.disk = f
				}
			}
		case "-fw_cfg":
			_, f, ok := strings.Cut(v, ",file=")
			if !ok || !strings.HasPrefix(v, "name=opt/") {
				return o, fmt.Errorf("-fw_cfg %s: want name=opt/...,file=FILE", v)
			}
			o.config = f
		case "-netdev":
			kind, rest, _ := strings.Cut(v, ",")
			switch kind {
			case "user":
				for _, kv := range strings.Split(rest, ",") {
					if f, ok := strings.CutPrefix(kv, "hostfwd="); ok {
						o.hostfwd = append(o.hostfwd, f)
					}
				}
			case "vde":
				for _, kv := range strings.Split(rest, ",") {
					if f, ok := strings.CutPrefix(kv, "sock="); ok {
						o.vdeSock = f
					}
				}
			default:
				return o, fmt.Errorf("-netdev %s: network backend '%s' is not compiled into this binary", v, kind)
			}
		}
	}
	if o.pidfile == "" || !o.daemonize || o.disk == "" {
		return o, fmt.Errorf("want -pidfile FILE -daemonize -drive file=DISK, got %q", args)
	}
	return o, nil
}

func qemuSystem(args []string) error {
	o, err := parseQEMU(args)
	if err != nil {
		return err
	}
	if os.Getenv(envDaemon) == "" {
		if err := daemonize(); err != nil {
			return err
		}
		report("qemu-start-" + strings.TrimPrefix(o.name, "kiln-"))
		return nil
	}
	ls, err := qemuUp(o)
	var sshd *ssh.ServerConfig
	if err == nil {
		sshd, err = boot(o.disk, o.serial)
	}
	up(err)
	for i, l := range ls {
		if i == 0 {
			go serve(l, sshd)
		} else {
			go serve(l, nil)
		}
	}
	untilTerm("qemu-stop-" + strings.TrimPrefix(o.name, "kiln-"))
	for _, l := range ls {
		l.Close()
	}
	os.Remove(o.pidfile)
	return nil
}

// qemuUp does what QEMU does before it says it is up: it opens its files, reaches the switch, binds
// the forwarded ports and writes the pidfile.
func qemuUp(o qemuOptions) ([]net.Listener, error) {
	for _, f := range []string{o.disk, o.config, o.kernel, o.initrd} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("Could not open '%s': %w", f, err)
		}
	}
	if o.vdeSock != "" {
		c, err := net.Dial("unix", filepath.Join(o.vdeSock, "ctl"))
		if err != nil {
			return nil, fmt.Errorf("-netdev vde,sock=%s: Could not open vde: %w", o.vdeSock, err)
		}
		c.Close()
	}
	var ls []net.Listener
	for _, fwd := range o.hostfwd {
		// tcp:127.0.0.1:PORT-:GUESTPORT
		hostPart, _, _ := strings.Cut(strings.TrimPrefix(fwd, "tcp:"), "-")
		l, err := net.Listen("tcp", hostPart)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("-netdev user: Could not set up host forwarding rule '%s'", fwd)
		}
		ls = append(ls, l)
	}
	if err := lockPIDFile(o.pidfile); err != nil {
		for _, l := range ls {
			l.Close()
		}
		return nil, err
	}
	return ls, nil
}

// boot is the guest's boot as far as kiln sees it: it reports its SSH host key (hostKey) on the
// serial console at serial, and returns the SSH server that holds it.
func boot(disk, serial string) (*ssh.ServerConfig, error) {
	key, err := hostKey(disk)
	if err != nil {
		return nil, err
	}
	if serial != "" {
		block := hostkeys.BeginMarker + "\n" + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key.PublicKey()))) + " root@qemustandin\n" + hostkeys.EndMarker + "\n"
		if err := os.WriteFile(serial, []byte(block), 0o600); err != nil {
			return nil, fmt.Errorf("-serial file:%s: %w", serial, err)
		}
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
		return nil, errors.New("nobody logs in to a stand-in")
	}}
	cfg.AddHostKey(key)
	return cfg, nil
}

// hostKey is the guest's SSH host key, kept on its disk as a guest keeps /etc/ssh: made at its first
// boot, after the overlay's header, and the same at every later boot.
func hostKey(disk string) (ssh.Signer, error) {
	data, err := os.ReadFile(disk)
	if err != nil {
		return nil, err
	}
	if i := bytes.Index(data, []byte("-----BEGIN")); i >= 0 {
		return ssh.ParsePrivateKey(data[i:])
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(disk, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(pem.EncodeToMemory(block))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// serve answers a forwarded port: the SSH one (sshd set) with the guest's SSH server; the others
// close at once, as nothing listens behind them yet.
func serve(l net.Listener, sshd *ssh.ServerConfig) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if sshd == nil {
			c.Close()
			continue
		}
		go func() {
			defer c.Close()
			if conn, _, _, err := ssh.NewServerConn(c, sshd); err == nil {
				conn.Close()
			}
		}()
	}
}
