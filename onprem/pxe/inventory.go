package pxe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/api/strictyaml"
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"go.yaml.in/yaml/v3"
)

// Inventory format version.
const (
	APIVersion    = "kiln.dev/v1alpha1"
	InventoryKind = "MachineInventory"
)

// Inventory is machines.yaml: the machines that may boot from kiln, and what they boot.
type Inventory struct {
	APIVersion string    `yaml:"apiVersion" json:"apiVersion"`
	Kind       string    `yaml:"kind" json:"kind"`
	Profiles   []Profile `yaml:"profiles,omitempty" json:"profiles,omitempty"`
	Groups     []Group   `yaml:"groups,omitempty" json:"groups,omitempty"`
	Machines   []Machine `yaml:"machines" json:"machines"`
}

// Profile is what a machine boots: a kernel and initrds from the assets directory and kernel arguments.
// kiln adds ignition.config.url (with the machine's identity), ignition.firstboot and
// ignition.platform.id=metal.
type Profile struct {
	Name string `yaml:"name" json:"name"`
	// Kernel is an asset path (relative to the assets directory).
	Kernel string `yaml:"kernel" json:"kernel"`
	// Initrd are asset paths, loaded in order.
	Initrd []string `yaml:"initrd,omitempty" json:"initrd,omitempty"`
	// Args are kernel arguments.
	Args []string `yaml:"args,omitempty" json:"args,omitempty"`
}

// Group points the machines its selector matches to a profile. A machine gets the profile of the
// matching group with the most selector terms; a group with an empty selector is the default for every
// machine of the inventory (there is none unless one is written).
type Group struct {
	Name     string   `yaml:"name" json:"name"`
	Profile  string   `yaml:"profile" json:"profile"`
	Selector Selector `yaml:"selector,omitempty" json:"selector,omitempty"`
}

// Selector terms must all match. Empty terms match everything.
type Selector struct {
	MAC      string            `yaml:"mac,omitempty" json:"mac,omitempty"`
	UUID     string            `yaml:"uuid,omitempty" json:"uuid,omitempty"`
	Hostname string            `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	Role     string            `yaml:"role,omitempty" json:"role,omitempty"`
	Pool     string            `yaml:"pool,omitempty" json:"pool,omitempty"`
	Labels   map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// Machine is one machine of the inventory.
type Machine struct {
	// Name is the node name the machine gets (a DNS label).
	Name string `yaml:"name" json:"name"`
	// MAC of the NIC it boots from.
	MAC string `yaml:"mac" json:"mac"`
	// UUID is the SMBIOS system UUID, if known.
	UUID string `yaml:"uuid,omitempty" json:"uuid,omitempty"`
	// Hostname the machine reports, if known.
	Hostname string `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	// Role is control-plane or worker.
	Role string `yaml:"role" json:"role"`
	// Pool is the node pool ("control-plane" for the control plane).
	Pool   string            `yaml:"pool,omitempty" json:"pool,omitempty"`
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// BMC is how its power is controlled (for the metal provider).
	BMC *BMC `yaml:"bmc,omitempty" json:"bmc,omitempty"`
}

// BMC is a machine's baseboard management controller. The password is never in the inventory: it is
// read from PasswordFile when needed.
type BMC struct {
	// Driver is redfish or ipmi.
	Driver string `yaml:"driver" json:"driver"`
	// Address: a URL for redfish (https://bmc.example), host[:port] for ipmi.
	Address string `yaml:"address" json:"address"`
	// SystemID is the Redfish system to control; defaults to the only one.
	SystemID     string `yaml:"systemID,omitempty" json:"systemID,omitempty"`
	Username     string `yaml:"username,omitempty" json:"username,omitempty"`
	PasswordFile string `yaml:"passwordFile,omitempty" json:"passwordFile,omitempty"`
	// Insecure allows a Redfish BMC over http:// (refused without it: the password would travel in
	// clear) and skips TLS verification of an https:// BMC's self-signed certificate. Loading an
	// inventory with it set warns, an error with --strict.
	Insecure bool `yaml:"insecure,omitempty" json:"insecure,omitempty"`
}

var (
	dnsLabel  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	uuidRE    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	labelKey  = regexp.MustCompile(`^([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelVal  = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
	hostnameR = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?$`)
)

// maxInventory bounds the size of machines.yaml (see readlimit.Inventory).
const maxInventory = readlimit.Inventory

