package harden

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Drift is one difference between the profile and the effective state of a machine.
type Drift struct {
	// Key is the sshd -T keyword (lower case) or the apt configuration key.
	Key string
	// Want and Got are the profile's value and the machine's, as the tool prints them; Got is empty when
	// the key is missing.
	Want, Got string
	Message   string
}

// String returns "key: message".
func (d Drift) String() string { return d.Key + ": " + d.Message }

// parseSSHDT parses `sshd -T` output: one "keyword value" per line, keywords in lower case, a keyword on
// several lines for each of its values (hostkey, allowgroups, acceptenv).
func parseSSHDT(out []byte) map[string][]string {
	m := map[string][]string{}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		k = strings.ToLower(k)
		m[k] = append(m[k], strings.TrimSpace(v))
	}
	return m
}

// VerifySSHD compares `sshd -T` output with the profile and returns every drift, in the order of the
// profile's settings. Algorithm lists are compared as sets: order does not matter, every extra and every
// missing algorithm is named.
func VerifySSHD(p Profile, sshdT []byte) []Drift {
	got := parseSSHDT(sshdT)
	var drifts []Drift
	for _, st := range p.SSHD.sshdSettings() {
		key := strings.ToLower(st.keyword)
		vals, ok := got[key]
		switch st.kind {
		case scalar, exact:
			want := st.values[0]
			switch {
			case !ok:
				drifts = append(drifts, Drift{Key: key, Want: want, Message: "missing from sshd -T output"})
			case len(vals) > 1:
				drifts = append(drifts, Drift{Key: key, Want: want, Got: strings.Join(vals, "\n"),
					Message: fmt.Sprintf("printed %d times, want once", len(vals))})
			case st.kind == exact && vals[0] != want, st.kind == scalar && !strings.EqualFold(vals[0], want):
				drifts = append(drifts, Drift{Key: key, Want: want, Got: vals[0],
					Message: fmt.Sprintf("is %q, want %q", vals[0], want)})
			}
		case commaList:
			want := strings.Join(st.values, ",")
			if !ok {
				drifts = append(drifts, Drift{Key: key, Want: want, Message: "missing from sshd -T output"})
				continue
			}
			var have []string
			for _, v := range vals {
				have = append(have, strings.Split(v, ",")...)
			}
			if d, bad := setDrift(key, st.values, have, "algorithm"); bad {
				d.Want, d.Got = want, strings.Join(vals, ",")
				drifts = append(drifts, d)
			}
		case repeated:
			want := strings.Join(st.values, "\n")
			if st.keyword == "AllowGroups" {
				// AllowGroups a b may come back as one line per group or as one line; split either way.
				var have []string
				for _, v := range vals {
					have = append(have, strings.Fields(v)...)
				}
				vals = have
			}
			if d, bad := setDrift(key, st.values, vals, "value"); bad {
				d.Want, d.Got = want, strings.Join(vals, "\n")
				drifts = append(drifts, d)
			}
		}
	}
	if len(p.SSHD.AllowGroups) == 0 {
		if vals, ok := got["allowgroups"]; ok {
			drifts = append(drifts, Drift{Key: "allowgroups", Got: strings.Join(vals, "\n"),
				Message: "restricts logins to groups the profile does not name"})
		}
	}
	return drifts
}

// setDrift compares want and have as sets and describes extra and missing members in one drift.
func setDrift(key string, want, have []string, noun string) (Drift, bool) {
	var extra, missing []string
	for _, h := range have {
		if h != "" && !slices.Contains(want, h) && !slices.Contains(extra, h) {
			extra = append(extra, h)
		}
	}
	for _, w := range want {
		if !slices.Contains(have, w) && !slices.Contains(missing, w) {
			missing = append(missing, w)
		}
	}
	if len(extra) == 0 && len(missing) == 0 {
		return Drift{}, false
	}
	var parts []string
	if len(extra) > 0 {
		parts = append(parts, fmt.Sprintf("extra %s %s", plural(noun, len(extra)), strings.Join(extra, ", ")))
	}
	if len(missing) > 0 {
		parts = append(parts, fmt.Sprintf("missing %s %s", plural(noun, len(missing)), strings.Join(missing, ", ")))
	}
	return Drift{Key: key, Message: strings.Join(parts, "; ")}, true
}

func plural(noun string, n int) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

// aptConfig is `apt-config dump` output: keys as printed, values in order. A list element's key ends in
// "::" (Unattended-Upgrade::Origins-Pattern:: "..."). Lookups fold case, as apt does.
type aptConfig struct {
	values map[string][]string // lower-cased key -> values
}

// parseAPTConfigDump parses `apt-config dump` output: lines of the form `Key "value";`. Lines that do not
// have that form are skipped.
func parseAPTConfigDump(out []byte) aptConfig {
	c := aptConfig{values: map[string][]string{}}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, " ")
		if !ok || k == "" {
			continue
		}
		v = strings.TrimSuffix(strings.TrimSpace(v), ";")
		if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			continue
		}
		v = v[1 : len(v)-1]
		k = strings.ToLower(k)
		c.values[k] = append(c.values[k], v)
	}
	return c
}

