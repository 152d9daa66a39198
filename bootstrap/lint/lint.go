// Package lint checks an Ignition config before kiln hands it to a machine: every remote source is
// https with a verification hash, no secret lands on a machine that must not hold it (no worker holds
// a private key, no node a system:masters certificate valid for more than a day), and the config fits
// the target's delivery channel (AWS user-data, vSphere guestinfo).
//
// The checks are pure functions of the config and a Policy; bootstrap/ignition runs them on every
// config it renders, and `kiln lint ignition` runs them on a file.
package lint

import (
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/nodeagent/reboot"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
	"github.com/vincent-petithory/dataurl"
)

// Secret is a value that must not appear in a config: its name is what a finding reports, never
// the value.
type Secret struct {
	Name  string
	Value []byte
}

// Policy says what a config is checked against.
type Policy struct {
	// Role of the machine the config is for: control-plane or worker. A worker holds no private key
	// at all and no encryption configuration. Empty checks only what holds for every role.
	Role string
	// Channel the config is delivered through; its size limit applies (see Limits). The zero value:
	// no limit.
	Channel Limit
	// Forbidden values, for example the cluster's CA key for a worker (see ForbiddenSecrets).
	Forbidden []Secret
}

// Finding is one problem, with the JSON path in the config where it is.
type Finding struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (f Finding) String() string {
	if f.Path == "" {
		return f.Message
	}
	return f.Path + ": " + f.Message
}

// Error is a lint failure: every finding at once.
type Error struct {
	Findings []Finding
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ignition lint: %d finding(s)", len(e.Findings))
	for _, f := range e.Findings {
		b.WriteString("\n  ")
		b.WriteString(f.String())
	}
	return b.String()
}

// Limit is the size a delivery channel holds.
type Limit struct {
	Target string
	// Bytes the channel holds.
	Bytes int
	// Base64 is true when the channel carries the config base64-encoded, so the encoded size counts.
	Base64 bool
	// Gzip is true when the channel carries the config gzip-compressed, as a base64 data URL that a
	// small wrapper config merges (vSphere: privatenet.Wrap), so that size counts. The wrapper's own
	// few hundred bytes are the provider's to check when it creates the machine.
	Gzip bool
	What string
}

// Carried is the size of raw, a serialised config, as the channel carries it before its own base64
// (Base64): raw itself, or raw gzip-compressed in a base64 data URL (Gzip).
func (l Limit) Carried(raw []byte) int {
	if !l.Gzip {
		return len(raw)
	}
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression) // a valid level: no error
	_, _ = zw.Write(raw)                                   // a bytes.Buffer does not fail
	_ = zw.Close()
	return base64.StdEncoding.EncodedLen(z.Len())
}

// Limits per target. Targets without an entry (metal, qemu) have no limit kiln knows of.
var Limits = map[string]Limit{
	"aws":     {Target: "aws", Bytes: 16 << 10, What: "AWS user-data"},
	"vsphere": {Target: "vsphere", Bytes: 64 << 10, Base64: true, Gzip: true, What: "vSphere guestinfo (gzip, base64)"},
}

// Bytes parses a config (Ignition spec 3.0 to 3.5) with Ignition's own parser and validator and lints
// it. A config that does not parse or validate is an error; findings are returned as *Error.
func Bytes(raw []byte, p Policy) error {
	cfg, rpt, err := v3_5.ParseCompatibleVersion(raw)
	if err != nil {
		return fmt.Errorf("ignition: %w: %s", err, strings.TrimSpace(rpt.String()))
	}
	return Config(cfg, p.Channel.Carried(raw), p)
}

// Config lints a parsed config whose size, as its channel carries it (Limit.Carried), is size bytes.
func Config(cfg types.Config, size int, p Policy) error {
	return (&Linter{policy: p}).Config(cfg, size)
}

// Linter lints many configs that share most of their contents, such as the configs of one node pool,
// decoding each shared data URL once. It is safe for concurrent use.
type Linter struct {
	policy Policy
	// decoded holds the contents of the base config's data URLs; read-only after NewLinter.
	decoded map[sourceKey][]byte
}

type sourceKey struct {
	source, compression string
}

// NewLinter returns a Linter for configs derived from base: base's data URLs are decoded once here.
func NewLinter(p Policy, base types.Config) *Linter {
	l := &Linter{policy: p, decoded: map[sourceKey][]byte{}}
	visitResources(base, func(_ string, r types.Resource) {
		if r.Source == nil || !strings.HasPrefix(*r.Source, "data:") {
			return
		}
		if b, err := DecodeSource(*r.Source, r.Compression); err == nil {
			l.decoded[keyOf(r)] = b
		}
	})
	return l
}