// DecodeInventory reads machines.yaml strictly: unknown fields, duplicate keys, wrong types and every
// invalid value are errors naming the file, the field's path and its line. Every finding is reported at
// once (errors.Join). MACs and UUIDs are normalised to lower case.
func DecodeInventory(data []byte, filename string) (*Inventory, error) {
	inv, _, err := DecodeInventoryFindings(data, filename)
	return inv, err
}

// DecodeInventoryFindings is DecodeInventory that also returns the warnings: settings that are
// allowed but weaken security (a Redfish BMC over http:// or without TLS verification, IPMI), each
// naming its machine, with its path, line and column like the errors (FILE:LINE:COL: PATH: MESSAGE,
// strictyaml's findings). A command with --strict treats them as errors. The findings of an invalid
// inventory are a *strictyaml.Error.
func DecodeInventoryFindings(data []byte, filename string) (*Inventory, []strictyaml.Finding, error) {
	if len(data) > maxInventory {
		return nil, nil, fmt.Errorf("%s: %d bytes, more than the %d allowed", filename, len(data), maxInventory)
	}
	var inv Inventory
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&inv); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("%s: empty inventory (want apiVersion: %s, kind: %s)", filename, APIVersion, InventoryKind)
		}
		return nil, nil, fmt.Errorf("%s: %s", filename, strings.ReplaceAll(err.Error(), "\n", ";"))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("%s: more than one YAML document", filename)
	}
	// Positions are looked up in the document's node tree, parsed only when there is a finding: the
	// tree is as large as the decoding was, and most inventories have nothing to report.
	var root *yaml.Node
	var errs, warnings []strictyaml.Finding
	finding := func(sev strictyaml.Severity, p, format string, args ...any) strictyaml.Finding {
		if root == nil {
			root = new(yaml.Node)
			if err := yaml.Unmarshal(data, root); err != nil {
				root = new(yaml.Node) // decoded above, so not expected; the findings go without positions
			}
		}
		at := positionOf(root, p)
		return strictyaml.Finding{Path: p, Line: at.line, Column: at.col, Severity: sev, Message: fmt.Sprintf(format, args...)}
	}
	bad := func(p, format string, args ...any) {
		errs = append(errs, finding(strictyaml.SeverityError, p, format, args...))
	}
	warn := func(p, format string, args ...any) {
		warnings = append(warnings, finding(strictyaml.SeverityWarning, p, format, args...))
	}
	inv.validate(bad, warn)
	if len(errs) > 0 {
		return nil, warnings, &strictyaml.Error{File: filename, Findings: errs}
	}
	return &inv, warnings, nil
}

