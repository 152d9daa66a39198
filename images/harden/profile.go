package harden

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Profile is what a hardened image must look like. DefaultProfile returns kiln's choices; callers change
// fields and call Validate before Plan.
type Profile struct {
	// Level is the rule set on top of SSHD and Upgrades: Level1 (the default) or Baseline (none).
	Level Level
	// Skip are ids of level1 rules the image does without (a site's workload needs them relaxed);
	// each is reported in the build log and recorded in the image's Provenance. Defaults to empty.
	Skip     []string
	SSHD     SSHD
	Upgrades Upgrades
	Hygiene  Hygiene
}

// SSHD is the OpenSSH server configuration of the profile. The yes/no settings that the profile does not
// let callers change (PasswordAuthentication no, PermitRootLogin no, ...) are fixed in sshdFixed.
type SSHD struct {
	// AllowGroups are the only groups whose members may log in. Empty means no AllowGroups line, so that
	// any user with an authorized key may log in. Defaults to empty.
	AllowGroups []string
	// Banner is the path of the pre-authentication banner. Defaults to `/etc/ssh/kiln-banner`.
	Banner string
	// BannerText is written to Banner by the plan; empty leaves the file as the image has it. Defaults to a
	// short authorized-use notice that names no OS or version.
	BannerText string
	// MaxAuthTries defaults to `3` (`4` at Baseline).
	MaxAuthTries int
	// MaxSessions defaults to `4` (`10` at Baseline).
	MaxSessions int
	// LoginGraceTime in seconds. Defaults to `60`.
	LoginGraceTime int
	// ClientAliveInterval in seconds. Defaults to `300`.
	ClientAliveInterval int
	// ClientAliveCountMax defaults to `3`.
	ClientAliveCountMax int
	// MaxStartups is start:rate:full. Defaults to `10:30:60`.
	MaxStartups string
	// PerSourceMaxStartups is the number of unauthenticated connections allowed from one source address
	// (or PerSourceNetBlockSize block). Defaults to `3`.
	PerSourceMaxStartups int
	// LogLevel defaults to `VERBOSE` (logs key fingerprints of logins).
	LogLevel string
	// KexAlgorithms, Ciphers and MACs are the only algorithms offered. Default to ssh-audit's hardening
	// guide for OpenSSH 9.x.
	KexAlgorithms []string
	Ciphers       []string
	MACs          []string
	// RSAHostKeyBits is the size of the RSA host key generated at first boot. Defaults to `4096`.
	RSAHostKeyBits int
	// RequiredRSASize is the smallest RSA key sshd accepts, host or user. Defaults to `3072`.
	RequiredRSASize int
	// ModuliMinBits is the smallest Diffie-Hellman group kept in /etc/ssh/moduli. Defaults to `3072`.
	ModuliMinBits int
}

// Upgrades is the unattended security-upgrade policy of the profile.
type Upgrades struct {
	// OriginsPatterns are the unattended-upgrades Origins-Pattern entries. Empty means the distro's
	// security origins, matched by codename. Defaults to empty.
	OriginsPatterns []string
	// RebootAgent leaves the reboots that upgrades need to kiln's node agent (`kiln-node reboot`),
	// which takes its pool's reboot lock in the cluster, drains the node, reboots and rejoins, one
	// node of a pool at a time. Defaults to `true`. It and AutomaticReboot are never both on: with
	// unattended-upgrades rebooting on its own, every node of a pool reboots in the same minute.
	RebootAgent bool
	// AutomaticReboot lets unattended-upgrades reboot by itself, at AutomaticRebootTime, when an
	// upgrade needs it: only for machines without the agent. Defaults to `false`.
	AutomaticReboot bool
	// AutomaticRebootWithUsers reboots even when users are logged in. Defaults to `true`.
	AutomaticRebootWithUsers bool
	// AutomaticRebootTime is the reboot time of day, HH:MM, local time. Defaults to `02:00`.
	AutomaticRebootTime string
	// UpdatePackageListsDays and UnattendedUpgradeDays are the APT::Periodic intervals. Default to `1`.
	UpdatePackageListsDays int
	UnattendedUpgradeDays  int
}

