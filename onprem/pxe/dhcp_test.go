package pxe

import (
	"encoding/hex"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// recorded reads a DHCP packet captured from a real client (testdata/dhcp/*.hex): iPXE in QEMU's
// SeaBIOS (ipxe-bios), iPXE in OVMF (ipxe-uefi) and OVMF's own UEFI PXE client (uefi-pxe).
func recorded(t testing.TB, name string) *dhcpv4.DHCPv4 {
	t.Helper()
	raw, err := os.ReadFile("testdata/dhcp/" + name + ".hex")
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	d, err := dhcpv4.FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// constructed builds a DISCOVER as a client of the given vendor class and architecture sends it.
func constructed(t testing.TB, vendor string, arch *iana.Arch, userClass string) *dhcpv4.DHCPv4 {
	t.Helper()
	mods := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendor))}
	if arch != nil {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, iana.Archs{*arch}.ToBytes()))
	}
	if userClass != "" {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte(userClass)))
	}
	mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, make([]byte, 16)...)))
	d, err := dhcpv4.NewDiscovery(net.HardwareAddr{0x52, 0x54, 0, 0xaa, 0, 0x02}, mods...)
	if err != nil {
		t.Fatal(err)
	}
	// Round-trip through the wire format, as the server sees it.
	d, err = dhcpv4.FromBytes(d.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func arch(a iana.Arch) *iana.Arch { return &a }

var (
	serverIP = net.IPv4(10, 77, 0, 1).To4()
	leaseIP  = net.IPv4(10, 77, 0, 100).To4()
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		req  *dhcpv4.DHCPv4
		want ClientKind
	}{
		{name: "recorded iPXE on BIOS", req: recorded(t, "ipxe-bios"), want: KindIPXE},
		{name: "recorded iPXE on UEFI", req: recorded(t, "ipxe-uefi"), want: KindIPXE},
		{name: "recorded UEFI PXE (OVMF)", req: recorded(t, "uefi-pxe"), want: KindUEFI},
		{name: "BIOS PXE ROM", req: constructed(t, "PXEClient:Arch:00000:UNDI:002001", arch(iana.INTEL_X86PC), ""), want: KindBIOS},
		{name: "BIOS PXE ROM without option 93", req: constructed(t, "PXEClient", nil, ""), want: KindBIOS},
		{name: "UEFI x86-64 PXE", req: constructed(t, "PXEClient:Arch:00007:UNDI:003016", arch(iana.EFI_X86_64), ""), want: KindUEFI},
		{name: "UEFI byte-code PXE", req: constructed(t, "PXEClient:Arch:00009:UNDI:003016", arch(iana.EFI_BC), ""), want: KindUEFI},
		{name: "UEFI HTTP boot", req: constructed(t, "HTTPClient:Arch:00016:UNDI:003001", arch(iana.EFI_X86_64_HTTP), ""), want: KindHTTP},
		{name: "UEFI HTTP boot on ARM64 (no binary)", req: constructed(t, "HTTPClient:Arch:00019:UNDI:003001", arch(iana.EFI_ARM64_HTTP), ""), want: KindNone},
		{name: "ARM64 UEFI PXE (no binary)", req: constructed(t, "PXEClient:Arch:00011:UNDI:003000", arch(iana.EFI_ARM64), ""), want: KindNone},
		{name: "iPXE user class in RFC 3004 form", req: constructed(t, "PXEClient", nil, "\x04iPXE"), want: KindIPXE},
		{name: "an ordinary DHCP client", req: constructed(t, "udhcp 1.36.1", nil, ""), want: KindNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.req); got != tc.want {
				t.Errorf("Classify = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	proxy := Policy{Mode: ModeProxy, ServerIP: serverIP, HTTPBase: "http://10.77.0.1:8080"}
	full := Policy{Mode: ModeFull, ServerIP: serverIP, HTTPBase: "http://10.77.0.1:8080",
		Netmask: net.CIDRMask(24, 32), Router: serverIP, DNS: []net.IP{serverIP}, LeaseTime: time.Hour}
	request := func(d *dhcpv4.DHCPv4, ip net.IP) *dhcpv4.DHCPv4 {
		d.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
		d.UpdateOption(dhcpv4.OptRequestedIPAddress(ip))
		d.UpdateOption(dhcpv4.OptServerIdentifier(serverIP))
		return d
	}
	tests := []struct {
		name     string
		policy   Policy
		req      *dhcpv4.DHCPv4
		known    bool
		lease    net.IP
		wantType dhcpv4.MessageType // 0: no reply
		wantFile string
		wantYour net.IP
		wantTFTP bool
		vendor   string
	}{
		{name: "proxy: BIOS PXE gets undionly.kpxe over TFTP", policy: proxy, known: true,
			req:      constructed(t, "PXEClient:Arch:00000:UNDI:002001", arch(iana.INTEL_X86PC), ""),
			wantType: dhcpv4.MessageTypeOffer, wantFile: "undionly.kpxe", wantTFTP: true, vendor: "PXEClient"},
		{name: "proxy: recorded UEFI PXE gets ipxe.efi over TFTP", policy: proxy, known: true, req: recorded(t, "uefi-pxe"),
			wantType: dhcpv4.MessageTypeOffer, wantFile: "ipxe.efi", wantTFTP: true, vendor: "PXEClient"},
		{name: "proxy: recorded iPXE gets the chain script URL", policy: proxy, known: true, req: recorded(t, "ipxe-bios"),
			wantType: dhcpv4.MessageTypeOffer, wantFile: "http://10.77.0.1:8080/boot.ipxe", vendor: "PXEClient"},
		{name: "proxy: UEFI HTTP boot gets ipxe.efi over HTTP", policy: proxy, known: true,
			req:      constructed(t, "HTTPClient:Arch:00016:UNDI:003001", arch(iana.EFI_X86_64_HTTP), ""),
			wantType: dhcpv4.MessageTypeOffer, wantFile: "http://10.77.0.1:8080/ipxe/ipxe.efi", vendor: "HTTPClient"},
		{name: "proxy: an ordinary client is left to the network's DHCP server", policy: proxy, known: true,
			req: constructed(t, "udhcp 1.36.1", nil, "")},
		{name: "proxy: an unknown machine gets nothing", policy: proxy, known: false, req: recorded(t, "ipxe-bios")},
		{name: "full: recorded iPXE gets a lease and the script", policy: full, known: true, lease: leaseIP,
			req: recorded(t, "ipxe-uefi"), wantType: dhcpv4.MessageTypeOffer, wantYour: leaseIP,
			wantFile: "http://10.77.0.1:8080/boot.ipxe", vendor: "PXEClient"},
		{name: "full: request for the leased address is acked", policy: full, known: true, lease: leaseIP,
			req: request(recorded(t, "ipxe-bios"), leaseIP), wantType: dhcpv4.MessageTypeAck, wantYour: leaseIP,
			wantFile: "http://10.77.0.1:8080/boot.ipxe", vendor: "PXEClient"},
		{name: "full: request for another address is refused", policy: full, known: true, lease: leaseIP,
			req: request(recorded(t, "ipxe-bios"), net.IPv4(10, 77, 0, 7)), wantType: dhcpv4.MessageTypeNak},
		{name: "full: an ordinary client of the inventory gets a lease, no boot file", policy: full, known: true, lease: leaseIP,
			req: constructed(t, "udhcp 1.36.1", nil, ""), wantType: dhcpv4.MessageTypeOffer, wantYour: leaseIP},
		{name: "full: no address left, no answer", policy: full, known: true, req: recorded(t, "ipxe-bios")},
		{name: "full: an unknown machine gets nothing", policy: full, known: false, lease: leaseIP, req: recorded(t, "ipxe-bios")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.policy.Decide(tc.req, tc.known, tc.lease)
			if tc.wantType == 0 {
				if d.Reply != nil {
					t.Fatalf("replied %s; want silence", d.Reply.Summary())
				}
				if d.Reason == "" {
					t.Error("silence without a reason")
				}
				return
			}
			if d.Reply == nil {
				t.Fatalf("no reply (%s)", d.Reason)
			}
			// What goes on the wire must parse back.
			reply, err := dhcpv4.FromBytes(d.Reply.ToBytes())
			if err != nil {
				t.Fatal(err)
			}
			if reply.MessageType() != tc.wantType {
				t.Fatalf("type %s, want %s", reply.MessageType(), tc.wantType)
			}
			if reply.TransactionID != tc.req.TransactionID || reply.ClientHWAddr.String() != tc.req.ClientHWAddr.String() {
				t.Error("reply is not to the request's transaction and client")
			}
			if !reply.ServerIdentifier().Equal(serverIP) {
				t.Errorf("server identifier %v", reply.ServerIdentifier())
			}
			if tc.wantType == dhcpv4.MessageTypeNak {
				return
			}
			if reply.BootFileName != tc.wantFile || reply.BootFileNameOption() != tc.wantFile {
				t.Errorf("boot file %q / option 67 %q, want %q", reply.BootFileName, reply.BootFileNameOption(), tc.wantFile)
			}
			if got := reply.ClassIdentifier(); got != tc.vendor {
				t.Errorf("option 60 %q, want %q", got, tc.vendor)
			}
			if tc.wantYour == nil {
				if !reply.YourIPAddr.IsUnspecified() {
					t.Errorf("proxyDHCP offered an address: %v", reply.YourIPAddr)
				}
				if reply.SubnetMask() != nil {
					t.Error("proxyDHCP sent network options")
				}
			} else {
				if !reply.YourIPAddr.Equal(tc.wantYour) {
					t.Errorf("yiaddr %v, want %v", reply.YourIPAddr, tc.wantYour)
				}
				if reply.IPAddressLeaseTime(0) != time.Hour || reply.SubnetMask().String() != "ffffff00" {
					t.Errorf("lease options: %s", reply.Summary())
				}
			}
			if tc.wantTFTP {
				if reply.TFTPServerName() != serverIP.String() || !reply.ServerIPAddr.Equal(serverIP) {
					t.Errorf("TFTP server %q siaddr %v", reply.TFTPServerName(), reply.ServerIPAddr)
				}
				if got := reply.GetOneOption(dhcpv4.OptionVendorSpecificInformation); string(got) != "\x06\x01\x08\xff" {
					t.Errorf("PXE discovery control %x", got)
				}
			}
			if guid := tc.req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); guid != nil &&
				string(reply.GetOneOption(dhcpv4.OptionClientMachineIdentifier)) != string(guid) {
				t.Error("option 97 not echoed")
			}
		})
	}
}

func TestLeases(t *testing.T) {
	l, err := NewLeases(net.IPv4(10, 0, 0, 10), net.IPv4(10, 0, 0, 11))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := l.Allocate("52:54:00:00:00:01")
	b, _ := l.Allocate("52:54:00:00:00:02")
	again, _ := l.Allocate("52:54:00:00:00:01")
	if a.String() != "10.0.0.10" || b.String() != "10.0.0.11" || !again.Equal(a) {
		t.Fatalf("leases %v %v %v", a, b, again)
	}
	if _, err := l.Allocate("52:54:00:00:00:03"); err != ErrRangeFull {
		t.Fatalf("full range: %v", err)
	}
	r, _ := NewLeases(net.IPv4(10, 0, 0, 10), net.IPv4(10, 0, 0, 20))
	if !r.Restore("52:54:00:00:00:05", net.IPv4(10, 0, 0, 15)) || r.Restore("52:54:00:00:00:06", net.IPv4(10, 0, 0, 15)) ||
		r.Restore("52:54:00:00:00:07", net.IPv4(10, 0, 1, 1)) {
		t.Fatal("restore kept the wrong leases")
	}
	if ip, _ := r.Allocate("52:54:00:00:00:05"); ip.String() != "10.0.0.15" {
		t.Fatalf("restored lease not kept: %v", ip)
	}
	if _, err := NewLeases(net.IPv4(10, 0, 0, 9), net.IPv4(10, 0, 0, 1)); err == nil {
		t.Fatal("backwards range accepted")
	}
}

// FuzzDecide feeds arbitrary packets to the DHCP decision: it must not panic, must never answer a
// machine outside the inventory, must never name a boot file to a client it did not classify, and
// must answer a relayed request only when its relay agent is configured (the seeds in
// testdata/fuzz/FuzzDecide include relayed requests).
func FuzzDecide(f *testing.F) {
	for _, name := range []string{"ipxe-bios", "ipxe-uefi", "uefi-pxe"} {
		f.Add(recorded(f, name).ToBytes(), true)
	}
	f.Add(constructed(f, "HTTPClient:Arch:00016", arch(iana.EFI_X86_64_HTTP), "").ToBytes(), false)
	relayed := recorded(f, "ipxe-bios")
	relayed.GatewayIPAddr = net.IPv4(10, 78, 0, 1)
	f.Add(relayed.ToBytes(), true)
	relays := []net.IP{net.IPv4(10, 78, 0, 1)}
	policies := []Policy{
		{Mode: ModeProxy, ServerIP: serverIP, HTTPBase: "http://10.77.0.1"},
		{Mode: ModeFull, ServerIP: serverIP, HTTPBase: "http://10.77.0.1", Netmask: net.CIDRMask(24, 32), LeaseTime: time.Hour},
		{Mode: ModeProxy, ServerIP: serverIP, HTTPBase: "http://10.77.0.1", Relays: relays},
		{Mode: ModeFull, ServerIP: serverIP, HTTPBase: "http://10.77.0.1", Netmask: net.CIDRMask(24, 32), LeaseTime: time.Hour, Relays: relays},
	}
	f.Fuzz(func(t *testing.T, packet []byte, known bool) {
		req, err := dhcpv4.FromBytes(packet)
		if err != nil {
			return
		}
		for _, p := range policies {
			d := p.Decide(req, known, leaseIP)
			if d.Reply == nil {
				continue
			}
			if !known {
				t.Fatalf("answered a machine outside the inventory: %s", d.Reason)
			}
			if gi := req.GatewayIPAddr; gi != nil && !gi.IsUnspecified() && !slices.ContainsFunc(p.Relays, gi.Equal) {
				t.Fatalf("answered a request relayed by %s, not a configured relay (%v): %s", gi, p.Relays, d.Reason)
			}
			if d.Kind == KindNone && d.BootFile != "" {
				t.Fatalf("boot file %q for a client that is not a boot client", d.BootFile)
			}
			if _, err := dhcpv4.FromBytes(d.Reply.ToBytes()); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
		}
	})
}