func (inv *Inventory) validate(bad, warn func(p, format string, args ...any)) {
	if inv.APIVersion != APIVersion {
		bad("apiVersion", "is %q, want %q", inv.APIVersion, APIVersion)
	}
	if inv.Kind != InventoryKind {
		bad("kind", "is %q, want %q", inv.Kind, InventoryKind)
	}
	profiles := map[string]bool{}
	for i := range inv.Profiles {
		p := &inv.Profiles[i]
		at := fmt.Sprintf("profiles[%d]", i)
		if !dnsLabel.MatchString(p.Name) {
			bad(at+".name", "%q is not a lower-case DNS label", p.Name)
		} else if profiles[p.Name] {
			bad(at+".name", "duplicate profile %q", p.Name)
		}
		profiles[p.Name] = true
		if err := checkAsset(p.Kernel); err != nil {
			bad(at+".kernel", "%v", err)
		}
		for j, f := range p.Initrd {
			if err := checkAsset(f); err != nil {
				bad(fmt.Sprintf("%s.initrd[%d]", at, j), "%v", err)
			}
		}
		for j, a := range p.Args {
			if a == "" || strings.ContainsAny(a, " \t\r\n\"'$;&|`\\") {
				bad(fmt.Sprintf("%s.args[%d]", at, j), "%q: one argument without spaces, quotes or iPXE/shell characters", a)
			}
			if strings.HasPrefix(a, "ignition.config.url=") {
				bad(fmt.Sprintf("%s.args[%d]", at, j), "ignition.config.url is set by kiln for each machine")
			}
		}
	}
	groups := map[string]bool{}
	for i := range inv.Groups {
		g := &inv.Groups[i]
		at := fmt.Sprintf("groups[%d]", i)
		if !dnsLabel.MatchString(g.Name) {
			bad(at+".name", "%q is not a lower-case DNS label", g.Name)
		} else if groups[g.Name] {
			bad(at+".name", "duplicate group %q", g.Name)
		}
		groups[g.Name] = true
		if !profiles[g.Profile] {
			bad(at+".profile", "no profile named %q", g.Profile)
		}
		if g.Selector.MAC != "" {
			mac, err := NormalizeMAC(g.Selector.MAC)
			if err != nil {
				bad(at+".selector.mac", "%v", err)
			}
			g.Selector.MAC = mac
		}
		g.Selector.UUID = strings.ToLower(g.Selector.UUID)
	}
	names := map[string]bool{}
	macs := map[string]bool{}
	for i := range inv.Machines {
		m := &inv.Machines[i]
		at := fmt.Sprintf("machines[%d]", i)
		if !dnsLabel.MatchString(m.Name) {
			bad(at+".name", "%q is not a lower-case DNS label", m.Name)
		} else if names[m.Name] {
			bad(at+".name", "duplicate machine name %q", m.Name)
		}
		names[m.Name] = true
		mac, err := NormalizeMAC(m.MAC)
		if err != nil {
			bad(at+".mac", "%v", err)
		} else if macs[mac] {
			bad(at+".mac", "duplicate MAC %s", mac)
		}
		m.MAC = mac
		macs[mac] = true
		if m.UUID != "" {
			if !uuidRE.MatchString(m.UUID) {
				bad(at+".uuid", "%q is not a UUID", m.UUID)
			}
			m.UUID = strings.ToLower(m.UUID)
		}
		if m.Hostname != "" && !hostnameR.MatchString(m.Hostname) {
			bad(at+".hostname", "%q is not a host name", m.Hostname)
		}
		switch m.Role {
		case v1alpha1.RoleControlPlane:
			if m.Pool == "" {
				m.Pool = v1alpha1.RoleControlPlane
			}
		case v1alpha1.RoleWorker:
			if m.Pool == "" {
				bad(at+".pool", "a worker needs its node pool")
			}
		default:
			bad(at+".role", "%q: want %s or %s", m.Role, v1alpha1.RoleControlPlane, v1alpha1.RoleWorker)
		}
		if m.Pool != "" && !dnsLabel.MatchString(m.Pool) {
			bad(at+".pool", "%q is not a lower-case DNS label", m.Pool)
		}
		for k, v := range m.Labels {
			if !labelKey.MatchString(k) || !labelVal.MatchString(v) {
				bad(at+".labels."+k, "%q=%q is not a valid label", k, v)
			}
		}
		if m.BMC != nil {
			checkBMC(m.Name, m.BMC, at+".bmc", bad, warn)
		}
	}
}

// checkBMC checks the BMC of machine name at path at: errors go to bad, and what is allowed but
// weakens security to warn, naming the machine.
func checkBMC(name string, b *BMC, at string, bad, warn func(p, format string, args ...any)) {
	switch b.Driver {
	case "redfish":
		u, err := url.Parse(b.Address)
		switch {
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			bad(at+".address", "%q: want the BMC's https:// URL", b.Address)
		case u.User != nil:
			bad(at+".address", "credentials do not belong in the URL: use username and passwordFile")
		case u.Scheme == "http" && !b.Insecure:
			bad(at+".address", "%q: Redfish over http:// sends the BMC password in clear: use https://, or set insecure: true to allow it", b.Address)
		case u.Scheme == "http":
			warn(at+".insecure", "machine %s: Redfish over http:// (%s) sends the BMC password in clear", name, b.Address)
		case b.Insecure:
			warn(at+".insecure", "machine %s: the TLS certificate of its Redfish BMC (%s) is not verified", name, b.Address)
		}
	case "ipmi":
		if b.Address == "" || strings.ContainsAny(b.Address, " /") {
			bad(at+".address", "%q: want host or host:port", b.Address)
		}
		warn(at+".driver", "machine %s: IPMI (v2.0, lanplus) hands a hash of the BMC password to anyone who asks (RAKP, CVE-2013-4786) "+
			"and never authenticates the BMC: use redfish over https:// where the BMC has it", name)
	default:
		bad(at+".driver", "%q: want redfish or ipmi", b.Driver)
	}
}

