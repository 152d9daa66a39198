package pxe

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Mode is how the DHCP side runs.
type Mode string

// DHCP modes.
const (
	// ModeProxy answers PXE clients with boot information only, next to an existing DHCP server that
	// gives the addresses.
	ModeProxy Mode = "proxy"
	// ModeFull leases addresses from a range too, for an isolated provisioning network.
	ModeFull Mode = "full"
)

// ClientKind is what kind of network boot client a request comes from.
type ClientKind string

// Client kinds.
const (
	// KindNone is not a network boot client (or one kiln cannot boot).
	KindNone ClientKind = "none"
	// KindBIOS is a legacy BIOS PXE ROM: it gets undionly.kpxe over TFTP.
	KindBIOS ClientKind = "bios"
	// KindUEFI is a UEFI PXE client: it gets ipxe.efi over TFTP.
	KindUEFI ClientKind = "uefi"
	// KindIPXE is iPXE (user class "iPXE"): it gets the chain script over HTTP.
	KindIPXE ClientKind = "ipxe"
	// KindHTTP is UEFI HTTP boot (vendor class "HTTPClient"): it gets ipxe.efi over HTTP.
	KindHTTP ClientKind = "uefi-http"
)

// iPXE binaries and where they are asked for.
const (
	FileBIOS = "undionly.kpxe"
	FileUEFI = "ipxe.efi"
)

// Classify tells the kind of boot client that sent req.
func Classify(req *dhcpv4.DHCPv4) ClientKind {
	for _, uc := range userClasses(req) {
		if uc == "iPXE" {
			return KindIPXE
		}
	}
	vendor := req.ClassIdentifier()
	switch {
	case strings.HasPrefix(vendor, "HTTPClient"):
		if archIn(req, iana.EFI_X86_64_HTTP, iana.EFI_X86_HTTP) || len(req.ClientArch()) == 0 {
			return KindHTTP
		}
		return KindNone
	case strings.HasPrefix(vendor, "PXEClient"):
		archs := req.ClientArch()
		if len(archs) == 0 || archs[0] == iana.INTEL_X86PC {
			return KindBIOS
		}
		if archIn(req, iana.EFI_X86_64, iana.EFI_BC, iana.EFI_IA32) {
			return KindUEFI
		}
	}
	return KindNone
}

// userClasses reads option 77 both as RFC 3004 (length-prefixed) and as the plain string iPXE sends.
func userClasses(req *dhcpv4.DHCPv4) []string {
	raw := req.GetOneOption(dhcpv4.OptionUserClassInformation)
	if len(raw) == 0 {
		return nil
	}
	out := []string{string(bytes.TrimRight(raw, "\x00"))}
	for rest := raw; len(rest) > 0; {
		n := int(rest[0])
		if n == 0 || n+1 > len(rest) {
			break
		}
		out = append(out, string(rest[1:n+1]))
		rest = rest[n+1:]
	}
	return out
}

func archIn(req *dhcpv4.DHCPv4, want ...iana.Arch) bool {
	for _, a := range req.ClientArch() {
		for _, w := range want {
			if a == w {
				return true
			}
		}
	}
	return false
}

// Policy is how the DHCP side answers; Decide is a pure function of it and a request.
type Policy struct {
	Mode Mode
	// ServerIP is this server's address on the boot network (siaddr, server identifier, TFTP).
	ServerIP net.IP
	// HTTPBase is the HTTP server as machines reach it (scheme://host:port).
	HTTPBase string
	// Full mode only: the network's mask, router, DNS servers and lease time.
	Netmask   net.IPMask
	Router    net.IP
	DNS       []net.IP
	LeaseTime time.Duration
	// Relays are the DHCP relay agents whose requests are answered: a relayed request (giaddr set)
	// is answered only when its giaddr, where the reply goes, is one of them. None means no relayed
	// request is answered, so that a forged giaddr cannot aim replies at another host.
	Relays []net.IP
}

// Decision is the answer to one DHCP request: Reply nil means stay silent, and Reason says why.
type Decision struct {
	Kind   ClientKind
	Reply  *dhcpv4.DHCPv4
	Reason string
	// BootFile is the file name or URL the reply names, empty for none.
	BootFile string
	// Refused is true when the request came through a relay agent that is not in Policy.Relays:
	// unlike a request that needs no answer, that is worth a log line at warning level.
	Refused bool
}

