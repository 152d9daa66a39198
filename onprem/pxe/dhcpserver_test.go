package pxe

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/kiln-dev/kiln/internal/testtool"
)

// TestDHCPServerRelayed runs the DHCP socket side on loopback: a request relayed (giaddr set, as a
// DHCP relay agent forwards it) is answered to the relay's port 67, with a lease in full mode, and the
// machine's DHCP step is recorded. Binding port 67 needs root.
func TestDHCPServerRelayed(t *testing.T) {
	testtool.RequireRoot(t)
	inv := testInventory(t)
	rec := NewRecorder(nil)
	leases, err := NewLeases(net.IPv4(10, 77, 0, 100), net.IPv4(10, 77, 0, 110))
	if err != nil {
		t.Fatal(err)
	}
	policy := Policy{Mode: ModeFull, ServerIP: serverIP, HTTPBase: "http://10.77.0.1:8080", Netmask: net.CIDRMask(24, 32), LeaseTime: time.Hour,
		Relays: []net.IP{net.IPv4(127, 0, 0, 2)}}
	srv, err := NewDHCPServer("lo", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 0}, policy, inv, leases, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	defer func() {
		srv.Close()
		<-done
	}()
	relay, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: dhcpv4.ServerPort})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()

	exchange := func(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		t.Helper()
		req.GatewayIPAddr = net.IPv4(127, 0, 0, 2)
		if _, err := relay.WriteTo(req.ToBytes(), srv.Addr()); err != nil {
			t.Fatal(err)
		}
		relay.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, _, err := relay.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		reply, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return reply
	}
	discover := recorded(t, "ipxe-bios")
	discover.ClientHWAddr, _ = net.ParseMAC("52:54:00:00:00:02")
	offer := exchange(discover)
	if offer.MessageType() != dhcpv4.MessageTypeOffer || offer.YourIPAddr.String() != "10.77.0.100" || offer.BootFileName != "http://10.77.0.1:8080/boot.ipxe" {
		t.Fatalf("offer: %s", offer.Summary())
	}
	request, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	request.UpdateOption(dhcpv4.OptUserClass("iPXE"))
	ack := exchange(request)
	if ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("ack: %s", ack.Summary())
	}
	// The step is recorded once the answer is sent: the test may read it a moment before.
	var r Record
	var ok bool
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if r, ok = rec.Get("52:54:00:00:00:02"); ok {
			break
		}
	}
	if !ok || r.IP != "10.77.0.100" || r.Steps[StepDHCP].Count != 1 {
		t.Fatalf("record: %+v", r)
	}
}