// checkAsset refuses an asset path that is empty, absolute in a way that leaves the assets, or climbs.
func checkAsset(p string) error {
	if p == "" {
		return errors.New("empty asset path")
	}
	if strings.Contains(p, "\\") || strings.ContainsAny(p, "?#% \t\r\n") {
		return fmt.Errorf("%q: an asset path is plain (no spaces, %%, ? or #)", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("%q climbs out of the assets directory", p)
		}
	}
	if clean := path.Clean("/" + p); clean == "/" {
		return fmt.Errorf("%q names no file", p)
	}
	return nil
}

// NormalizeMAC returns mac as six lower-case colon-separated hex octets.
func NormalizeMAC(mac string) (string, error) {
	hw, err := net.ParseMAC(strings.ReplaceAll(mac, "-", ":"))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not an Ethernet MAC address", mac)
	}
	return hw.String(), nil
}

// position is where a node is in a YAML document: 1-based line and column.
type position struct{ line, col int }

// positionOf is the position of path p (machines[0].labels.example.com/rack) in the document root, or
// of its nearest parent that is in it; 1:1 when none is. A mapping entry's position is its key's.
func positionOf(root *yaml.Node, p string) position {
	at := position{line: 1, col: 1}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for p != "" && n != nil {
		switch {
		case strings.HasPrefix(p, "["):
			end := strings.IndexByte(p, ']')
			i, err := strconv.Atoi(p[1:max(end, 1)])
			if end < 0 || err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return at
			}
			n, p = n.Content[i], strings.TrimPrefix(p[end+1:], ".")
			at = position{n.Line, n.Column}
		case n.Kind == yaml.MappingNode:
			// The longest key that p starts with, followed by the end, "." or "[": label keys hold dots.
			var key, val *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if rest, ok := strings.CutPrefix(p, k); ok && (rest == "" || rest[0] == '.' || rest[0] == '[') &&
					(key == nil || len(k) > len(key.Value)) {
					key, val = n.Content[i], n.Content[i+1]
				}
			}
			if key == nil {
				return at
			}
			at = position{key.Line, key.Column}
			n, p = val, strings.TrimPrefix(p[len(key.Value):], ".")
		default:
			return at
		}
	}
	return at
}

// Lookup finds a machine by MAC (any notation).
func (inv *Inventory) Lookup(mac string) (*Machine, bool) {
	mac, err := NormalizeMAC(mac)
	if err != nil {
		return nil, false
	}
	for i := range inv.Machines {
		if inv.Machines[i].MAC == mac {
			return &inv.Machines[i], true
		}
	}
	return nil, false
}

// Find finds a machine by name or by MAC (any notation).
func (inv *Inventory) Find(nameOrMAC string) (*Machine, bool) {
	for i := range inv.Machines {
		if inv.Machines[i].Name == nameOrMAC {
			return &inv.Machines[i], true
		}
	}
	return inv.Lookup(nameOrMAC)
}

// Identity is what a booting machine says about itself.
type Identity struct {
	MAC      string
	UUID     string
	Hostname string
}

// Match picks the profile of an inventory machine: of the groups whose selector matches, the one with
// the most terms (the first in the file on a tie). It returns false when no group matches.
func (inv *Inventory) Match(m *Machine, id Identity) (*Group, *Profile, bool) {
	best, bestScore := -1, -1
	for i := range inv.Groups {
		score, ok := inv.Groups[i].Selector.matches(m, id)
		if ok && score > bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return nil, nil, false
	}
	g := &inv.Groups[best]
	for i := range inv.Profiles {
		if inv.Profiles[i].Name == g.Profile {
			return g, &inv.Profiles[i], true
		}
	}
	return nil, nil, false
}

// matches reports whether every term of s matches the machine (as inventoried and as it identifies
// itself), and how many terms s has.
func (s Selector) matches(m *Machine, id Identity) (int, bool) {
	n := 0
	term := func(want, got string) bool {
		if want == "" {
			return true
		}
		n++
		return strings.EqualFold(want, got)
	}
	uuid := m.UUID
	if uuid == "" {
		uuid = id.UUID
	}
	host := m.Hostname
	if host == "" {
		host = id.Hostname
	}
	ok := term(s.MAC, m.MAC) && term(s.UUID, uuid) && term(s.Hostname, host) &&
		term(s.Role, m.Role) && term(s.Pool, m.Pool)
	if !ok {
		return 0, false
	}
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		n++
		if v, ok := m.Labels[k]; !ok || v != s.Labels[k] {
			return 0, false
		}
	}
	return n, true
}
