package harden

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Record is the image's hardening provenance, written at Provenance: the level it was built at, the
// rules applied and the ones skipped.
type Record struct {
	Version int      `json:"version"`
	Level   Level    `json:"level"`
	Rules   []string `json:"rules"`
	Skipped []string `json:"skipped,omitempty"`
}

const recordVersion = 1

func provenanceStep(p Profile, rules []Rule) Step {
	rec := Record{Version: recordVersion, Level: p.Level, Rules: []string{}, Skipped: p.Skip}
	for _, r := range rules {
		rec.Rules = append(rec.Rules, r.ID)
	}
	data, _ := json.MarshalIndent(rec, "", "  ") // plain strings: cannot fail
	return file(Provenance, 0o644, append(data, '\n'), "what this image was hardened with: the level, its rules and the skipped ones")
}

// ParseRecord reads a Provenance file.
func ParseRecord(data []byte) (Record, error) {
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return Record{}, fmt.Errorf("harden: %s: %w", Provenance, err)
	}
	if rec.Version != recordVersion {
		return Record{}, fmt.Errorf("harden: %s: version %d, this kiln reads version %d", Provenance, rec.Version, recordVersion)
	}
	return rec, nil
}

// Profile returns kiln's profile at the record's level with its skipped rules: what an image built
// with the record must still look like.
func (r Record) Profile() (Profile, error) {
	p, err := ProfileAt(r.Level)
	if err != nil {
		return Profile{}, err
	}
	p.Skip = r.Skipped
	return p, p.Validate()
}

// Section names of the probe script's output.
const (
	secSysctl   = "sysctl"
	secModprobe = "modprobe"
	secModules  = "modules"
	secUnits    = "units"
	secAudit    = "audit"
	secModes    = "modes"
	secProbe    = "probe"
)

// ProbeScript is the shell script that reads the effective state the rules are checked against, in
// one run as root: `sysctl -a`, `modprobe -n -v` of each blocked module and the loaded ones,
// `systemctl is-enabled`/`is-active` of each unit, `auditctl -l`, the owner and mode of each file, and
// each Probe's command. VerifyRules judges its output. It exits 0 whatever it finds.
func ProbeScript(rules []Rule) string {
	var b strings.Builder
	section := func(name string) { fmt.Fprintf(&b, "echo '### %s'\n", name) }
	section(secSysctl)
	b.WriteString("sysctl -a 2>/dev/null\n")
	var modules, units, modes []string
	audit := false
	for _, r := range rules {
		modules = append(modules, r.Modules...)
		units = append(units, r.Services...)
		for _, m := range r.Modes {
			modes = append(modes, m.Path)
		}
		audit = audit || len(r.AuditRules) > 0
	}
	if len(modules) > 0 {
		section(secModprobe)
		fmt.Fprintf(&b, "for m in %s; do printf '%%s: ' \"$m\"; modprobe -n -v \"$m\" 2>&1 | tr '\\n' ' '; echo; done\n", strings.Join(modules, " "))
		section(secModules)
		b.WriteString("cat /proc/modules\n")
	}
	if len(units) > 0 {
		section(secUnits)
		fmt.Fprintf(&b, "for u in %s; do echo \"$u $(systemctl is-enabled \"$u\" 2>&1) $(systemctl is-active \"$u\" 2>&1)\"; done\n", strings.Join(units, " "))
	}
	if audit {
		section(secAudit)
		b.WriteString("auditctl -l 2>&1\n")
	}
	if len(modes) > 0 {
		section(secModes)
		fmt.Fprintf(&b, "for p in %s; do stat -c '%%n %%a %%U %%G' \"$p\" 2>/dev/null || echo \"$p missing\"; done\n", strings.Join(modes, " "))
	}
	for _, r := range rules {
		for i, p := range r.Probes {
			section(fmt.Sprintf("%s %s/%d", secProbe, r.ID, i))
			fmt.Fprintf(&b, "( %s ) 2>&1\n", p.Command)
		}
	}
	b.WriteString("true\n")
	return b.String()
}

// probeOutput is the probe script's output split at its section markers.
type probeOutput map[string][]string

func parseProbeOutput(out []byte) probeOutput {
	po := probeOutput{}
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(line, "### "); ok {
			cur = strings.TrimSpace(name)
			po[cur] = nil // a section printed twice: its last output counts
			continue
		}
		if cur != "" && strings.TrimSpace(line) != "" {
			po[cur] = append(po[cur], strings.TrimRight(line, "\r"))
		}
	}
	return po
}

// RuleResult is one rule and its drifts on a machine: none means it passes.
type RuleResult struct {
	Rule   Rule
	Drifts []Drift
}

