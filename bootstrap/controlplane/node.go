package controlplane

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/lint"
)

// Units of a control-plane node, in the order Start starts them.
const (
	UnitEtcd              = "etcd.service"
	UnitAPIServer         = "kube-apiserver.service"
	UnitControllerManager = "kube-controller-manager.service"
	UnitScheduler         = "kube-scheduler.service"
)

// Paths on a control-plane node that Start uses.
const (
	manifestsDir            = kubecfg.DefaultClusterInitManifestsDir
	clusterInitRBAC         = kubecfg.DefaultClusterInitRBACFile
	clusterInitKubeconfig   = kubecfg.DefaultClusterInitKubeconfig
	clusterInitGrantConfig  = kubecfg.DefaultClusterInitGrantKubeconfig
	controllerManagerConfig = kubecfg.DefaultControllerManagerKubeconfig
	schedulerKubeconfig     = kubecfg.DefaultSchedulerKubeconfig
	systemdDir              = "/etc/systemd/system"
	advertiseAddressStandIn = "192.0.2.1"
	loopback                = "127.0.0.1"
	defaultFileMode         = 0o644
	defaultDirectoryMode    = 0o755
)

// File is one file of a node's config, decoded.
type File struct {
	// Path on the node, absolute.
	Path string
	Mode os.FileMode
	Data []byte
}

// Node is what an Ignition config puts on a machine's disk that running it here needs: its
// directories, files (decoded) and systemd units. Owners are not kept: everything written here
// belongs to the user who runs it.
type Node struct {
	Dirs  []File // Data is empty
	Files []File
	// Units maps a unit's name to its contents.
	Units map[string]string
}

// Extract decodes the directories, files and units of cfg. A file whose contents come from a remote
// source is an error: kiln renders every file inline.
func Extract(cfg types.Config) (*Node, error) {
	n := &Node{Units: map[string]string{}}
	for _, d := range cfg.Storage.Directories {
		n.Dirs = append(n.Dirs, File{Path: d.Path, Mode: mode(d.Mode, defaultDirectoryMode)})
	}
	for _, f := range cfg.Storage.Files {
		var data []byte
		if src := f.Contents.Source; src != nil {
			if !strings.HasPrefix(*src, "data:") {
				return nil, fmt.Errorf("controlplane: file %s: remote source %q is not fetched here: kiln renders files inline", f.Path, *src)
			}
			var err error
			if data, err = lint.DecodeSource(*src, f.Contents.Compression); err != nil {
				return nil, fmt.Errorf("controlplane: file %s: %w", f.Path, err)
			}
		}
		n.Files = append(n.Files, File{Path: f.Path, Mode: mode(f.Mode, defaultFileMode), Data: data})
	}
	for _, u := range cfg.Systemd.Units {
		if u.Contents != nil {
			n.Units[u.Name] = *u.Contents
		}
	}
	return n, nil
}

func mode(m *int, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m) & os.ModePerm
}

// File returns the file at path p on the node.
func (n *Node) File(p string) (File, error) {
	for _, f := range n.Files {
		if f.Path == p {
			return f, nil
		}
	}
	return File{}, fmt.Errorf("controlplane: file %s: %w", p, ErrNotRendered)
}

// Write puts the node's directories, files and units under root, as Ignition would put them under /:
// /etc/kubernetes/pki/ca.key becomes root/etc/kubernetes/pki/ca.key with the same mode, and each unit
// root/etc/systemd/system/NAME.
func (n *Node) Write(root string) error {
	for _, d := range n.Dirs {
		p := under(root, d.Path)
		if err := os.MkdirAll(p, defaultDirectoryMode); err != nil {
			return fmt.Errorf("controlplane: %w", err)
		}
		if err := os.Chmod(p, d.Mode); err != nil {
			return fmt.Errorf("controlplane: %w", err)
		}
	}
	write := func(f File) error {
		p := under(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), defaultDirectoryMode); err != nil {
			return fmt.Errorf("controlplane: %w", err)
		}
		// Remove first: an earlier run's file keeps its mode when overwritten.
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("controlplane: %w", err)
		}
		if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
			return fmt.Errorf("controlplane: %w", err)
		}
		return nil
	}
	for _, f := range n.Files {
		if err := write(f); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(n.Units)) {
		if err := write(File{Path: path.Join(systemdDir, name), Mode: defaultFileMode, Data: []byte(n.Units[name])}); err != nil {
			return err
		}
	}
	return nil
}

