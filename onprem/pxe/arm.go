package pxe

import (
	"errors"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/state"
)

// BucketArms holds one Arm per machine that may install now, keyed by MAC.
const BucketArms = "pxe-arms"

// Who armed a machine.
const (
	ArmedByCLI   = "kiln pxe arm"
	ArmedByMetal = "metal provider"
)

// Arm lets one machine of the inventory install at its next network boot: the script it gets then
// carries the one-time URL of its config. 'kiln pxe arm' and the metal provider's Create arm a
// machine; it is disarmed once its config was served, by 'kiln pxe disarm', when it expires, or when
// the metal provider releases the machine. A machine that is not armed gets the same script as a MAC
// the server does not know: one that exits to the next boot device.
type Arm struct {
	MAC string `json:"mac"`
	// Cluster and Machine name the config: the cluster and the node name it is rendered for. An
	// empty Cluster is the server's cluster, an empty Machine the inventory machine's name.
	Cluster string `json:"cluster,omitempty"`
	Machine string `json:"machine,omitempty"`
	// By says who armed it (ArmedByCLI, ArmedByMetal).
	By string    `json:"by"`
	At time.Time `json:"at"`
	// Expires, when set, is when the arm lapses if no config was served by then.
	Expires time.Time `json:"expires,omitzero"`
	// Config, when set, is the config to serve: the one the provisioner rendered for the metal
	// provider's machine. Else the server serves the one it renders for the inventory machine.
	Config []byte `json:"config,omitempty"`
}

// Active reports whether the arm still lets its machine install at now.
func (a Arm) Active(now time.Time) bool {
	return a.Expires.IsZero() || now.Before(a.Expires)
}

// ArmMachine records a, replacing any arm of its machine.
func ArmMachine(st state.Putter, a Arm) error {
	if err := st.Put(BucketArms, a.MAC, a); err != nil {
		return fmt.Errorf("pxe: arm %s: %w", a.MAC, err)
	}
	return nil
}

// Disarm removes the arm of the machine with mac; a machine that is not armed is not an error.
func Disarm(st state.Deleter, mac string) error {
	if err := st.Delete(BucketArms, mac); err != nil && !errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("pxe: disarm %s: %w", mac, err)
	}
	return nil
}

// GetArm returns the arm of the machine with mac, and false if it is not armed.
func GetArm(st state.Getter, mac string) (Arm, bool, error) {
	var a Arm
	err := st.Get(BucketArms, mac, &a)
	if errors.Is(err, state.ErrNotFound) {
		return Arm{}, false, nil
	}
	if err != nil {
		return Arm{}, false, fmt.Errorf("pxe: arm %s: %w", mac, err)
	}
	return a, true, nil
}

// LoadArms returns every arm in the store by MAC.
func LoadArms(st state.Reader) (map[string]Arm, error) {
	keys, err := st.List(BucketArms)
	if err != nil {
		return nil, fmt.Errorf("pxe: arms: %w", err)
	}
	arms := make(map[string]Arm, len(keys))
	for _, k := range keys {
		a, ok, err := GetArm(st, k)
		if err != nil {
			return nil, err
		}
		if ok {
			arms[k] = a
		}
	}
	return arms, nil
}