// CheckRules judges the probe script's output rule by rule. A rule with nothing to check (an
// exception that applies nothing) passes.
func CheckRules(rules []Rule, probeOut []byte) []RuleResult {
	po := parseProbeOutput(probeOut)
	sysctl := map[string]string{}
	for _, l := range po[secSysctl] {
		if k, v, ok := strings.Cut(l, "="); ok {
			sysctl[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), " ")
		}
	}
	modprobe := map[string]string{}
	for _, l := range po[secModprobe] {
		if m, v, ok := strings.Cut(l, ":"); ok {
			modprobe[m] = strings.TrimSpace(v)
		}
	}
	loaded := map[string]bool{}
	for _, l := range po[secModules] {
		if f := strings.Fields(l); len(f) > 0 {
			loaded[f[0]] = true
		}
	}
	units := map[string][]string{}
	for _, l := range po[secUnits] {
		if f := strings.Fields(l); len(f) > 0 {
			units[f[0]] = f[1:]
		}
	}
	var audit []auditKey
	for _, l := range po[secAudit] {
		if k, ok := parseAuditRule(l); ok {
			audit = append(audit, k)
		}
	}
	modes := map[string][]string{}
	for _, l := range po[secModes] {
		if f := strings.Fields(l); len(f) > 0 {
			modes[f[0]] = f[1:]
		}
	}

	var out []RuleResult
	for _, r := range rules {
		res := RuleResult{Rule: r}
		add := func(key, want, got, format string, args ...any) {
			res.Drifts = append(res.Drifts, Drift{Key: r.ID + " " + key, Want: want, Got: got, Message: fmt.Sprintf(format, args...)})
		}
		for _, s := range r.Sysctls {
			got, ok := sysctl[s.Key]
			switch {
			case !ok:
				add(s.Key, s.Value, "", "not in sysctl -a, want %s", s.Value)
			case got != s.Value:
				add(s.Key, s.Value, got, "is %s, want %s", got, s.Value)
			}
		}
		for _, m := range r.Modules {
			if got := modprobe[m]; !strings.Contains(got, "install /bin/false") {
				add(m, "install /bin/false", got, "modprobe -n -v %s says %q, want it to run /bin/false", m, got)
			}
			if loaded[strings.ReplaceAll(m, "-", "_")] {
				add(m, "not loaded", "loaded", "is loaded")
			}
		}
		for _, u := range r.Services {
			got, ok := units[u]
			if !ok || len(got) < 2 || got[0] != "enabled" || got[1] != "active" {
				add(u, "enabled active", strings.Join(got, " "), "is %q, want enabled and active", strings.Join(got, " "))
			}
		}
		for _, a := range r.AuditRules {
			want, _ := parseAuditRule(a)
			if !slices.ContainsFunc(audit, want.equal) {
				add("audit", a, "", "auditctl -l lacks %s", a)
			}
		}
		for _, m := range r.Modes {
			got, ok := modes[m.Path]
			want := []string{strconv.FormatUint(uint64(m.Perm), 8), m.Owner, m.Group}
			switch {
			case !ok:
				add(m.Path, strings.Join(want, " "), "", "not checked (no stat output)")
			case len(got) == 1 && got[0] == "missing":
				if !m.Optional {
					add(m.Path, strings.Join(want, " "), "missing", "is missing")
				}
			case !slices.Equal(got, want):
				add(m.Path, strings.Join(want, " "), strings.Join(got, " "), "is %q (mode owner group), want %q", strings.Join(got, " "), strings.Join(want, " "))
			}
		}
		for i, p := range r.Probes {
			lines := po[fmt.Sprintf("%s %s/%d", secProbe, r.ID, i)]
			got := ""
			if len(lines) > 0 {
				got = strings.TrimSpace(lines[len(lines)-1])
			}
			if got != p.Want {
				add(p.Name, p.Want, got, "`%s` printed %q, want %q", p.Command, strings.Join(lines, "\n"), p.Want)
			}
		}
		out = append(out, res)
	}
	return out
}

// VerifyRules returns every drift of the machine from the rules, in rule order.
func VerifyRules(rules []Rule, probeOut []byte) []Drift {
	var out []Drift
	for _, r := range CheckRules(rules, probeOut) {
		out = append(out, r.Drifts...)
	}
	return out
}

// auditKey is what identifies an audit rule, written or as auditctl -l prints it: a watch's path,
// permissions and key, or a syscall rule's list, action, arch, syscalls and key. auditctl prints the
// other fields in its own way (auid!=-1 for auid!=unset, -F key= for -k), so they are not compared.
type auditKey struct {
	watch, perms, list, arch, key string
	syscalls                      []string
}

func (a auditKey) equal(b auditKey) bool {
	return a.watch == b.watch && a.perms == b.perms && a.list == b.list && a.arch == b.arch && a.key == b.key && slices.Equal(a.syscalls, b.syscalls)
}

func parseAuditRule(line string) (auditKey, bool) {
	f := strings.Fields(line)
	var k auditKey
	for i := 0; i+1 < len(f); i++ {
		v := f[i+1]
		switch f[i] {
		case "-w":
			k.watch = strings.TrimSuffix(v, "/")
		case "-p":
			p := []byte(v)
			slices.Sort(p)
			k.perms = string(p)
		case "-a":
			k.list = v
		case "-S":
			k.syscalls = append(k.syscalls, strings.Split(v, ",")...)
		case "-k":
			k.key = v
		case "-F":
			if a, ok := strings.CutPrefix(v, "arch="); ok {
				k.arch = a
			}
			if key, ok := strings.CutPrefix(v, "key="); ok {
				k.key = key
			}
		default:
			continue
		}
		i++
	}
	slices.Sort(k.syscalls)
	return k, k.watch != "" || k.list != ""
}
