package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/state/atomicfile"
)

// Where a machine reaches kiln's config server: an address of QEMU's user network that QEMU forwards
// (guestfwd), per connection, to a loopback port of kiln's host through socat. The machine's first
// boot brings the user network's NIC up in the initramfs (the kernel argument ip=dhcp), so that
// Ignition can fetch its config there.
const (
	GuestConfigAddress = "10.0.2.100"
	GuestConfigPort    = 8443
	// DefaultConfigPortBase is the first 127.0.0.1 port a cluster's config server may get.
	DefaultConfigPortBase = 17443
	// DefaultSocat relays each connection of a guest to the config server.
	DefaultSocat = "socat"
	// configServerFile, in a cluster's directory, holds the port of its config server.
	configServerFile = ".config-server.json"
	// firstBootNetworkArg brings the NICs up by DHCP in the initramfs.
	firstBootNetworkArg = "ip=dhcp"
)

var _ provisioner.ConfigServing = (*Provider)(nil)

// configServer is a cluster's config server port, kept in its directory.
type configServer struct {
	Port int `json:"port"`
}

// ConfigServer implements provisioner.ConfigServing: the cluster's machines reach kiln's config server
// at https://10.0.2.100:8443, which QEMU forwards to a 127.0.0.1 port of the cluster's own, chosen
// once (from ConfigPortBase) and kept in the cluster's directory. Machines created from then on are
// forwarded there; they need socat on kiln's host.
func (p *Provider) ConfigServer(ctx context.Context, cluster string) (provisioner.ConfigServer, error) {
	if err := checkName("cluster", cluster); err != nil {
		return provisioner.ConfigServer{}, err
	}
	if _, err := p.socat(); err != nil {
		return provisioner.ConfigServer{}, err
	}
	unlock, err := p.lock(ctx, allocLock)
	if err != nil {
		return provisioner.ConfigServer{}, err
	}
	defer unlock()
	cs, err := p.readConfigServer(cluster)
	if errors.Is(err, fs.ErrNotExist) {
		cs, err = p.newConfigServer(ctx, cluster)
	}
	if err != nil {
		return provisioner.ConfigServer{}, err
	}
	return provisioner.ConfigServer{
		Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(cs.Port)).String(),
		URL:    "https://" + GuestConfigAddress + ":" + strconv.Itoa(GuestConfigPort),
		Names:  []string{GuestConfigAddress},
	}, nil
}

// newConfigServer picks the cluster's port, the lowest free one from ConfigPortBase that no other
// cluster has, and keeps it. The caller holds allocLock.
func (p *Provider) newConfigServer(ctx context.Context, cluster string) (configServer, error) {
	entries, err := os.ReadDir(p.cfg.StateDir)
	if err != nil {
		return configServer{}, err
	}
	taken := map[int]bool{}
	for _, e := range entries {
		if cs, err := p.readConfigServer(e.Name()); err == nil {
			taken[cs.Port] = true
		}
	}
	for port := p.cfg.ConfigPortBase; port <= 65535; port++ {
		if err := ctx.Err(); err != nil {
			return configServer{}, err
		}
		if taken[port] || !portFree(port) {
			continue
		}
		cs := configServer{Port: port}
		dir := p.clusterDir(cluster)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return configServer{}, err
		}
		data, _ := json.Marshal(cs) // a struct of an int: no error
		if err := atomicfile.Write(filepath.Join(dir, configServerFile), data, 0o600, true); err != nil {
			return configServer{}, err
		}
		return cs, nil
	}
	return configServer{}, fmt.Errorf("qemu: config server of %s: no free port from %d", cluster, p.cfg.ConfigPortBase)
}

// readConfigServer reads the cluster's config server; it wraps fs.ErrNotExist when it has none.
func (p *Provider) readConfigServer(cluster string) (configServer, error) {
	path := filepath.Join(p.clusterDir(cluster), configServerFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return configServer{}, err
	}
	var cs configServer
	if err := json.Unmarshal(data, &cs); err != nil || cs.Port < 1 || cs.Port > 65535 {
		return configServer{}, fmt.Errorf("qemu: %s: not a config server port (%v): %w", path, err, ErrInvalid)
	}
	return cs, nil
}

// socat is the path of the relay program, or an error that says how to get it.
func (p *Provider) socat() (string, error) {
	path, err := exec.LookPath(p.cfg.Socat)
	if err != nil {
		return "", fmt.Errorf("qemu: Socat: %v (machines reach kiln's config server through it; Debian: apt-get install socat): %w", err, ErrInvalid)
	}
	if strings.ContainsAny(path, ", \t\n'\"") {
		return "", fmt.Errorf("qemu: Socat: %q: QEMU's guestfwd cannot run a path with commas, blanks or quotes: %w", path, ErrInvalid)
	}
	return path, nil
}

// guestConfigForward is the user network's forwarding of the config server's address to port on
// kiln's host, one socat per connection.
func guestConfigForward(socat string, port int) string {
	return fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:%s - TCP:127.0.0.1:%d", GuestConfigAddress, GuestConfigPort, socat, port)
}
