package harden

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Plan is what applies a Profile to one distro: Steps in order, each a file to write or a command to run.
// A VerifyOnly plan has no steps: the distro is image-based and is only checked.
type Plan struct {
	Distro     Distro
	VerifyOnly bool
	Steps      []Step
}

// Step is one step of a Plan: exactly one of File and Command is set.
type Step struct {
	File    *File
	Command *Command
}

// File is a file the plan writes, replacing any file at Path.
type File struct {
	Path string
	Mode fs.FileMode
	// Owner is "user:group".
	Owner    string
	Contents []byte
	Purpose  string
}

// Command is a command the plan runs as root; a non-zero exit fails the plan.
type Command struct {
	Argv    []string
	Purpose string
}

// Files returns the plan's files in order.
func (p Plan) Files() []File {
	var out []File
	for _, s := range p.Steps {
		if s.File != nil {
			out = append(out, *s.File)
		}
	}
	return out
}

// Commands returns the plan's commands in order.
func (p Plan) Commands() []Command {
	var out []Command
	for _, s := range p.Steps {
		if s.Command != nil {
			out = append(out, *s.Command)
		}
	}
	return out
}

// Paths of the files the plans write.
const (
	SSHDConfig          = "/etc/ssh/sshd_config"
	SSHDDropIn          = "/etc/ssh/sshd_config.d/00-kiln-hardening.conf"
	SSHModuli           = "/etc/ssh/moduli"
	HostKeyUnit         = "/etc/systemd/system/kiln-ssh-hostkeys.service"
	UnattendedUpgrades  = "/etc/apt/apt.conf.d/52kiln-unattended-upgrades"
	AutoUpgrades        = "/etc/apt/apt.conf.d/20auto-upgrades"
	DNFAutomatic        = "/etc/dnf/automatic.conf"
	aptLockTimeout      = "DPkg::Lock::Timeout=600"
	aptListsWaitSeconds = 600
)

// NewPlan returns the steps that apply p to d. p must be valid (see Profile.Validate); NewPlan validates it
// again and returns the same errors.
func NewPlan(p Profile, d Distro) (Plan, error) {
	if err := p.Validate(); err != nil {
		return Plan{}, fmt.Errorf("harden: plan for %s: %w", d, err)
	}
	pl := Plan{Distro: d}
	switch d.Family {
	case FamilyDebian:
		origins := p.Upgrades.OriginsPatterns
		if len(origins) == 0 {
			var err error
			if origins, err = securityOrigins(d); err != nil {
				return Plan{}, err
			}
		}
		rules := p.Active(d.Family)
		pl.Steps = append(pl.Steps, aptInstall(append([]string{"unattended-upgrades"}, rulePackages(rules, d.Family)...)...)...)
		pl.Steps = append(pl.Steps, sshdSteps(p.SSHD)...)
		pl.Steps = append(pl.Steps,
			file(UnattendedUpgrades, 0o644, unattendedUpgradesConf(p.Upgrades, origins),
				"install only security updates, matched by codename, and reboot in the window"),
			file(AutoUpgrades, 0o644, autoUpgradesConf(p.Upgrades),
				"run apt update and unattended-upgrade periodically"),
		)
		pl.Steps = append(pl.Steps, ruleSteps(rules)...)
		pl.Steps = append(pl.Steps, provenanceStep(p, rules))
		pl.Steps = append(pl.Steps, hygieneSteps(p.Hygiene, d.Family)...)
	case FamilyRHEL:
		rules := p.Active(d.Family)
		pl.Steps = append(pl.Steps,
			command("install dnf-automatic (dnf waits for the rpm lock itself)",
				append([]string{"dnf", "-y", "install", "dnf-automatic"}, rulePackages(rules, d.Family)...)...),
			file(DNFAutomatic, 0o644, dnfAutomaticConf(p.Upgrades),
				"apply only security updates and reboot when needed, in the window"),
			command("start dnf-automatic on its timer", "systemctl", "enable", "dnf-automatic.timer"),
		)
		pl.Steps = append(pl.Steps, sshdSteps(p.SSHD)...)
		pl.Steps = append(pl.Steps, ruleSteps(rules)...)
		pl.Steps = append(pl.Steps, provenanceStep(p, rules))
		pl.Steps = append(pl.Steps, hygieneSteps(p.Hygiene, d.Family)...)
	case FamilyFlatcar:
		pl.VerifyOnly = true
	default:
		return Plan{}, fmt.Errorf("harden: %w: family %q", ErrUnknownDistro, d.Family)
	}
	return pl, nil
}

