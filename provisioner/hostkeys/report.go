// Package hostkeys pins the SSH host keys of kiln's machines: it reads the report a node writes of
// its host public keys at every boot (kiln-ssh-hostkeys-report.service, on a channel its platform
// binds to it: provisioner.HostKeyReporter), decides whether a report agrees with the keys pinned for
// the machine, keeps the pins in the state store, and writes them as known_hosts lines.
//
// The first report read is pinned; a later one that differs is refused and never re-pinned. A
// machine that is deleted loses its pin (Forget), so that a new machine gets its own.
package hostkeys

import (
	"bytes"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/provisioner"
)

// The lines around a report, as the node writes them.
const (
	BeginMarker = "-----BEGIN KILN SSH HOST KEYS-----"
	EndMarker   = "-----END KILN SSH HOST KEYS-----"
)

// MaxReportRead is how much of the end of a report channel (a serial console log) a provider reads:
// the latest report is near its end, and the whole file can be large.
const MaxReportRead = 1 << 20

// Parse returns the keys of the last complete report in data: the lines between the last
// BeginMarker (which may end a line of other console output) that an EndMarker closes and that
// EndMarker, each one public key in authorized_keys
// form without options. Lines outside reports (the rest of a console) are ignored; a report that a
// reboot cut short (a BeginMarker without its EndMarker) does not count. It returns
// provisioner.ErrNoHostKeys when
// data holds no complete report, and a *FormatError naming the line when the last report holds
// anything but public keys, or none. Errors never quote a line of the report: a private key there
// must not reach a log.
func Parse(data []byte) ([]ssh.PublicKey, error) {
	var (
		in      bool
		keys    []ssh.PublicKey
		bad     *FormatError
		begin   int
		last    []ssh.PublicKey
		lastErr error
		found   bool
	)
	for i, raw := range bytes.Split(data, []byte{'\n'}) {
		n := i + 1
		line := strings.TrimSpace(string(raw)) // a console ends its lines with \r\n
		switch {
		case strings.HasSuffix(line, BeginMarker):
			// What comes before the marker on its line is the console's unfinished line (a getty's
			// "login: " prompt), not part of the report.
			// A report open before this one was cut short: this one replaces it.
			in, keys, bad, begin = true, nil, nil, n
		case !in:
			// the console's other output
		case line == EndMarker:
			in, found = false, true
			last, lastErr = keys, nil
			switch {
			case bad != nil:
				last, lastErr = nil, bad
			case len(keys) == 0:
				last, lastErr = nil, &FormatError{Line: begin, Reason: "the report holds no key"}
			}
		case bad != nil:
			// the first bad line of a report is the one named
		default:
			k, err := parseLine(line)
			if err != nil {
				bad = &FormatError{Line: n, Reason: err.Error()}
				continue
			}
			keys = append(keys, k)
		}
	}
	if !found {
		return nil, provisioner.ErrNoHostKeys
	}
	return last, lastErr
}

// parseLine reads one line of a report: a public key, nothing else.
func parseLine(line string) (ssh.PublicKey, error) {
	if strings.Contains(line, "PRIVATE KEY") {
		return nil, fmt.Errorf("a private key; refused (only public keys belong in a report)")
	}
	k, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	switch {
	case err != nil:
		return nil, fmt.Errorf("not an SSH public key")
	case len(opts) > 0:
		return nil, fmt.Errorf("a public key with options; a report holds bare keys")
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, fmt.Errorf("more than one public key on the line")
	}
	return k, nil
}

// Fingerprints are the SHA256 fingerprints of keys with their types, for messages:
// "SHA256:... (ssh-ed25519)".
func Fingerprints(keys []ssh.PublicKey) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, ssh.FingerprintSHA256(k)+" ("+k.Type()+")")
	}
	return out
}
