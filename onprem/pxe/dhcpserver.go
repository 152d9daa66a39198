package pxe

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// DHCPServer is the socket side of DHCP: it reads requests, lets Policy.Decide answer them and records
// the answered ones.
type DHCPServer struct {
	policy   Policy
	machines map[string]*Machine
	leases   *Leases
	recorder *Recorder
	log      *slog.Logger
	srv      *server4.Server
	addr     net.Addr
}

// NewDHCPServer listens on UDP port 67 (or addr) of iface (bound to the interface so broadcasts go
// out on it). leases is required in full mode.
func NewDHCPServer(iface string, addr *net.UDPAddr, policy Policy, inv *Inventory, leases *Leases, rec *Recorder, log *slog.Logger) (*DHCPServer, error) {
	if policy.Mode == ModeFull && leases == nil {
		return nil, fmt.Errorf("pxe: dhcp: full mode needs a lease range")
	}
	if policy.ServerIP.To4() == nil {
		return nil, fmt.Errorf("pxe: dhcp: server address %v is not IPv4", policy.ServerIP)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &DHCPServer{policy: policy, machines: map[string]*Machine{}, leases: leases, recorder: rec, log: log}
	for i := range inv.Machines {
		d.machines[inv.Machines[i].MAC] = &inv.Machines[i]
	}
	if addr == nil {
		addr = &net.UDPAddr{Port: dhcpv4.ServerPort}
	}
	conn, err := server4.NewIPv4UDPConn(iface, addr)
	if err != nil {
		return nil, fmt.Errorf("pxe: dhcp: listen on %s %s: %w", iface, addr, err)
	}
	srv, err := server4.NewServer(iface, addr, d.handle, server4.WithConn(conn))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("pxe: dhcp: %w", err)
	}
	d.srv, d.addr = srv, conn.LocalAddr()
	return d, nil
}

// Addr is the address the server listens on.
func (d *DHCPServer) Addr() net.Addr { return d.addr }

// Serve answers requests until Close.
func (d *DHCPServer) Serve() error { return d.srv.Serve() }

// Close stops Serve.
func (d *DHCPServer) Close() error { return d.srv.Close() }

func (d *DHCPServer) handle(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
	mac := req.ClientHWAddr.String()
	m, known := d.machines[mac]
	var lease net.IP
	// A request from a relay agent that is not configured gets no lease: Decide refuses it.
	if known && d.policy.Mode == ModeFull && !d.policy.relayRefused(req) {
		var err error
		if lease, err = d.leases.Allocate(mac); err != nil {
			d.log.Error("dhcp lease", "mac", mac, "err", err)
		}
	}
	dec := d.policy.Decide(req, known, lease)
	if dec.Refused {
		d.log.Warn("dhcp request refused", "mac", mac, "peer", peer.String(), "giaddr", req.GatewayIPAddr.String(), "reason", dec.Reason)
		return
	}
	d.log.Debug("dhcp", "mac", mac, "type", req.MessageType().String(), "kind", dec.Kind, "reason", dec.Reason)
	if dec.Reply == nil {
		return
	}
	to := peer
	if up, ok := peer.(*net.UDPAddr); ok && !req.GatewayIPAddr.IsUnspecified() && req.GatewayIPAddr != nil {
		to = &net.UDPAddr{IP: req.GatewayIPAddr, Port: dhcpv4.ServerPort}
	} else if ok && (d.policy.Mode == ModeProxy || req.IsBroadcast() || up.IP.Equal(net.IPv4bcast)) {
		to = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	}
	if _, err := conn.WriteTo(dec.Reply.ToBytes(), to); err != nil {
		d.log.Error("dhcp reply", "mac", mac, "err", err)
		return
	}
	if dec.Reply.MessageType() == dhcpv4.MessageTypeAck || (d.policy.Mode == ModeProxy && dec.Reply.MessageType() == dhcpv4.MessageTypeOffer) {
		where := "proxy"
		if lease != nil {
			where = lease.String()
		}
		d.recorder.Observe(m, StepDHCP, fmt.Sprintf("%s %s %s", where, dec.Kind, dec.BootFile))
	}
}
