// Package enroll keeps the one-time enrollment tickets with which a machine fetches its real config.
//
// What travels to a machine before it is trusted (user-data, guestinfo, fw_cfg, a PXE script) is a
// stub: the cluster CA, the machine's name, the URL of its real config and a token. The token is
// single-use and short-lived: a ticket in the state store holds its hash, the config it unlocks, when
// it expires and, optionally, the one client address that may spend it. Spend consumes the ticket in
// one state-store transaction and erases the config from it, so a second fetch, with the token read
// from the stub by someone else, finds nothing; it is refused and recorded, and the ticket reads as
// a possible theft. A machine created again gets a new ticket, which revokes the old one.
package enroll

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/state"
)

// Bucket holds one ticket per machine, under Key(cluster, machine).
const Bucket = "enroll"

// DefaultTTL is how long a ticket can be spent: long enough for a machine to be created, boot and
// fetch its config, short enough that a token read from a stub later is worth nothing.
const DefaultTTL = 15 * time.Minute

// MaxTTL bounds a ticket's life: a token that lives longer is a standing credential.
const MaxTTL = 24 * time.Hour

// maxRefused is how many refused attempts a ticket keeps, the newest.
const maxRefused = 32

// tokenPrefix starts every enrollment token, so that a linter can tell one from a reusable secret.
const tokenPrefix = "kiln-enroll-v1."

// tokenBytes is the token's randomness.
const tokenBytes = 32

// Why Spend refuses. Each is recorded in the ticket, with the time and the client address.
var (
	ErrNoTicket     = errors.New("no enrollment ticket for this machine")
	ErrBadToken     = errors.New("the token is not this machine's")
	ErrSpent        = errors.New("the ticket was already spent")
	ErrExpired      = errors.New("the ticket has expired")
	ErrWrongAddress = errors.New("the ticket is bound to another client address")
)

// Store is what the ledger needs of the state store.
type Store interface {
	state.Getter
	state.Putter
	state.Modifier
	state.Lister
	state.Deleter
}