// Hygiene is what the plan removes so that nothing machine-specific or secret stays in the image.
type Hygiene struct {
	// BuildUser is the user Packer logged in as; its authorized_keys are removed. Empty skips it. Defaults
	// to empty.
	BuildUser string
	// RemoveBuildUser deletes BuildUser and its home directory as the plan's last command. Defaults to
	// `false`.
	RemoveBuildUser bool
}

// Host key files of the profile: ed25519 and RSA only.
const (
	HostKeyEd25519 = "/etc/ssh/ssh_host_ed25519_key"
	HostKeyRSA     = "/etc/ssh/ssh_host_rsa_key"
)

// DefaultProfile returns kiln's hardening profile: Level1.
func DefaultProfile() Profile {
	return Profile{
		Level: Level1,
		SSHD: SSHD{
			Banner:               "/etc/ssh/kiln-banner",
			BannerText:           "Authorized access only. Activity on this system is logged.\n",
			MaxAuthTries:         3,
			MaxSessions:          4,
			LoginGraceTime:       60,
			ClientAliveInterval:  300,
			ClientAliveCountMax:  3,
			MaxStartups:          "10:30:60",
			PerSourceMaxStartups: 3,
			LogLevel:             "VERBOSE",
			KexAlgorithms: []string{
				"sntrup761x25519-sha512",
				"sntrup761x25519-sha512@openssh.com",
				"curve25519-sha256",
				"curve25519-sha256@libssh.org",
				"diffie-hellman-group16-sha512",
				"diffie-hellman-group18-sha512",
				"diffie-hellman-group-exchange-sha256",
			},
			Ciphers: []string{
				"chacha20-poly1305@openssh.com",
				"aes256-gcm@openssh.com",
				"aes256-ctr",
				"aes192-ctr",
				"aes128-gcm@openssh.com",
				"aes128-ctr",
			},
			MACs: []string{
				"hmac-sha2-256-etm@openssh.com",
				"hmac-sha2-512-etm@openssh.com",
				"umac-128-etm@openssh.com",
			},
			RSAHostKeyBits:  4096,
			RequiredRSASize: 3072,
			ModuliMinBits:   3072,
		},
		Upgrades: Upgrades{
			RebootAgent:              true,
			AutomaticReboot:          false,
			AutomaticRebootWithUsers: true,
			AutomaticRebootTime:      "02:00",
			UpdatePackageListsDays:   1,
			UnattendedUpgradeDays:    1,
		},
	}
}

// ProfileAt returns kiln's profile at level l: DefaultProfile, or at Baseline the SSH policy and
// upgrades as they were before level1 (MaxAuthTries 4, MaxSessions 10) and no rules.
func ProfileAt(l Level) (Profile, error) {
	p := DefaultProfile()
	switch l {
	case Level1, "":
	case Baseline:
		p.Level, p.SSHD.MaxAuthTries, p.SSHD.MaxSessions = Baseline, 4, 10
	default:
		return Profile{}, fmt.Errorf("%w: Level: %q is not one of %s", ErrInvalidProfile, l, levelNames())
	}
	return p, nil
}

func levelNames() string {
	var names []string
	for _, l := range Levels {
		names = append(names, string(l))
	}
	return strings.Join(names, ", ")
}