func keyOf(r types.Resource) sourceKey {
	k := sourceKey{source: *r.Source}
	if r.Compression != nil {
		k.compression = *r.Compression
	}
	return k
}

// Config lints a parsed config whose size, as its channel carries it (Limit.Carried), is size bytes.
func (l *Linter) Config(cfg types.Config, size int) error {
	var fs []Finding
	fs = append(fs, checkSize(size, l.policy.Channel)...)
	fs = append(fs, checkSources(cfg)...)
	fs = append(fs, l.checkSecrets(cfg)...)
	if len(fs) == 0 {
		return nil
	}
	return &Error{Findings: fs}
}

func checkSize(size int, lim Limit) []Finding {
	if lim.Bytes <= 0 {
		return nil
	}
	n := size
	if lim.Base64 {
		n = base64.StdEncoding.EncodedLen(size)
	}
	if n <= lim.Bytes {
		return nil
	}
	return []Finding{{Message: fmt.Sprintf("config is %s (%d bytes), over the %s limit of %s (%d bytes)",
		kib(n), n, lim.What, kib(lim.Bytes), lim.Bytes)}}
}

func kib(n int) string { return fmt.Sprintf("%.1f KiB", float64(n)/1024) }

// resourceType is every place in a config that fetches something: files' contents and appends,
// merged and replacing configs, TLS certificate authorities, LUKS key files.
var resourceType = reflect.TypeFor[types.Resource]()

// visitResources calls fn for every Resource in cfg with its JSON path. It descends only into fields
// whose type can hold a Resource (see holdsResource), which keeps the walk cheap on large configs.
func visitResources(cfg types.Config, fn func(path string, r types.Resource)) {
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), path+"["+strconv.Itoa(i)+"]")
			}
		case reflect.Struct:
			if v.Type() == resourceType {
				fn(path, v.Interface().(types.Resource))
				return
			}
			for _, f := range resourceFields(v.Type()) {
				p := path
				if f.name != "" {
					if p != "" {
						p += "."
					}
					p += f.name
				}
				walk(v.Field(f.index), p)
			}
		}
	}
	walk(reflect.ValueOf(cfg), "")
}

// field is a struct field that can hold a Resource: its index and JSON name ("" when embedded).
type field struct {
	index int
	name  string
}

var (
	planMu sync.Mutex
	plans  = map[reflect.Type][]field{}
	holds  = map[reflect.Type]bool{}
)

// resourceFields returns the fields of struct type t that can hold a Resource, computed once per type.
func resourceFields(t reflect.Type) []field {
	planMu.Lock()
	defer planMu.Unlock()
	if p, ok := plans[t]; ok {
		return p
	}
	var p []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !holdsResource(f.Type, map[reflect.Type]bool{}) {
			continue
		}
		name := ""
		if !f.Anonymous {
			name, _, _ = strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
		}
		p = append(p, field{index: i, name: name})
	}
	plans[t] = p
	return p
}

// holdsResource reports whether a value of type t can contain a Resource. Callers hold planMu.
func holdsResource(t reflect.Type, seen map[reflect.Type]bool) bool {
	if h, ok := holds[t]; ok {
		return h
	}
	if seen[t] {
		return false
	}
	seen[t] = true
	var h bool
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		h = holdsResource(t.Elem(), seen)
	case reflect.Struct:
		h = t == resourceType
		for i := 0; i < t.NumField() && !h; i++ {
			h = holdsResource(t.Field(i).Type, seen)
		}
	}
	holds[t] = h
	return h
}

func checkSources(cfg types.Config) []Finding {
	var fs []Finding
	visitResources(cfg, func(path string, r types.Resource) {
		if r.Source == nil || *r.Source == "" {
			return
		}
		u, err := url.Parse(*r.Source)
		if err != nil {
			fs = append(fs, Finding{Path: path + ".source", Message: "not a URL"})
			return
		}
		switch u.Scheme {
		case "data":
			return
		case "https":
			if r.Verification.Hash == nil || *r.Verification.Hash == "" {
				fs = append(fs, Finding{Path: path + ".verification.hash",
					Message: fmt.Sprintf("remote source %s has no verification hash; add sha256-… or sha512-…", redactURL(u))})
			}
		default:
			fs = append(fs, Finding{Path: path + ".source",
				Message: fmt.Sprintf("remote source %s uses %q; only https (with a verification hash) is allowed", redactURL(u), u.Scheme)})
		}
	})
	return fs
}

// redactURL drops the query and user info, where presigned URLs and passwords live.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}