// Ticket is one machine's enrollment, as kiln shows it. It never holds the token or the config.
type Ticket struct {
	Version int       `json:"version"`
	Cluster string    `json:"cluster"`
	Machine string    `json:"machine"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	// Bind, when set, is the only client address that may spend the ticket.
	Bind string `json:"bind,omitempty"`
	// ConfigHash is the hash of the config the ticket unlocks, as Ignition's verification.hash takes
	// it: "sha512-<hex>".
	ConfigHash string `json:"configHash"`
	// Spent is when and from where the config was fetched; nil while the ticket is pending.
	Spent *Attempt `json:"spent,omitempty"`
	// Refused are the attempts that were turned away, the newest last, at most 32.
	Refused []Attempt `json:"refused,omitempty"`
}

// Attempt is one fetch of a config.
type Attempt struct {
	At   time.Time `json:"at"`
	From string    `json:"from,omitempty"`
	// Reason is why it was refused; empty for the fetch that spent the ticket.
	Reason string `json:"reason,omitempty"`
}

// record is a ticket as it is stored: with the token's hash and, until it is spent, the config.
type record struct {
	Ticket
	TokenHash string `json:"tokenHash"`
	Config    []byte `json:"config,omitempty"`
}

// Issuing is a ticket to make.
type Issuing struct {
	Cluster, Machine string
	// Config is what the ticket unlocks: the machine's real config.
	Config []byte
	// TTL defaults to DefaultTTL and is at most MaxTTL.
	TTL time.Duration
	// Bind, when valid, is the only client address that may spend the ticket.
	Bind netip.Addr
	Now  time.Time
	// Rand defaults to crypto/rand.
	Rand io.Reader
}

// Key is the state-store key of a machine's ticket.
func Key(cluster, machine string) string { return cluster + "." + machine }

// Issue makes a new ticket for the machine, replacing (and so revoking) any earlier one, and returns
// its token. Only the token's hash is stored.
func Issue(st Store, in Issuing) (string, Ticket, error) {
	where := fmt.Sprintf("enroll: machine %s of cluster %s", in.Machine, in.Cluster)
	ttl := in.TTL
	switch {
	case in.Cluster == "" || in.Machine == "":
		return "", Ticket{}, fmt.Errorf("enroll: a ticket needs a cluster and a machine (got %q, %q)", in.Cluster, in.Machine)
	case len(in.Config) == 0:
		return "", Ticket{}, fmt.Errorf("%s: no config to unlock", where)
	case ttl == 0:
		ttl = DefaultTTL
	case ttl < 0 || ttl > MaxTTL:
		return "", Ticket{}, fmt.Errorf("%s: ttl %v is not between 0 and %v", where, ttl, MaxTTL)
	}
	r := in.Rand
	if r == nil {
		r = rand.Reader
	}
	raw := make([]byte, tokenBytes)
	if _, err := io.ReadFull(r, raw); err != nil {
		return "", Ticket{}, fmt.Errorf("%s: read random token: %w", where, err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	rec := record{
		Ticket: Ticket{
			Version:    1,
			Cluster:    in.Cluster,
			Machine:    in.Machine,
			Issued:     in.Now.UTC(),
			Expires:    in.Now.Add(ttl).UTC(),
			ConfigHash: ConfigHash(in.Config),
		},
		TokenHash: hashToken(token),
		Config:    slices.Clone(in.Config),
	}
	if in.Bind.IsValid() {
		rec.Bind = in.Bind.Unmap().String()
	}
	if err := st.Put(Bucket, Key(in.Cluster, in.Machine), &rec); err != nil {
		return "", Ticket{}, fmt.Errorf("%s: %w", where, err)
	}
	return token, rec.Ticket, nil
}

// Spend consumes the machine's ticket with token, fetched from the client address from, at now, and
// returns the config it held. Checking, spending and erasing the config are one transaction, so two
// fetches never both get it. A refusal is recorded in the ticket and returned wrapping one of
// ErrNoTicket, ErrBadToken, ErrSpent, ErrExpired or ErrWrongAddress; its message never holds the
// token.
func Spend(st Store, cluster, machine, token string, from netip.Addr, now time.Time) ([]byte, error) {
	where := fmt.Sprintf("enroll: machine %s of cluster %s", machine, cluster)
	var (
		rec     record
		config  []byte
		refusal error
	)
	err := st.Modify(Bucket, Key(cluster, machine), &rec, func() error {
		refusal = rec.check(token, from, now)
		at := Attempt{At: now.UTC(), From: addrString(from)}
		if refusal != nil {
			at.Reason = refusal.Error()
			rec.Refused = append(rec.Refused, at)
			if n := len(rec.Refused); n > maxRefused {
				rec.Refused = slices.Delete(rec.Refused, 0, n-maxRefused)
			}
			return nil
		}
		config, rec.Config = rec.Config, nil
		rec.Spent = &at
		return nil
	})
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil, fmt.Errorf("%s: %w", where, ErrNoTicket)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", where, err)
	case refusal != nil:
		return nil, fmt.Errorf("%s: %w", where, refusal)
	}
	return config, nil
}

// check says why rec cannot be spent with token from from at now, or nil. A wrong token is told
// apart first, so that what a guesser learns is the same for every ticket.
func (rec *record) check(token string, from netip.Addr, now time.Time) error {
	switch {
	case subtle.ConstantTimeCompare([]byte(hashToken(token)), []byte(rec.TokenHash)) != 1:
		return ErrBadToken
	case rec.Spent != nil:
		return ErrSpent
	case !now.Before(rec.Expires):
		return ErrExpired
	case rec.Bind != "" && addrString(from) != rec.Bind:
		return ErrWrongAddress
	}
	return nil
}

// Get returns the machine's ticket; it wraps state.ErrNotFound when there is none.
func Get(st state.Getter, cluster, machine string) (Ticket, error) {
	var rec record
	if err := st.Get(Bucket, Key(cluster, machine), &rec); err != nil {
		return Ticket{}, fmt.Errorf("enroll: machine %s of cluster %s: %w", machine, cluster, err)
	}
	return rec.Ticket, nil
}

// List returns the cluster's tickets, by machine.
func List(st state.Reader, cluster string) ([]Ticket, error) {
	keys, err := st.List(Bucket)
	if err != nil {
		return nil, fmt.Errorf("enroll: list tickets: %w", err)
	}
	var out []Ticket
	for _, k := range keys {
		if !strings.HasPrefix(k, cluster+".") {
			continue
		}
		var rec record
		if err := st.Get(Bucket, k, &rec); err != nil {
			return nil, fmt.Errorf("enroll: ticket %s: %w", k, err)
		}
		if rec.Cluster == cluster {
			out = append(out, rec.Ticket)
		}
	}
	slices.SortFunc(out, func(a, b Ticket) int { return strings.Compare(a.Machine, b.Machine) })
	return out, nil
}

// Revoke deletes the machine's ticket; a machine without one is not an error.
func Revoke(st Store, cluster, machine string) error {
	if err := st.Delete(Bucket, Key(cluster, machine)); err != nil && !errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("enroll: revoke machine %s of cluster %s: %w", machine, cluster, err)
	}
	return nil
}

// Suspect reports whether the ticket was tried in a way its machine would not: with its own token
// from another address, or again after it was spent. Either means the token left the stub.
func (t Ticket) Suspect() bool {
	for _, a := range t.Refused {
		if a.Reason == ErrSpent.Error() || a.Reason == ErrWrongAddress.Error() {
			return true
		}
	}
	return false
}

// State is the ticket's state at now: "pending", "spent" or "expired", with " (possible theft)"
// when it is Suspect.
func (t Ticket) State(now time.Time) string {
	s := "pending"
	switch {
	case t.Spent != nil:
		s = "spent"
	case !now.Before(t.Expires):
		s = "expired"
	}
	if t.Suspect() {
		s += " (possible theft)"
	}
	return s
}

// IsToken reports whether s has the form of an enrollment token, single-use by construction.
func IsToken(s string) bool {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok || len(rest) != base64.RawURLEncoding.EncodedLen(tokenBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil
}

// ConfigHash is the hash of config as Ignition's verification.hash takes it.
func ConfigHash(config []byte) string {
	sum := sha512.Sum512(config)
	return "sha512-" + hex.EncodeToString(sum[:])
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}
