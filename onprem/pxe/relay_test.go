package pxe

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestDecideRelays checks that a relayed request (giaddr set) is answered only when its relay agent
// is configured, in both modes, and that a refusal says so.
func TestDecideRelays(t *testing.T) {
	relay := net.IPv4(10, 78, 0, 1).To4()
	other := net.IPv4(192, 0, 2, 66).To4()
	proxy := Policy{Mode: ModeProxy, ServerIP: serverIP, HTTPBase: "http://10.77.0.1:8080"}
	full := Policy{Mode: ModeFull, ServerIP: serverIP, HTTPBase: "http://10.77.0.1:8080",
		Netmask: net.CIDRMask(24, 32), LeaseTime: time.Hour}
	withRelay := func(p Policy) Policy { p.Relays = []net.IP{relay}; return p }
	tests := []struct {
		name        string
		policy      Policy
		giaddr      net.IP
		wantReply   bool
		wantRefused bool
		wantReason  string
	}{
		{name: "proxy, direct", policy: proxy, wantReply: true, wantReason: "answered ipxe"},
		{name: "proxy, relayed, no relays configured", policy: proxy, giaddr: relay, wantRefused: true,
			wantReason: "relayed by 10.78.0.1, which is not a configured relay (--relay)"},
		{name: "proxy, relayed by the configured relay", policy: withRelay(proxy), giaddr: relay, wantReply: true, wantReason: "answered ipxe"},
		{name: "proxy, relayed by another agent", policy: withRelay(proxy), giaddr: other, wantRefused: true,
			wantReason: "relayed by 192.0.2.66, which is not a configured relay (--relay)"},
		{name: "full, relayed, no relays configured", policy: full, giaddr: relay, wantRefused: true,
			wantReason: "relayed by 10.78.0.1, which is not a configured relay (--relay)"},
		{name: "full, relayed by the configured relay", policy: withRelay(full), giaddr: relay, wantReply: true, wantReason: "answered ipxe"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := recorded(t, "ipxe-bios")
			if tc.giaddr != nil {
				req.GatewayIPAddr = tc.giaddr
			}
			d := tc.policy.Decide(req, true, leaseIP)
			if (d.Reply != nil) != tc.wantReply || d.Refused != tc.wantRefused || d.Reason != tc.wantReason {
				t.Fatalf("reply %v, refused %v, reason %q; want reply %v, refused %v, reason %q",
					d.Reply != nil, d.Refused, d.Reason, tc.wantReply, tc.wantRefused, tc.wantReason)
			}
			if d.Reply != nil && tc.giaddr != nil && !d.Reply.GatewayIPAddr.Equal(tc.giaddr) {
				t.Errorf("reply giaddr %v, want %v", d.Reply.GatewayIPAddr, tc.giaddr)
			}
			if d.Reply != nil && d.Reply.MessageType() != dhcpv4.MessageTypeOffer {
				t.Errorf("reply %s, want an offer", d.Reply.MessageType())
			}
		})
	}
}
