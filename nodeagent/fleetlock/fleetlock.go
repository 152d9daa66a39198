// Package fleetlock serves the FleetLock protocol, with which Zincati (the update agent of Fedora
// CoreOS) asks for leave to reboot, on top of kiln's reboot lock (package rebootlock): an
// image-based node that brings its own updater reboots under the same per-pool semaphore as kiln's
// own agent.
//
// The protocol (https://coreos.github.io/zincati/development/fleetlock/protocol/) is two POST
// endpoints below a base URL, each with the header "fleet-lock-protocol: true" and the JSON body
// {"client_params": {"id": ID, "group": GROUP}}:
//
//   - /v1/pre-reboot takes a reboot slot of GROUP for ID (RecursiveLock): 200 when ID holds one, a
//     new one or the one it held already; an error while every slot is held by others, and the
//     client asks again later;
//   - /v1/steady-state frees ID's slot (UnlockIfHeld): 200 also when ID holds none.
//
// Anything but 200 is a failure, and comes with a JSON body {"kind": KIND, "value": TEXT}: KIND is
// one of the Kind constants (a small set, as clients count them in metrics), TEXT says what is
// wrong for the administrator reading the client's log.
//
// A group is a pool: the Handler has one rebootlock.Semaphore per group, and ID is the holder's
// identity in the pool's Leases.
package fleetlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

// The protocol's paths and header.
const (
	PreRebootPath   = "/v1/pre-reboot"
	SteadyStatePath = "/v1/steady-state"
	// ProtocolHeader must be "true" on every request, so that a request that was redirected, or
	// made by something that does not speak the protocol, is refused.
	ProtocolHeader = "fleet-lock-protocol"
)

// MaxBodyBytes bounds a request's body; Zincati's is under 100 bytes.
const MaxBodyBytes = 4 << 10

// DefaultTimeout bounds the API calls of one request.
const DefaultTimeout = 30 * time.Second

// Kinds of error replies.
const (
	KindNotFound         = "not_found"                  // 404: no such endpoint
	KindMethodNotAllowed = "method_not_allowed"         // 405: not a POST
	KindMissingHeader    = "missing_protocol_header"    // 400: no "fleet-lock-protocol: true"
	KindTooLarge         = "request_too_large"          // 413: a body over MaxBodyBytes
	KindInvalidIdentity  = "invalid_client_identity"    // 400: the body is not JSON, or no id or group
	KindUnknownGroup     = "unknown_group"              // 400: a group this server does not serve
	KindSemaphoreFull    = "failed_lock_semaphore_full" // 409: every slot is held by others
	KindLockFailed       = "failed_lock"                // 500: the lock could not be taken (API unreachable, no Lease, forbidden)
	KindUnlockFailed     = "failed_unlock"              // 500: the lock could not be freed
)

// groupPattern is the protocol's form of a group.
var groupPattern = regexp.MustCompile(`^[a-zA-Z0-9.-]+$`)

// maxIDBytes bounds a client's id: it is stored as the Lease's holderIdentity and logged.
const maxIDBytes = 253

// Request is a FleetLock request's body.
type Request struct {
	ClientParams ClientParams `json:"client_params"`
}

// ClientParams identify the client.
type ClientParams struct {
	// ID identifies the client (Zincati: an ID derived from /etc/machine-id).
	ID string `json:"id"`
	// Group is its reboot group: a pool.
	Group string `json:"group"`
}

// Reply is a FleetLock reply: Status 200, or an error with Kind and Value.
type Reply struct {
	Status int    `json:"-"`
	Kind   string `json:"kind"`
	Value  string `json:"value"`
}

func refuse(status int, kind, format string, args ...any) *Reply {
	return &Reply{Status: status, Kind: kind, Value: fmt.Sprintf(format, args...)}
}

// Handler serves the protocol's two endpoints (the paths above, below the root), each group on its
// semaphore. Make it with New.
type Handler struct {
	groups  map[string]*rebootlock.Semaphore
	log     *slog.Logger
	timeout time.Duration
}