// Algorithm names OpenSSH 9.x knows (ssh -Q kex|cipher|mac), weak ones included: Validate rejects what
// sshd would reject, the profile's defaults decide what is strong.
var (
	knownKex = []string{
		"diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1", "diffie-hellman-group14-sha256",
		"diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512", "diffie-hellman-group-exchange-sha1",
		"diffie-hellman-group-exchange-sha256", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
		"curve25519-sha256", "curve25519-sha256@libssh.org", "sntrup761x25519-sha512",
		"sntrup761x25519-sha512@openssh.com", "mlkem768x25519-sha256",
	}
	knownCiphers = []string{
		"3des-cbc", "aes128-cbc", "aes192-cbc", "aes256-cbc", "aes128-ctr", "aes192-ctr", "aes256-ctr",
		"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
	}
	knownMACs = []string{
		"hmac-sha1", "hmac-sha1-96", "hmac-sha2-256", "hmac-sha2-512", "hmac-md5", "hmac-md5-96",
		"umac-64@openssh.com", "umac-128@openssh.com", "hmac-sha1-etm@openssh.com",
		"hmac-sha1-96-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
		"hmac-md5-etm@openssh.com", "hmac-md5-96-etm@openssh.com", "umac-64-etm@openssh.com",
		"umac-128-etm@openssh.com",
	}
	logLevels = []string{"QUIET", "FATAL", "ERROR", "INFO", "VERBOSE", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3"}

	// nameRE is what useradd and groupadd accept by default (Debian's NAME_REGEX without the trailing $).
	nameRE        = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	rebootTimeRE  = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	maxStartupsRE = regexp.MustCompile(`^([0-9]+)(?::([0-9]+):([0-9]+))?$`)
)

// Validate reports every problem of the profile at once, each wrapping ErrInvalidProfile and naming its
// field.
func (p Profile) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalidProfile, field, fmt.Sprintf(format, args...)))
	}
	if !slices.Contains(Levels, p.Level) {
		add("Level", "%q is not one of %s", p.Level, levelNames())
	}
	ids := ruleIDs()
	for i, id := range p.Skip {
		switch {
		case !slices.Contains(ids, id):
			add(fmt.Sprintf("Skip[%d]", i), "%q is not a rule of level1 (docs/hardening.md lists them)", id)
		case p.Level == Baseline:
			add(fmt.Sprintf("Skip[%d]", i), "%q: the baseline level applies no rule to skip", id)
		case slices.Index(p.Skip, id) != i:
			add(fmt.Sprintf("Skip[%d]", i), "%q is listed twice", id)
		}
	}
	s := p.SSHD
	for i, g := range s.AllowGroups {
		if !nameRE.MatchString(g) {
			add(fmt.Sprintf("SSHD.AllowGroups[%d]", i), "%q is not a valid group name", g)
		}
	}
	if s.Banner == "" || !path.IsAbs(s.Banner) || path.Clean(s.Banner) != s.Banner || strings.ContainsAny(s.Banner, " \t\r\n\"'\\") {
		add("SSHD.Banner", "%q is not a clean absolute path without spaces or quotes", s.Banner)
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"SSHD.MaxAuthTries", s.MaxAuthTries},
		{"SSHD.MaxSessions", s.MaxSessions},
		{"SSHD.LoginGraceTime", s.LoginGraceTime},
		{"SSHD.ClientAliveInterval", s.ClientAliveInterval},
		{"SSHD.ClientAliveCountMax", s.ClientAliveCountMax},
		{"SSHD.PerSourceMaxStartups", s.PerSourceMaxStartups},
	} {
		if f.v < 1 {
			add(f.name, "%d is not a positive number", f.v)
		}
	}
	if m := maxStartupsRE.FindStringSubmatch(s.MaxStartups); m == nil {
		add("SSHD.MaxStartups", "%q is not start or start:rate:full", s.MaxStartups)
	} else if m[2] != "" {
		start, _ := strconv.Atoi(m[1])
		rate, _ := strconv.Atoi(m[2])
		full, _ := strconv.Atoi(m[3])
		if start > full || rate > 100 {
			add("SSHD.MaxStartups", "%q needs start <= full and rate <= 100", s.MaxStartups)
		}
	}
	if !slices.Contains(logLevels, s.LogLevel) {
		add("SSHD.LogLevel", "%q is not one of %s", s.LogLevel, strings.Join(logLevels, ", "))
	}
	checkAlgorithms := func(field, kind string, names, known []string) {
		if len(names) == 0 {
			add(field, "no %s", kind)
		}
		seen := map[string]bool{}
		for i, n := range names {
			switch {
			case !slices.Contains(known, n):
				add(fmt.Sprintf("%s[%d]", field, i), "unknown %s %q", kind, n)
			case seen[n]:
				add(fmt.Sprintf("%s[%d]", field, i), "duplicate %s %q", kind, n)
			}
			seen[n] = true
		}
	}
	checkAlgorithms("SSHD.KexAlgorithms", "key exchange algorithm", s.KexAlgorithms, knownKex)
	checkAlgorithms("SSHD.Ciphers", "cipher", s.Ciphers, knownCiphers)
	checkAlgorithms("SSHD.MACs", "MAC", s.MACs, knownMACs)
	if s.RequiredRSASize < 2048 {
		add("SSHD.RequiredRSASize", "%d is below 2048", s.RequiredRSASize)
	}
	if s.RSAHostKeyBits < s.RequiredRSASize || s.RSAHostKeyBits > 16384 {
		add("SSHD.RSAHostKeyBits", "%d is not between RequiredRSASize (%d) and 16384", s.RSAHostKeyBits, s.RequiredRSASize)
	}
	if s.ModuliMinBits < 2048 || s.ModuliMinBits > 8192 {
		add("SSHD.ModuliMinBits", "%d is not between 2048 and 8192", s.ModuliMinBits)
	}

	u := p.Upgrades
	for i, o := range u.OriginsPatterns {
		for _, prob := range originProblems(o) {
			add(fmt.Sprintf("Upgrades.OriginsPatterns[%d]", i), "%q %s", o, prob)
		}
	}
	if u.RebootAgent && u.AutomaticReboot {
		add("Upgrades.AutomaticReboot", "is true while the reboot agent is on: unattended-upgrades would reboot every node of a pool in the same minute, beside the agent that reboots them one at a time; turn one of them off (RebootAgent, kiln-harden's reboot_agent)")
	}
	if !rebootTimeRE.MatchString(u.AutomaticRebootTime) {
		add("Upgrades.AutomaticRebootTime", "%q is not HH:MM", u.AutomaticRebootTime)
	}
	if u.UpdatePackageListsDays < 1 {
		add("Upgrades.UpdatePackageListsDays", "%d is not a positive number of days", u.UpdatePackageListsDays)
	}
	if u.UnattendedUpgradeDays < 1 {
		add("Upgrades.UnattendedUpgradeDays", "%d is not a positive number of days", u.UnattendedUpgradeDays)
	}

	h := p.Hygiene
	if h.BuildUser != "" && !nameRE.MatchString(h.BuildUser) {
		add("Hygiene.BuildUser", "%q is not a valid user name", h.BuildUser)
	}
	if h.BuildUser == "root" && h.RemoveBuildUser {
		add("Hygiene.RemoveBuildUser", "the build user is root, which cannot be removed")
	}
	if h.RemoveBuildUser && h.BuildUser == "" {
		add("Hygiene.RemoveBuildUser", "set but Hygiene.BuildUser is empty")
	}
	return errors.Join(errs...)
}

