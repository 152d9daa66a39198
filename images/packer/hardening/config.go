//go:generate go tool packer-sdc mapstructure-to-hcl2 -type Config
//go:generate go tool packer-sdc struct-markdown

package hardening

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/packer-plugin-sdk/common"
	"github.com/hashicorp/packer-plugin-sdk/template/config"
	"github.com/hashicorp/packer-plugin-sdk/template/interpolate"

	"github.com/kiln-dev/kiln/images/harden"
)

// Config is the kiln-harden provisioner's configuration. Every setting is optional: the defaults are
// kiln's hardening profile (images/harden.DefaultProfile).
type Config struct {
	common.PackerConfig `mapstructure:",squash"`

	// The hardening level: `level1` (CIS Debian Linux 12 Level 1 items that apply to a Kubernetes
	// node: kernel parameters, blocked modules, auditd, AppArmor, core dumps, umask, file modes, on
	// top of the SSH policy and upgrades) or `baseline` (the SSH policy and upgrades only, with
	// max_auth_tries 4 and 10 sessions). Defaults to `level1`.
	Level string `mapstructure:"level"`
	// Ids of level1 rules to leave out (`["cis-3.3.7"]`), for a workload that needs them relaxed.
	// Each is said in the build log and recorded in the image (/usr/share/kiln/hardening.json).
	// docs/hardening.md lists the rules. Defaults to `[]`.
	Skip []string `mapstructure:"skip"`
	// The only groups whose members may log in over SSH. Empty means no AllowGroups line: any user with
	// an authorized key may log in. Defaults to `[]`.
	AllowGroups []string `mapstructure:"allow_groups"`
	// Path of the pre-authentication banner. Defaults to `/etc/ssh/kiln-banner`.
	Banner string `mapstructure:"banner"`
	// Text written to the banner file. Defaults to a short authorized-use notice that names no OS or
	// version.
	BannerText string `mapstructure:"banner_text"`
	// Authentication attempts per connection. Defaults to `3` (`4` at level baseline).
	MaxAuthTries int `mapstructure:"max_auth_tries"`
	// Seconds a client has to authenticate. Defaults to `60`.
	LoginGraceTime int `mapstructure:"login_grace_time"`
	// Seconds between keep-alive probes of an idle client. Defaults to `300`.
	ClientAliveInterval int `mapstructure:"client_alive_interval"`
	// sshd's log level. Defaults to `VERBOSE` (logs the key fingerprint of every login).
	LogLevel string `mapstructure:"log_level"`
	// The only key exchange algorithms sshd offers. Defaults to ssh-audit's hardening guide for
	// OpenSSH 9.x.
	KexAlgorithms []string `mapstructure:"kex_algorithms"`
	// The only ciphers sshd offers. Defaults to ssh-audit's hardening guide for OpenSSH 9.x.
	Ciphers []string `mapstructure:"ciphers"`
	// The only MACs sshd offers. Defaults to ssh-audit's hardening guide for OpenSSH 9.x.
	MACs []string `mapstructure:"macs"`
	// Size of the RSA host key each machine generates on its first boot. Defaults to `4096`.
	RSAHostKeyBits int `mapstructure:"rsa_host_key_bits"`
	// Smallest RSA key sshd accepts, host or user. Defaults to `3072`.
	RequiredRSASize int `mapstructure:"required_rsa_size"`
	// Smallest Diffie-Hellman group kept in /etc/ssh/moduli. Defaults to `3072`.
	ModuliMinBits int `mapstructure:"moduli_min_bits"`
	// unattended-upgrades Origins-Pattern entries. Empty means the distro's security archives, matched
	// by codename so that the image never follows "stable" into the next release. Defaults to `[]`.
	OriginsPatterns []string `mapstructure:"origins_patterns"`
	// Leave the reboots that upgrades need to kiln's node agent (`kiln-node reboot`): one node of a
	// pool at a time, drained first, through a lock in the cluster. Defaults to `true`; never together
	// with automatic_reboot.
	RebootAgent *bool `mapstructure:"reboot_agent"`
	// Let unattended-upgrades reboot by itself when an upgrade needs it, for machines without the
	// agent (set reboot_agent = false too). Defaults to `false`.
	AutomaticReboot *bool `mapstructure:"automatic_reboot"`
	// Reboot even when users are logged in. Defaults to `true`.
	AutomaticRebootWithUsers *bool `mapstructure:"automatic_reboot_with_users"`
	// Time of day of those reboots, HH:MM, local time. Defaults to `02:00`.
	AutomaticRebootTime string `mapstructure:"automatic_reboot_time"`
	// The user Packer logs in as; its authorized_keys are removed from the image. Defaults to the
	// communicator's user.
	BuildUser string `mapstructure:"build_user"`
	// Delete the build user and its home directory as the very last command. sudo is gone after that,
	// so the provisioner schedules the poweroff itself, 15 s later, in a transient systemd unit that
	// also removes the sudoers drop-ins naming the build user; make the build's shutdown_command one
	// that needs no sudo (`true`) and kiln-harden the last provisioner. Defaults to `false`.
	RemoveBuildUser bool `mapstructure:"remove_build_user"`
	// The os-release ID to plan for (debian, ubuntu, rocky, flatcar, ...) instead of the one read
	// from the machine's /etc/os-release. Defaults to the detected ID.
	Distro string `mapstructure:"distro"`

	ctx interpolate.Context
}

