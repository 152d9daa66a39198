package hostkeys

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kiln-dev/kiln/state"
)

// Bucket is the state-store bucket of pins, one per machine name (names are unique in a provider).
const Bucket = "hostkeys"

// Pin is a machine's pinned host keys as the state store keeps them.
type Pin struct {
	Cluster string `json:"cluster"`
	Machine string `json:"machine"`
	// Keys are the public keys in authorized_keys form, sorted.
	Keys []string `json:"keys"`
	// Pinned is when the keys were first read.
	Pinned time.Time `json:"pinned"`
}

// PublicKeys parses the pin's keys.
func (p Pin) PublicKeys() ([]ssh.PublicKey, error) {
	out := make([]ssh.PublicKey, 0, len(p.Keys))
	for i, line := range p.Keys {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("hostkeys: pin of %s: key %d: %w", p.Machine, i, err)
		}
		out = append(out, k)
	}
	return out, nil
}

// Verdict is what Decide makes of a report.
type Verdict int

// Verdicts.
const (
	// PinNew: the machine has no pin; the report becomes its pin.
	PinNew Verdict = iota
	// Matches: the report holds exactly the pinned keys.
	Matches
	// Refuse: the report differs from the pin; the error says how.
	Refuse
)

// Decide compares a machine's report with its pin (nil when it has none). It acts on nothing: Check
// stores what it decides. Reports are compared as sets of keys: order and repeats do not matter.
func Decide(machine string, pin *Pin, reported []ssh.PublicKey) (Verdict, error) {
	if len(reported) == 0 {
		return Refuse, fmt.Errorf("hostkeys: machine %s: %w", machine, errNoKeys)
	}
	if pin == nil {
		return PinNew, nil
	}
	if slices.Equal(keySet(reported), sortedUnique(pin.Keys)) {
		return Matches, nil
	}
	pinned, err := pin.PublicKeys()
	if err != nil {
		return Refuse, err
	}
	return Refuse, &MismatchError{Machine: machine, Pinned: Fingerprints(pinned), Reported: Fingerprints(reported)}
}

// keySet is keys in authorized_keys form, sorted, without repeats.
func keySet(keys []ssh.PublicKey) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(k))))
	}
	return sortedUnique(out)
}

func sortedUnique(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// Store is what Check needs of the state store: it reads pins and creates them, and never replaces
// one.
type Store interface {
	state.Getter
	state.Creator
}

// Check decides on machine's report (Decide) and, for a machine without a pin, pins it. It returns the
// machine's pinned keys and whether this call pinned them; a report that differs from the pin is a
// *MismatchError (wrapping ErrChanged) and changes nothing. A pin of the name held by another cluster
// is an error too.
func Check(s Store, cluster, machine string, reported []ssh.PublicKey, now time.Time) ([]ssh.PublicKey, bool, error) {
	pin, err := Load(s, machine)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return nil, false, err
	}
	if pin != nil && pin.Cluster != cluster {
		return nil, false, fmt.Errorf("hostkeys: machine %s: its pin belongs to cluster %s, not %s", machine, pin.Cluster, cluster)
	}
	v, err := Decide(machine, pin, reported)
	switch v {
	case Matches:
		return reported, false, nil
	case Refuse:
		return nil, false, err
	}
	p := Pin{Cluster: cluster, Machine: machine, Keys: keySet(reported), Pinned: now.UTC()}
	if err := s.Create(Bucket, machine, p); err != nil {
		if errors.Is(err, state.ErrExists) { // pinned by another kiln since we looked: compare with that
			return Check(s, cluster, machine, reported, now)
		}
		return nil, false, fmt.Errorf("hostkeys: pin %s: %w", machine, err)
	}
	return reported, true, nil
}

// Load returns machine's pin; state.ErrNotFound (wrapped) when it has none.
func Load(s state.Getter, machine string) (*Pin, error) {
	var p Pin
	if err := s.Get(Bucket, machine, &p); err != nil {
		return nil, fmt.Errorf("hostkeys: pin of %s: %w", machine, err)
	}
	return &p, nil
}

// Forget removes machine's pin, once the machine is deleted: a new machine gets its own. A machine
// without a pin is not an error.
func Forget(s state.Deleter, machine string) error {
	if err := s.Delete(Bucket, machine); err != nil && !errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("hostkeys: forget the pin of %s: %w", machine, err)
	}
	return nil
}

// KnownHostsLines returns a known_hosts line for each key at addr (host:port, as dialled).
func KnownHostsLines(addr string, keys []ssh.PublicKey) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, knownhosts.Line([]string{knownhosts.Normalize(addr)}, k))
	}
	return out
}