func file(path string, mode fs.FileMode, contents []byte, purpose string) Step {
	return Step{File: &File{Path: path, Mode: mode, Owner: "root:root", Contents: contents, Purpose: purpose}}
}

func command(purpose string, argv ...string) Step {
	return Step{Command: &Command{Argv: argv, Purpose: purpose}}
}

// aptInstall refreshes the package lists and installs pkgs without racing apt-daily or a first-boot
// unattended-upgrade. apt and dpkg lock with fcntl, so flock(1) on their lock files waits for nothing;
// DPkg::Lock::Timeout makes apt-get wait for the dpkg frontend lock, but apt-get update does not honour it
// for the lists lock, so update is retried while that lock is held.
func aptInstall(pkgs ...string) []Step {
	wait := strconv.Itoa(aptListsWaitSeconds / 5)
	return []Step{
		command("refresh the package lists, waiting up to "+strconv.Itoa(aptListsWaitSeconds)+" s for the apt lists lock",
			"sh", "-c", `i=0; until apt-get -o `+aptLockTimeout+` update; do i=$((i+1)); [ "$i" -lt `+wait+` ] || exit 1; sleep 5; done`),
		command("install "+strings.Join(pkgs, ", ")+", waiting for the dpkg lock",
			append([]string{"env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-o", aptLockTimeout,
				"-y", "--no-install-recommends", "install"}, pkgs...)...),
	}
}

// sshdSteps configures sshd: the drop-in, the banner, first-boot host keys, strong moduli only, a root-only
// sshd_config, and a syntax check with the sshd of the image.
func sshdSteps(s SSHD) []Step {
	moduliMin := strconv.Itoa(s.ModuliMinBits - 1) // the moduli file's size column is bits - 1
	steps := []Step{
		file(SSHDDropIn, 0o600, sshdDropIn(s), "key-only logins, no root, no forwarding, modern crypto only"),
	}
	if s.BannerText != "" {
		steps = append(steps, file(s.Banner, 0o644, []byte(s.BannerText), "pre-authentication banner"))
	}
	steps = append(steps,
		file(HostKeyUnit, 0o644, hostKeyUnit(s), "generate ed25519 and RSA host keys on first boot"),
		command("enable first-boot host key generation", "systemctl", "enable", "kiln-ssh-hostkeys.service"),
		command("keep only Diffie-Hellman moduli of "+strconv.Itoa(s.ModuliMinBits)+" bits and more",
			"sh", "-c", `awk '$5 >= `+moduliMin+`' `+SSHModuli+` > `+SSHModuli+`.kiln && test -s `+SSHModuli+`.kiln && chmod 0644 `+SSHModuli+`.kiln && mv `+SSHModuli+`.kiln `+SSHModuli),
		command("make sshd_config readable by root only", "chown", "root:root", SSHDConfig),
		command("make sshd_config readable by root only", "chmod", "0600", SSHDConfig),
		command("check the sshd configuration with the image's sshd", "sshd", "-t"),
	)
	return steps
}