// movingSuites are archive (suite) names that follow the next release when it comes out.
var movingSuites = []string{"stable", "oldstable", "oldoldstable", "testing", "unstable", "sid", "experimental"}

// originProblems returns what is wrong with one Origins-Pattern entry: a moving suite (a=stable), no
// codename or archive at all, not a security origin. It returns nil for a good entry. A literal codename
// (codename=bookworm-security) is as good as ${distro_codename}: both stay with the image's release.
func originProblems(pattern string) []string {
	var probs []string
	var pinned, security bool
	for _, field := range strings.Split(pattern, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok {
			probs = append(probs, fmt.Sprintf("has %q, which is not key=value", field))
			continue
		}
		switch strings.ToLower(k) {
		case "a", "archive", "suite", "n", "codename":
			base, _, _ := strings.Cut(v, "-")
			if slices.Contains(movingSuites, strings.ToLower(base)) {
				probs = append(probs, fmt.Sprintf("follows the moving suite %q into the next release", v))
				continue
			}
			if v != "" {
				pinned = true
			}
			if strings.HasSuffix(v, "-security") {
				security = true
			}
		}
	}
	if !pinned && len(probs) == 0 {
		probs = append(probs, "names no codename or archive, so it is not tied to the release")
	}
	if !security && len(probs) == 0 {
		probs = append(probs, "is not a security origin (its codename or archive does not end in -security)")
	}
	return probs
}