// fieldKeys maps images/harden's Profile field paths to this configuration's keys, so that a profile
// error names the setting the user wrote.
var fieldKeys = map[string]string{
	"Level":                        "level",
	"Skip":                         "skip",
	"SSHD.AllowGroups":             "allow_groups",
	"SSHD.Banner":                  "banner",
	"SSHD.MaxAuthTries":            "max_auth_tries",
	"SSHD.LoginGraceTime":          "login_grace_time",
	"SSHD.ClientAliveInterval":     "client_alive_interval",
	"SSHD.LogLevel":                "log_level",
	"SSHD.KexAlgorithms":           "kex_algorithms",
	"SSHD.Ciphers":                 "ciphers",
	"SSHD.MACs":                    "macs",
	"SSHD.RSAHostKeyBits":          "rsa_host_key_bits",
	"SSHD.RequiredRSASize":         "required_rsa_size",
	"SSHD.ModuliMinBits":           "moduli_min_bits",
	"Upgrades.OriginsPatterns":     "origins_patterns",
	"Upgrades.AutomaticRebootTime": "automatic_reboot_time",
	"Upgrades.AutomaticReboot":     "automatic_reboot",
	"Hygiene.BuildUser":            "build_user",
	"Hygiene.RemoveBuildUser":      "remove_build_user",
}

// decode reads the raw configurations into c (HCL2 cty values or legacy JSON maps).
func (c *Config) decode(raws ...interface{}) error {
	return config.Decode(c, &config.DecodeOpts{
		PluginType:         "kiln-harden",
		Interpolate:        true,
		InterpolateContext: &c.ctx,
	}, raws...)
}

// Profile returns the hardening profile of the configuration: harden.DefaultProfile with every set
// field applied. buildUser is used when BuildUser is empty (the communicator's user; "" for none).
func (c *Config) Profile(buildUser string) harden.Profile {
	p := harden.DefaultProfile()
	if c.Level != "" {
		if lp, err := harden.ProfileAt(harden.Level(c.Level)); err == nil {
			p = lp
		} else {
			p.Level = harden.Level(c.Level) // Validate names it
		}
	}
	p.Skip = c.Skip
	s := &p.SSHD
	if c.AllowGroups != nil {
		s.AllowGroups = c.AllowGroups
	}
	setString(&s.Banner, c.Banner)
	setString(&s.BannerText, c.BannerText)
	setInt(&s.MaxAuthTries, c.MaxAuthTries)
	setInt(&s.LoginGraceTime, c.LoginGraceTime)
	setInt(&s.ClientAliveInterval, c.ClientAliveInterval)
	setString(&s.LogLevel, c.LogLevel)
	if c.KexAlgorithms != nil {
		s.KexAlgorithms = c.KexAlgorithms
	}
	if c.Ciphers != nil {
		s.Ciphers = c.Ciphers
	}
	if c.MACs != nil {
		s.MACs = c.MACs
	}
	setInt(&s.RSAHostKeyBits, c.RSAHostKeyBits)
	setInt(&s.RequiredRSASize, c.RequiredRSASize)
	setInt(&s.ModuliMinBits, c.ModuliMinBits)
	u := &p.Upgrades
	if c.OriginsPatterns != nil {
		u.OriginsPatterns = c.OriginsPatterns
	}
	if c.RebootAgent != nil {
		u.RebootAgent = *c.RebootAgent
	}
	if c.AutomaticReboot != nil {
		u.AutomaticReboot = *c.AutomaticReboot
	}
	if c.AutomaticRebootWithUsers != nil {
		u.AutomaticRebootWithUsers = *c.AutomaticRebootWithUsers
	}
	setString(&u.AutomaticRebootTime, c.AutomaticRebootTime)
	p.Hygiene.BuildUser = c.BuildUser
	if p.Hygiene.BuildUser == "" {
		p.Hygiene.BuildUser = buildUser
	}
	p.Hygiene.RemoveBuildUser = c.RemoveBuildUser
	return p
}

func setString(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

func setInt(dst *int, v int) {
	if v != 0 {
		*dst = v
	}
}

// validate returns every problem of the configuration at once, each naming its setting.
func (c *Config) validate() error {
	var errs []error
	// A placeholder build user stands for the communicator's, which is known only at Provision.
	buildUser := ""
	if c.RemoveBuildUser && c.BuildUser == "" {
		buildUser = "placeholder"
	}
	if err := c.Profile(buildUser).Validate(); err != nil {
		errs = append(errs, profileErrors(err)...)
	}
	if c.Distro != "" {
		if _, err := harden.ParseDistro(c.Distro); err != nil {
			errs = append(errs, fmt.Errorf("%w: distro: %q is not a distro kiln knows", ErrConfig, c.Distro))
		}
	}
	return errors.Join(errs...)
}

// profileErrors renames the Profile fields of harden's validation errors to the configuration keys.
func profileErrors(err error) []error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		msg := strings.TrimPrefix(e.Error(), harden.ErrInvalidProfile.Error()+": ")
		field, rest, _ := strings.Cut(msg, ": ")
		name, index, _ := strings.Cut(field, "[")
		if key, ok := fieldKeys[name]; ok {
			field = key
			if index != "" {
				field += "[" + index
			}
		}
		out = append(out, fmt.Errorf("%w: %s: %s", ErrConfig, field, rest))
	}
	return out
}