// under is the absolute node path p moved under root.
func under(root, p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

// ExecStart returns the words of the ExecStart line of the named unit, continuation lines joined.
func (n *Node) ExecStart(unit string) ([]string, error) {
	contents, ok := n.Units[unit]
	if !ok {
		return nil, fmt.Errorf("controlplane: unit %s: %w", unit, ErrNotRendered)
	}
	var line strings.Builder
	in := false
	sc := bufio.NewScanner(strings.NewReader(contents))
	for sc.Scan() {
		l := sc.Text()
		if !in {
			if !strings.HasPrefix(l, "ExecStart=") {
				continue
			}
			in = true
			l = strings.TrimPrefix(l, "ExecStart=")
		}
		cont := strings.HasSuffix(l, `\`)
		line.WriteString(strings.TrimSuffix(l, `\`))
		line.WriteByte(' ')
		if !cont {
			break
		}
	}
	words := strings.Fields(line.String())
	if len(words) == 0 {
		return nil, fmt.Errorf("controlplane: unit %s: ExecStart: %w", unit, ErrNotRendered)
	}
	return words, nil
}

// Flags returns the --name=value flags of the named unit's ExecStart, without the program.
func (n *Node) Flags(unit string) ([]string, error) {
	words, err := n.ExecStart(unit)
	if err != nil {
		return nil, err
	}
	return words[1:], nil
}

// Ports are the loopback ports a control plane run here listens on.
type Ports struct {
	EtcdClient, EtcdPeer, APIServer, ControllerManager, Scheduler int
}

// Command is one component to start: the unit it comes from, and its flags as run here.
type Command struct {
	Unit string
	Args []string
}

// Commands returns the commands of etcd, kube-apiserver, kube-controller-manager and kube-scheduler,
// in start order, for a control plane whose files are under root and that listens on loopback at
// ports. The flags are the rendered ones, with every absolute path moved under root and only these
// changes:
//
//   - etcd: its client and peer URLs are https://127.0.0.1 at the given ports, and the initial
//     cluster is this one member;
//   - kube-apiserver: --etcd-servers and --secure-port follow ports, --bind-address is 127.0.0.1,
//     and --advertise-address is 192.0.2.1 (TEST-NET-1, RFC 5737), because kube-apiserver refuses a
//     loopback one and the address is only written into the kubernetes Service's endpoints;
//   - kube-controller-manager and kube-scheduler: --secure-port is set (their defaults, 10257 and
//     10259, may be taken on this machine).
//
// The components' kubeconfigs still name the node's own API server address; PointKubeconfig moves
// them.
func (n *Node) Commands(root string, p Ports) ([]Command, error) {
	etcdName := ""
	etcdFlags, err := n.Flags(UnitEtcd)
	if err == nil {
		for _, f := range etcdFlags {
			if v, ok := strings.CutPrefix(f, "--name="); ok {
				etcdName = v
			}
		}
		if etcdName == "" {
			err = fmt.Errorf("controlplane: unit %s: --name: %w", UnitEtcd, ErrNotRendered)
		}
	}
	if err != nil {
		return nil, err
	}
	client := "https://" + loopback + ":" + strconv.Itoa(p.EtcdClient)
	peer := "https://" + loopback + ":" + strconv.Itoa(p.EtcdPeer)
	specs := []struct {
		unit     string
		set, add map[string]string
	}{
		{UnitEtcd, map[string]string{
			"listen-client-urls":          client,
			"advertise-client-urls":       client,
			"listen-peer-urls":            peer,
			"initial-advertise-peer-urls": peer,
			"initial-cluster":             etcdName + "=" + peer,
		}, nil},
		{UnitAPIServer, map[string]string{
			"etcd-servers": client,
			"secure-port":  strconv.Itoa(p.APIServer),
		}, map[string]string{
			"bind-address":      loopback,
			"advertise-address": advertiseAddressStandIn,
		}},
		{UnitControllerManager, nil, map[string]string{"secure-port": strconv.Itoa(p.ControllerManager)}},
		{UnitScheduler, nil, map[string]string{"secure-port": strconv.Itoa(p.Scheduler)}},
	}
	var cmds []Command
	for _, s := range specs {
		flags, err := n.Flags(s.unit)
		if err != nil {
			return nil, err
		}
		args, err := rewrite(s.unit, flags, root, s.set, s.add)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, Command{Unit: s.unit, Args: args})
	}
	return cmds, nil
}

// rewrite returns flags (--name=value) with absolute paths moved under root, the values of the flags
// in set replaced (each must be among flags) and the flags in add appended in name order (none may
// be among flags).
func rewrite(unit string, flags []string, root string, set, add map[string]string) ([]string, error) {
	out := make([]string, 0, len(flags)+len(add))
	seen := map[string]bool{}
	for _, a := range flags {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			return nil, fmt.Errorf("controlplane: unit %s: argument %q is not --name=value", unit, a)
		}
		if _, dup := add[name]; dup {
			return nil, fmt.Errorf("controlplane: unit %s: the rendered flags already set --%s=%s", unit, name, value)
		}
		switch v, ok := set[name]; {
		case ok:
			value = v
			seen[name] = true
		case strings.HasPrefix(value, "/"):
			value = under(root, value)
		}
		out = append(out, "--"+name+"="+value)
	}
	for _, name := range slices.Sorted(maps.Keys(set)) {
		if !seen[name] {
			return nil, fmt.Errorf("controlplane: unit %s: --%s: %w", unit, name, ErrNotRendered)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(add)) {
		out = append(out, "--"+name+"="+add[name])
	}
	return out, nil
}

var serverLine = regexp.MustCompile(`(?m)^(\s*server:\s*)\S+$`)

// PointKubeconfig returns the kubeconfig data with its cluster's server replaced by server.
func PointKubeconfig(data []byte, server string) ([]byte, error) {
	if n := len(serverLine.FindAll(data, -1)); n != 1 {
		return nil, fmt.Errorf("controlplane: kubeconfig: want one server line, found %d", n)
	}
	return serverLine.ReplaceAll(data, []byte("${1}"+server)), nil
}