// last returns the effective value of a scalar key: apt keeps the last one read.
func (c aptConfig) last(key string) (string, bool) {
	vs := c.values[strings.ToLower(key)]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// list returns the elements of a list key.
func (c aptConfig) list(key string) []string {
	return c.values[strings.ToLower(key)+"::"]
}

// aptBool is apt's Configuration::FindB.
func aptBool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "1", "yes", "true", "with", "on", "enable":
		return true, true
	case "0", "no", "false", "without", "off", "disable":
		return false, true
	}
	return false, false
}

// VerifyAPT compares `apt-config dump` output with the profile's upgrade policy and returns every drift:
// origins that follow a moving suite (a=stable), non-security origins, no security origin at all,
// Allowed-Origins entries, reboot settings and the periodic intervals.
func VerifyAPT(p Profile, aptConfigDump []byte) []Drift {
	c := parseAPTConfigDump(aptConfigDump)
	u := p.Upgrades
	var drifts []Drift

	const originsKey = "Unattended-Upgrade::Origins-Pattern"
	origins := c.list(originsKey)
	if len(u.OriginsPatterns) > 0 {
		if d, bad := setDrift(originsKey, u.OriginsPatterns, origins, "origin"); bad {
			d.Want, d.Got = strings.Join(u.OriginsPatterns, "\n"), strings.Join(origins, "\n")
			drifts = append(drifts, d)
		}
	}
	security := 0
	for _, o := range origins {
		probs := originProblems(o)
		if len(probs) == 0 {
			security++
		}
		for _, prob := range probs {
			drifts = append(drifts, Drift{Key: originsKey, Got: o, Message: fmt.Sprintf("%q %s", o, prob)})
		}
	}
	if security == 0 {
		drifts = append(drifts, Drift{Key: originsKey, Got: strings.Join(origins, "\n"),
			Message: "no security origin matched by codename: security updates would not be installed"})
	}
	const allowedKey = "Unattended-Upgrade::Allowed-Origins"
	for _, o := range c.list(allowedKey) {
		drifts = append(drifts, Drift{Key: allowedKey, Got: o,
			Message: fmt.Sprintf("%q is allowed in addition to the profile's Origins-Pattern", o)})
	}

	checkBool := func(key string, want bool) {
		got, ok := c.last(key)
		if !ok {
			drifts = append(drifts, Drift{Key: key, Want: strconv.FormatBool(want), Message: "not set"})
			return
		}
		if b, valid := aptBool(got); !valid || b != want {
			drifts = append(drifts, Drift{Key: key, Want: strconv.FormatBool(want), Got: got,
				Message: fmt.Sprintf("is %q, want %t", got, want)})
		}
	}
	checkString := func(key, want string) {
		got, ok := c.last(key)
		switch {
		case !ok:
			drifts = append(drifts, Drift{Key: key, Want: want, Message: "not set"})
		case got != want:
			drifts = append(drifts, Drift{Key: key, Want: want, Got: got, Message: fmt.Sprintf("is %q, want %q", got, want)})
		}
	}
	checkBool("Unattended-Upgrade::Automatic-Reboot", u.AutomaticReboot)
	checkBool("Unattended-Upgrade::Automatic-Reboot-WithUsers", u.AutomaticRebootWithUsers)
	checkString("Unattended-Upgrade::Automatic-Reboot-Time", u.AutomaticRebootTime)
	checkString("APT::Periodic::Update-Package-Lists", strconv.Itoa(u.UpdatePackageListsDays))
	checkString("APT::Periodic::Unattended-Upgrade", strconv.Itoa(u.UnattendedUpgradeDays))
	return drifts
}

// Read runs argv as root on the machine being checked and returns what it printed.
type Read func(argv []string) ([]byte, error)

// Audit reads the machine's effective state through read and returns every drift from p: sshd's
// (`sshd -T`; keys prefixed "sshd "), apt's on the Debian family (`apt-config dump`; "apt "), and
// the active rules' (ProbeScript). The bake (kiln-harden) and `kiln image audit` both check this way.
func Audit(p Profile, d Distro, read Read) ([]Drift, error) {
	var out []Drift
	prefixed := func(prefix string, ds []Drift) {
		for _, dr := range ds {
			dr.Key = prefix + dr.Key
			out = append(out, dr)
		}
	}
	sshdT, err := read([]string{"sshd", "-T"})
	if err != nil {
		return nil, err
	}
	prefixed("sshd ", VerifySSHD(p, sshdT))
	if d.Family == FamilyDebian {
		dump, err := read([]string{"apt-config", "dump"})
		if err != nil {
			return nil, err
		}
		prefixed("apt ", VerifyAPT(p, dump))
	}
	if rules := p.Active(d.Family); len(rules) > 0 {
		probe, err := read([]string{"sh", "-c", ProbeScript(rules)})
		if err != nil {
			return nil, err
		}
		prefixed("", VerifyRules(rules, probe))
	}
	return out, nil
}