// hygieneSteps remove what is machine-specific or secret, and re-arm first boot. They come last.
func hygieneSteps(h Hygiene, f Family) []Step {
	steps := []Step{
		command("no baked host keys: each machine makes its own on first boot",
			"find", "/etc/ssh", "-maxdepth", "1", "-name", "ssh_host_*", "-type", "f", "-delete"),
		command("no baked authorized_keys for root", "rm", "-f", "/root/.ssh/authorized_keys"),
	}
	if h.BuildUser != "" {
		steps = append(steps, command("no baked authorized_keys for the build user "+h.BuildUser,
			"sh", "-c", `home=$(getent passwd "$1" | cut -d: -f6) && [ -n "$home" ] && rm -f "$home/.ssh/authorized_keys"`, "sh", h.BuildUser))
	}
	steps = append(steps,
		command("machine-id uninitialized: systemd treats the next boot as first boot and applies presets",
			"sh", "-c", `printf 'uninitialized\n' > /etc/machine-id`),
		command("no baked D-Bus machine-id", "rm", "-f", "/var/lib/dbus/machine-id"),
		command("no rotated logs or journal files", "find", "/var/log", "-type", "f",
			"(", "-name", "*.gz", "-o", "-name", "*.[0-9]", "-o", "-name", "*.old", "-o", "-name", "*.journal", "-o", "-name", "*.journal~", ")", "-delete"),
		command("empty the remaining logs", "find", "/var/log", "-type", "f", "-exec", "truncate", "-s", "0", "{}", "+"),
		command("no shell history", "find", "/root", "/home", "-maxdepth", "2", "-type", "f", "-name", ".*_history", "-delete"),
		command("no cloud-init state: its first boot runs again", "rm", "-rf", "/var/lib/cloud"),
		command("no Ignition result: Ignition's first boot runs again", "rm", "-f", "/etc/.ignition-result.json"),
	)
	switch f {
	case FamilyDebian:
		steps = append(steps,
			command("no package lists or cached packages", "apt-get", "-o", aptLockTimeout, "clean"),
			command("no package lists or cached packages", "find", "/var/lib/apt/lists", "-type", "f", "!", "-name", "lock", "-delete"),
		)
	case FamilyRHEL:
		steps = append(steps, command("no package metadata or cached packages", "dnf", "clean", "all"))
	}
	if h.RemoveBuildUser {
		steps = append(steps, command("remove the build user "+h.BuildUser+" and its home (last: the build may be logged in as it)",
			"userdel", "--force", "--remove", h.BuildUser))
	}
	return steps
}

// unattendedUpgradesConf renders the unattended-upgrades drop-in. It clears the origin lists first and is
// named 52kiln- so that apt reads it after Debian's 50unattended-upgrades, whose Origins-Pattern includes the
// non-security "origin=Debian,codename=${distro_codename},label=Debian" (apt appends list entries across
// files, and "50kiln" sorts before "50unattended").
func unattendedUpgradesConf(u Upgrades, origins []string) []byte {
	var b strings.Builder
	b.WriteString("// Written by kiln (images/harden): security updates only, matched by codename.\n")
	b.WriteString("#clear Unattended-Upgrade::Origins-Pattern;\n")
	b.WriteString("#clear Unattended-Upgrade::Allowed-Origins;\n")
	b.WriteString("Unattended-Upgrade::Origins-Pattern {\n")
	for _, o := range origins {
		fmt.Fprintf(&b, "\t%q;\n", o)
	}
	b.WriteString("};\n")
	fmt.Fprintf(&b, "Unattended-Upgrade::Automatic-Reboot \"%t\";\n", u.AutomaticReboot)
	fmt.Fprintf(&b, "Unattended-Upgrade::Automatic-Reboot-WithUsers \"%t\";\n", u.AutomaticRebootWithUsers)
	fmt.Fprintf(&b, "Unattended-Upgrade::Automatic-Reboot-Time \"%s\";\n", u.AutomaticRebootTime)
	return []byte(b.String())
}

// autoUpgradesConf renders 20auto-upgrades, the file debconf writes when unattended upgrades are enabled.
func autoUpgradesConf(u Upgrades) []byte {
	return []byte(fmt.Sprintf("// Written by kiln (images/harden).\nAPT::Periodic::Update-Package-Lists \"%d\";\nAPT::Periodic::Unattended-Upgrade \"%d\";\n",
		u.UpdatePackageListsDays, u.UnattendedUpgradeDays))
}

// dnfAutomaticConf renders dnf-automatic's configuration. dnf-automatic has no "only when nobody is logged
// in" switch, so AutomaticRebootWithUsers has no counterpart; reboot = when-needed needs dnf 4.10 or later.
func dnfAutomaticConf(u Upgrades) []byte {
	reboot := "never"
	if u.AutomaticReboot {
		reboot = "when-needed"
	}
	return []byte(`# Written by kiln (images/harden): security updates only, reboots in the window.
[commands]
upgrade_type = security
random_sleep = 0
download_updates = yes
apply_updates = yes
reboot = ` + reboot + `
reboot_command = "shutdown -r ` + u.AutomaticRebootTime + ` 'Rebooting after applying security updates'"

[emitters]
emit_via = stdio

[base]
debuglevel = 1
`)
}