// Decide answers req. known says whether the MAC is in the inventory; lease is the address this server
// leased to it (full mode), nil when it has none.
func (p Policy) Decide(req *dhcpv4.DHCPv4, known bool, lease net.IP) Decision {
	d := Decision{Kind: Classify(req)}
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		d.Reason = "not a boot request"
		return d
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		d.Reason = "not an Ethernet client"
		return d
	}
	if p.relayRefused(req) {
		d.Reason = fmt.Sprintf("relayed by %s, which is not a configured relay (--relay)", req.GatewayIPAddr)
		d.Refused = true
		return d
	}
	if !known {
		d.Reason = "machine not in the inventory"
		return d
	}
	var msg dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		msg = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		msg = dhcpv4.MessageTypeAck
	default:
		d.Reason = fmt.Sprintf("message type %s needs no answer", req.MessageType())
		return d
	}
	switch p.Mode {
	case ModeProxy:
		if d.Kind == KindNone {
			d.Reason = "not a network boot client; the network's DHCP server answers it"
			return d
		}
		if msg == dhcpv4.MessageTypeAck && !serverIs(req, p.ServerIP) {
			d.Reason = "request for another server"
			return d
		}
	case ModeFull:
		if lease == nil {
			d.Reason = "no address to lease"
			return d
		}
		if msg == dhcpv4.MessageTypeAck {
			if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(p.ServerIP) {
				d.Reason = "client chose another server"
				return d
			}
			want := req.RequestedIPAddress()
			if want == nil {
				want = req.ClientIPAddr
			}
			if want != nil && !want.IsUnspecified() && !want.Equal(lease) {
				reply, _ := dhcpv4.NewReplyFromRequest(req,
					dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
					dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.ServerIP)))
				d.Reply, d.Reason = reply, fmt.Sprintf("requested %s, leased %s", want, lease)
				return d
			}
		}
	default:
		d.Reason = fmt.Sprintf("unknown mode %q", p.Mode)
		return d
	}
	reply, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(msg),
		dhcpv4.WithServerIP(p.ServerIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.ServerIP)))
	if err != nil {
		d.Reason = err.Error()
		return d
	}
	if p.Mode == ModeFull {
		reply.YourIPAddr = lease
		reply.UpdateOption(dhcpv4.OptSubnetMask(p.Netmask))
		if p.Router != nil {
			reply.UpdateOption(dhcpv4.OptRouter(p.Router))
		}
		if len(p.DNS) > 0 {
			reply.UpdateOption(dhcpv4.OptDNS(p.DNS...))
		}
		reply.UpdateOption(dhcpv4.OptIPAddressLeaseTime(p.LeaseTime))
	}
	if guid := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); len(guid) > 0 {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, guid))
	}
	switch d.Kind {
	case KindBIOS:
		d.BootFile = FileBIOS
	case KindUEFI:
		d.BootFile = FileUEFI
	case KindIPXE:
		d.BootFile = p.HTTPBase + "/boot.ipxe"
	case KindHTTP:
		d.BootFile = p.HTTPBase + "/ipxe/" + FileUEFI
	}
	if d.BootFile != "" {
		reply.BootFileName = d.BootFile
		reply.UpdateOption(dhcpv4.OptBootFileName(d.BootFile))
		if d.Kind == KindHTTP {
			reply.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
		} else {
			reply.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		}
		if d.Kind == KindBIOS || d.Kind == KindUEFI {
			reply.ServerHostName = p.ServerIP.String()
			reply.UpdateOption(dhcpv4.OptTFTPServerName(p.ServerIP.String()))
			// PXE vendor options: discovery control 8 = boot the file of this offer, no boot server
			// discovery (what a proxyDHCP answer must say).
			reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
		}
	}
	d.Reason = "answered " + string(d.Kind)
	d.Reply = reply
	return d
}

// relayRefused reports whether req was relayed (giaddr set) by an agent not in p.Relays.
func (p Policy) relayRefused(req *dhcpv4.DHCPv4) bool {
	gi := req.GatewayIPAddr
	if gi == nil || gi.IsUnspecified() {
		return false
	}
	for _, r := range p.Relays {
		if r.Equal(gi) {
			return false
		}
	}
	return true
}

func serverIs(req *dhcpv4.DHCPv4, ip net.IP) bool {
	sid := req.ServerIdentifier()
	return sid == nil || sid.Equal(ip)
}