// New returns a handler that serves groups, group name to its pool's semaphore, and logs one line
// per request to log (nil: slog.Default()) with what it decided.
func New(groups map[string]*rebootlock.Semaphore, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	return &Handler{groups: groups, log: log, timeout: DefaultTimeout}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, reply := parse(r, w)
	attrs := []slog.Attr{slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr)}
	if reply == nil {
		attrs = append(attrs, slog.String("group", req.ClientParams.Group), slog.String("id", req.ClientParams.ID))
		var slot int
		slot, reply = h.serve(r.Context(), r.URL.Path, req.ClientParams)
		if slot >= 0 {
			attrs = append(attrs, slog.Int("slot", slot))
		}
	}
	level := slog.LevelInfo
	switch {
	case reply.Status >= 500:
		level = slog.LevelError
	case reply.Status >= 400 && reply.Kind != KindSemaphoreFull:
		level = slog.LevelWarn
	}
	attrs = append(attrs, slog.Int("status", reply.Status))
	if reply.Kind != "" {
		attrs = append(attrs, slog.String("kind", reply.Kind), slog.String("why", reply.Value))
	}
	h.log.LogAttrs(r.Context(), level, "fleetlock", attrs...)
	write(w, reply)
}

// parse checks a request's path, method, header and body, and returns its body, or the reply that
// refuses it. w is only used to limit the body's size.
func parse(r *http.Request, w http.ResponseWriter) (Request, *Reply) {
	var req Request
	if r.URL.Path != PreRebootPath && r.URL.Path != SteadyStatePath {
		return req, refuse(http.StatusNotFound, KindNotFound, "no endpoint %q: FleetLock has %s and %s", r.URL.Path, PreRebootPath, SteadyStatePath)
	}
	if r.Method != http.MethodPost {
		return req, refuse(http.StatusMethodNotAllowed, KindMethodNotAllowed, "%s of %s: FleetLock requests are POSTs", r.Method, r.URL.Path)
	}
	if r.Header.Get(ProtocolHeader) != "true" {
		return req, refuse(http.StatusBadRequest, KindMissingHeader, "no header %q: a FleetLock request says %s: true", ProtocolHeader, ProtocolHeader)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
		return req, refuse(http.StatusRequestEntityTooLarge, KindTooLarge, "a body over %d bytes", MaxBodyBytes)
	}
	if err != nil {
		return req, refuse(http.StatusBadRequest, KindInvalidIdentity, "reading the body: %v", err)
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, refuse(http.StatusBadRequest, KindInvalidIdentity, `the body is not {"client_params": {"id": ID, "group": GROUP}}: %v`, err)
	}
	p := req.ClientParams
	switch {
	case p.ID == "":
		return req, refuse(http.StatusBadRequest, KindInvalidIdentity, "client_params.id: empty")
	case len(p.ID) > maxIDBytes || !printable(p.ID):
		return req, refuse(http.StatusBadRequest, KindInvalidIdentity, "client_params.id: want at most %d printable ASCII characters without spaces", maxIDBytes)
	case p.Group == "":
		return req, refuse(http.StatusBadRequest, KindInvalidIdentity, "client_params.group: empty")
	case len(p.Group) > maxIDBytes || !groupPattern.MatchString(p.Group):
		return req, refuse(http.StatusBadRequest, KindInvalidIdentity, "client_params.group: want letters, digits, '.' and '-' (%s)", groupPattern)
	}
	return req, nil
}

// printable says whether s is printable ASCII without spaces.
func printable(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// serve does what path asks for p on its group's semaphore, and returns the slot (or -1) and
// the reply.
func (h *Handler) serve(ctx context.Context, path string, p ClientParams) (int, *Reply) {
	sem, ok := h.groups[p.Group]
	if !ok {
		return -1, refuse(http.StatusBadRequest, KindUnknownGroup, "unknown group %q", p.Group)
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	if path == SteadyStatePath {
		if err := sem.Release(ctx, p.ID); err != nil {
			return -1, refuse(http.StatusInternalServerError, KindUnlockFailed, "%v", err)
		}
		return -1, &Reply{Status: http.StatusOK}
	}
	slot, err := sem.Acquire(ctx, p.ID)
	switch {
	case errors.Is(err, rebootlock.ErrBusy):
		return -1, refuse(http.StatusConflict, KindSemaphoreFull, "%v", err)
	case err != nil:
		return -1, refuse(http.StatusInternalServerError, KindLockFailed, "%v", err)
	}
	return slot, &Reply{Status: http.StatusOK}
}

// write sends reply: a bare 200, or the error's status with its JSON.
func write(w http.ResponseWriter, reply *Reply) {
	if reply.Status == http.StatusOK {
		w.WriteHeader(http.StatusOK)
		return
	}
	body, _ := json.Marshal(reply) // two strings: never fails
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if reply.Status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	w.WriteHeader(reply.Status)
	_, _ = w.Write(append(body, '\n'))
}