var (
	pemPrivateKey      = regexp.MustCompile(`-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----`)
	encryptionConfKind = regexp.MustCompile(`(?m)^kind:\s*EncryptionConfiguration\s*$`)
	tokenSecretType    = []byte("bootstrap.kubernetes.io/token")
	kubeconfigKeyData  = regexp.MustCompile(`(?m)^\s*client-key-data:\s*"?([A-Za-z0-9+/=]+)"?\s*$`)
	kubeconfigCertData = regexp.MustCompile(`(?m)^\s*client-certificate-data:\s*"?([A-Za-z0-9+/=]+)"?\s*$`)
)

// Cheap pre-checks before the regular expressions, which are slow on large contents.
var (
	privateKeyMarker  = []byte("PRIVATE KEY-----")
	encryptionMarker  = []byte("EncryptionConfiguration")
	certificateMarker = []byte("-----BEGIN CERTIFICATE-----")
	clientCertMarker  = []byte("client-certificate-data:")
	clientKeyMarker   = []byte("client-key-data:")
)

// content is one piece of text a machine receives, with where it is in the config.
type content struct {
	path string
	data []byte
	// file is the file's path on the node, for a file of storage.files.
	file string
}

// contents decodes every inline piece of the config: data URLs (gzip-compressed or not), unit and
// drop-in contents, SSH keys.
func (l *Linter) contents(cfg types.Config) ([]content, []Finding) {
	var out []content
	var fs []Finding
	visitResources(cfg, func(path string, r types.Resource) {
		if r.Source == nil || !strings.HasPrefix(*r.Source, "data:") {
			return
		}
		b, ok := l.decoded[keyOf(r)]
		if !ok {
			var err error
			if b, err = DecodeSource(*r.Source, r.Compression); err != nil {
				fs = append(fs, Finding{Path: path + ".source", Message: err.Error()})
				return
			}
		}
		out = append(out, content{path: path, data: b})
	})
	for i := range out {
		var n int
		if _, err := fmt.Sscanf(out[i].path, "storage.files[%d].contents", &n); err == nil && n < len(cfg.Storage.Files) {
			out[i].file = cfg.Storage.Files[n].Path
		}
	}
	for i, u := range cfg.Systemd.Units {
		if u.Contents != nil {
			out = append(out, content{path: fmt.Sprintf("systemd.units[%d].contents", i), data: []byte(*u.Contents)})
		}
		for j, d := range u.Dropins {
			if d.Contents != nil {
				out = append(out, content{path: fmt.Sprintf("systemd.units[%d].dropins[%d].contents", i, j), data: []byte(*d.Contents)})
			}
		}
	}
	for i, u := range cfg.Passwd.Users {
		for j, k := range u.SSHAuthorizedKeys {
			out = append(out, content{path: fmt.Sprintf("passwd.users[%d].sshAuthorizedKeys[%d]", i, j), data: []byte(k)})
		}
	}
	return out, fs
}

// DecodeSource returns the bytes a data URL stands for, uncompressed.
func DecodeSource(src string, compression *string) ([]byte, error) {
	du, err := dataurl.DecodeString(src)
	if err != nil {
		return nil, fmt.Errorf("bad data URL: %v", err)
	}
	if compression == nil || *compression == "" {
		return du.Data, nil
	}
	if *compression != "gzip" {
		return nil, fmt.Errorf("unknown compression %q", *compression)
	}
	zr, err := gzip.NewReader(bytes.NewReader(du.Data))
	if err != nil {
		return nil, fmt.Errorf("bad gzip data: %v", err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("bad gzip data: %v", err)
	}
	return b, nil
}

func (l *Linter) checkSecrets(cfg types.Config) []Finding {
	p := l.policy
	cs, fs := l.contents(cfg)
	needles := make([]needle, 0, 2*len(p.Forbidden))
	for _, s := range p.Forbidden {
		v := bytes.TrimSpace(s.Value)
		if len(v) < 8 { // too short to search for without false alarms; never a real key
			continue
		}
		needles = append(needles, needle{name: s.Name, value: v},
			needle{name: s.Name + " (base64)", value: []byte(base64.StdEncoding.EncodeToString(s.Value))})
	}
	for _, c := range cs {
		if bytes.Contains(c.data, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
			fs = append(fs, Finding{Path: c.path, Message: "holds an SSH private key; no node needs one"})
		}
		fs = append(fs, checkMasters(c, p.Role)...)
		if p.Role == v1alpha1.RoleWorker {
			agentKey := c.file == reboot.DefaultLockKey
			if ((bytes.Contains(c.data, privateKeyMarker) && hasPEMPrivateKey(c.data)) && !agentKey) || hasKubeconfigKey(c.data) {
				fs = append(fs, Finding{Path: c.path, Message: "holds a private key; a worker gets its key pair by TLS bootstrap and holds none but its reboot agent's (" + reboot.DefaultLockKey + ")"})
			}
			fs = append(fs, checkWorkerClientCerts(c)...)
			if bytes.Contains(c.data, encryptionMarker) && encryptionConfKind.Match(c.data) {
				fs = append(fs, Finding{Path: c.path, Message: "holds an EncryptionConfiguration; only control-plane nodes hold the encryption key"})
			}
			if bytes.Contains(c.data, tokenSecretType) {
				fs = append(fs, Finding{Path: c.path, Message: "holds bootstrap token Secrets; only control-plane nodes hold them"})
			}
		}
		for _, n := range needles {
			if bytes.Contains(c.data, n.value) {
				fs = append(fs, Finding{Path: c.path, Message: fmt.Sprintf("holds the %s, which a %s must not hold", n.name, roleName(p.Role))})
			}
		}
	}
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Path < fs[j].Path })
	return fs
}

