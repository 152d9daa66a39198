package metal

import (
	"context"
	"errors"
	"testing"

	"github.com/kiln-dev/kiln/onprem/pxe"
)

// TestRedfishRefusesPlainHTTP checks that the provider itself refuses a Redfish BMC at an http://
// address without insecure: true, before reading its password or dialling it, whatever loaded the
// inventory.
func TestRedfishRefusesPlainHTTP(t *testing.T) {
	m := &pxe.Machine{Name: "m0", BMC: &pxe.BMC{Driver: "redfish", Address: "http://127.0.0.1:1", Username: "u", PasswordFile: "/nonexistent"}}
	_, _, err := (&Redfish{}).system(context.Background(), m)
	if !errors.Is(err, ErrPlainHTTP) {
		t.Fatalf("err = %v, want ErrPlainHTTP", err)
	}
	m.BMC.Insecure = true
	if _, _, err := (&Redfish{}).system(context.Background(), m); errors.Is(err, ErrPlainHTTP) {
		t.Fatalf("insecure: true still refused: %v", err)
	}
}