// checkWorkerClientCerts reports the client certificates in c, a piece of a worker's config, other
// than its reboot agent's: a user secrets.RebootAgentPrefix+<node> in one group of the form
// rebootlock.Group, which RBAC lets hold its pool's reboot lock and nothing else.
func checkWorkerClientCerts(c content) []Finding {
	var fs []Finding
	for _, cert := range certificates(c.data) {
		if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
			continue
		}
		org := cert.Subject.Organization
		if !strings.HasPrefix(cert.Subject.CommonName, secrets.RebootAgentPrefix) || len(org) != 1 || !strings.HasPrefix(org[0], rebootlock.Group("")) {
			fs = append(fs, Finding{Path: c.path, Message: fmt.Sprintf("holds a client certificate for %s in %v; a worker holds none but its reboot agent's",
				cert.Subject.CommonName, org)})
		}
	}
	return fs
}

// MaxMastersLifetime is the longest a system:masters client certificate on a control-plane node may
// be valid, NotBefore to NotAfter: the cluster init's grant lives as long as the node's bootstrap token
// (at most v1alpha1.MaxBootstrapTokenTTL), from pki.ClockSkew before it was issued. No worker may hold
// one at all.
const MaxMastersLifetime = v1alpha1.MaxBootstrapTokenTTL + pki.ClockSkew

const mastersGroup = "system:masters"

// checkMasters reports the system:masters client certificates in c that a node of role must not hold.
func checkMasters(c content, role string) []Finding {
	var fs []Finding
	for _, cert := range certificates(c.data) {
		if !slices.Contains(cert.Subject.Organization, mastersGroup) {
			continue
		}
		lifetime := cert.NotAfter.Sub(cert.NotBefore)
		switch {
		case role == v1alpha1.RoleWorker:
			fs = append(fs, Finding{Path: c.path, Message: fmt.Sprintf("holds a %s client certificate (%s); no worker may", mastersGroup, cert.Subject.CommonName)})
		case lifetime > MaxMastersLifetime:
			fs = append(fs, Finding{Path: c.path, Message: fmt.Sprintf("holds a %s client certificate (%s) valid for %v; a node may hold one valid for at most %v",
				mastersGroup, cert.Subject.CommonName, lifetime, MaxMastersLifetime)})
		}
	}
	return fs
}

// certificates are the X.509 certificates in data: PEM blocks, and the client certificates of a
// kubeconfig (client-certificate-data, base64 PEM).
func certificates(data []byte) []*x509.Certificate {
	if !bytes.Contains(data, certificateMarker) && !bytes.Contains(data, clientCertMarker) {
		return nil
	}
	pems := [][]byte{data}
	for _, m := range kubeconfigCertData.FindAllSubmatch(data, -1) {
		if b, err := base64.StdEncoding.DecodeString(string(m[1])); err == nil {
			pems = append(pems, b)
		}
	}
	var out []*x509.Certificate
	for _, rest := range pems {
		for {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
				out = append(out, cert)
			}
		}
	}
	return out
}

// hasKubeconfigKey reports whether data is a kubeconfig that holds a client key (client-key-data, a
// base64 PEM private key).
func hasKubeconfigKey(data []byte) bool {
	if !bytes.Contains(data, clientKeyMarker) {
		return false
	}
	for _, m := range kubeconfigKeyData.FindAllSubmatch(data, -1) {
		if b, err := base64.StdEncoding.DecodeString(string(m[1])); err == nil && hasPEMPrivateKey(b) {
			return true
		}
	}
	return false
}

// hasPEMPrivateKey reports whether data holds a PEM private key other than an OpenSSH one (which is
// reported on its own).
func hasPEMPrivateKey(data []byte) bool {
	for _, m := range pemPrivateKey.FindAll(data, -1) {
		if !bytes.Contains(m, []byte("OPENSSH")) {
			return true
		}
	}
	return false
}

type needle struct {
	name  string
	value []byte
}

func roleName(role string) string {
	if role == "" {
		return "node"
	}
	return role + " node"
}
