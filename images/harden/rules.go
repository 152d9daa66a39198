package harden

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// Level is a named set of rules on top of the SSH and upgrade policy every profile has.
type Level string

const (
	// Level1 is the automated items of the CIS Debian Linux 12 Benchmark, Level 1 (server), that apply
	// to an immutable Kubernetes node, with the exceptions Kubernetes needs written down (Rules).
	Level1 Level = "level1"
	// Baseline is the SSH policy and security-only upgrades alone, as kiln's images were before
	// level1: no rule of Rules.
	Baseline Level = "baseline"
)

// Levels are the levels a profile may name.
var Levels = []Level{Level1, Baseline}

// Rule is one item of the level1 profile: what it renders into the image and what its check reads
// on a running machine. The ids are those of the CIS Debian Linux 12 Benchmark v1.1.0, prefixed
// "cis-"; a rule of kiln's own that the benchmark does not number has a "kiln-" id.
type Rule struct {
	ID    string
	Title string
	// Rationale is why the item matters, in a sentence.
	Rationale string
	// Exception says where kiln does not do what the benchmark asks, and why (Kubernetes needs it, or
	// the item belongs to the platform); empty when kiln follows the benchmark.
	Exception string
	// Families are the distro families the rule applies to.
	Families []Family

	// What the rule puts in place: kernel parameters (the sysctl drop-in), kernel modules that may
	// not load (the modprobe drop-in), audit rules (the audit rules file), packages, files, file
	// modes, and units that must be enabled and running.
	Sysctls    []Sysctl
	Modules    []string
	AuditRules []string
	Packages   map[Family][]string
	Files      []File
	Modes      []Mode
	Services   []string
	// Probes are checks of the effective state that the kinds above do not cover: a command and
	// the output it must print.
	Probes []Probe
}

// Sysctl is a kernel parameter and the value the rule wants.
type Sysctl struct{ Key, Value string }

// Mode is the owner, group and permission bits a file must have; Optional files may be missing
// (cron is not in a minimal image), and then nothing is checked.
type Mode struct {
	Path         string
	Perm         fs.FileMode
	Owner, Group string
	Optional     bool
}

// Probe is a command run as root on the machine (sh -c) and the line it must print.
type Probe struct {
	Name    string
	Command string
	Want    string
}

// Applies says whether the rule applies to family f.
func (r Rule) Applies(f Family) bool { return slices.Contains(r.Families, f) }

// Paths of the files the rules write.
const (
	SysctlDropIn   = "/etc/sysctl.d/60-kiln-cis.conf"
	ModprobeDropIn = "/etc/modprobe.d/60-kiln-cis.conf"
	AuditRulesFile = "/etc/audit/rules.d/60-kiln-cis.rules"
	// Provenance is where the plan records what it applied: the level, the rules, the skipped ones.
	// kiln image audit reads it to check a node against the rules its image was built with.
	Provenance = "/usr/share/kiln/hardening.json"
)

var (
	both   = []Family{FamilyDebian, FamilyRHEL}
	debian = []Family{FamilyDebian}
)

// Rules returns the level1 rule set, in benchmark order.
func Rules() []Rule {
	return []Rule{
		moduleRule("cis-1.1.1.1", "cramfs"),
		moduleRule("cis-1.1.1.2", "freevxfs"),
		moduleRule("cis-1.1.1.3", "hfs"),
		moduleRule("cis-1.1.1.4", "hfsplus"),
		moduleRule("cis-1.1.1.5", "jffs2"),
		{ID: "cis-1.1.1.6", Title: "overlayfs kernel module is not available", Families: both,
			Rationale: "unused file system code is attack surface",
			Exception: "not blocked: containerd's overlayfs snapshotter needs it for every container (a Level 2 item)"},
		moduleRule("cis-1.1.1.8", "udf"),
		moduleRule("cis-1.1.1.9", "usb-storage"),
		{ID: "cis-1.3.1.1", Title: "AppArmor is installed", Families: debian,
			Rationale: "mandatory access control confines services and containers beyond file permissions; with apparmor_parser on the node, containerd confines every container with its default profile",
			Packages:  map[Family][]string{FamilyDebian: {"apparmor"}},
			Services:  []string{"apparmor.service"}},
		{ID: "cis-1.3.1.2", Title: "AppArmor is enabled in the kernel", Families: debian,
			Rationale: "profiles confine nothing unless the kernel's security module is on",
			Exception: "no boot parameter: Debian's kernels enable AppArmor by default (CONFIG_LSM); the check reads the kernel's own state",
			Probes:    []Probe{{Name: "AppArmor enabled in the kernel", Command: "cat /sys/module/apparmor/parameters/enabled", Want: "Y"}}},
		{ID: "cis-1.3.1.3", Title: "every AppArmor profile is enforcing or complaining", Families: debian,
			Rationale: "a loaded profile in neither mode confines nothing",
			Probes: []Probe{{Name: "AppArmor profiles in enforce or complain mode",
				Command: `aa-status --enabled && [ "$(aa-status --profiled)" -eq "$(($(aa-status --enforced) + $(aa-status --complaining)))" ] && echo yes`,
				Want:    "yes"}}},
		{ID: "cis-1.5.1", Title: "address space layout randomization is enabled", Families: both,
			Rationale: "randomized memory layouts make memory corruption exploits harder",
			Sysctls:   []Sysctl{{"kernel.randomize_va_space", "2"}}},
		{ID: "cis-1.5.2", Title: "ptrace_scope is restricted", Families: both,
			Rationale: "a compromised process may not attach to its siblings to read their memory",
			Sysctls:   []Sysctl{{"kernel.yama.ptrace_scope", "1"}}},
		{ID: "cis-1.5.3", Title: "core dumps are restricted", Families: both,
			Rationale: "a core dump holds the process's memory, secrets included",
			Sysctls:   []Sysctl{{"fs.suid_dumpable", "0"}},
			Files: []File{
				{Path: "/etc/security/limits.d/60-kiln-cis.conf", Mode: 0o644, Owner: "root:root", Purpose: "no core dumps from login sessions",
					Contents: []byte("# Written by kiln (images/harden, cis-1.5.3).\n* hard core 0\n")},
				{Path: "/etc/systemd/system.conf.d/60-kiln-cis.conf", Mode: 0o644, Owner: "root:root", Purpose: "no core dumps from services",
					Contents: []byte("# Written by kiln (images/harden, cis-1.5.3).\n[Manager]\nDefaultLimitCORE=0\n")},
			},
			Probes: []Probe{{Name: "services start without core dumps", Command: "systemctl show --property=DefaultLimitCORE", Want: "DefaultLimitCORE=0"}}},
		{ID: "cis-2.3.2.2", Title: "systemd-timesyncd is enabled and running", Families: debian,
			Rationale: "logs, certificates and leases need a correct clock",
			Exception: "the time servers (cis-2.3.2.1) are the site's: Debian's pool is the default, a node's Ignition may name others",
			Packages:  map[Family][]string{FamilyDebian: {"systemd-timesyncd"}},
			Services:  []string{"systemd-timesyncd.service"}},
		{ID: "cis-2.4.1.x", Title: "cron's files are readable by root only", Families: both,
			Rationale: "scheduled jobs cannot be read or added by other users",
			Exception: "cron is not in kiln's images (systemd timers run the periodic jobs); the modes are checked where cron is installed",
			Modes: []Mode{
				{Path: "/etc/crontab", Perm: 0o600, Owner: "root", Group: "root", Optional: true},
				{Path: "/etc/cron.hourly", Perm: 0o700, Owner: "root", Group: "root", Optional: true},
				{Path: "/etc/cron.daily", Perm: 0o700, Owner: "root", Group: "root", Optional: true},
				{Path: "/etc/cron.weekly", Perm: 0o700, Owner: "root", Group: "root", Optional: true},
				{Path: "/etc/cron.monthly", Perm: 0o700, Owner: "root", Group: "root", Optional: true},
				{Path: "/etc/cron.d", Perm: 0o700, Owner: "root", Group: "root", Optional: true},
			}},
		moduleRule("cis-3.2.1", "dccp"),
		moduleRule("cis-3.2.2", "tipc"),
		moduleRule("cis-3.2.3", "rds"),
		moduleRule("cis-3.2.4", "sctp"),
		{ID: "cis-3.3.1", Title: "IP forwarding is disabled", Families: both,
			Rationale: "a host that is not a router should not route",
			Exception: "kept on: a Kubernetes node routes its pods' traffic (net.ipv4.ip_forward=1)",
			Sysctls:   []Sysctl{{"net.ipv4.ip_forward", "1"}}},
		{ID: "cis-3.3.2", Title: "packet redirect sending is disabled", Families: both,
			Rationale: "a node that sends ICMP redirects lets others rewrite its neighbours' routes",
			Sysctls:   []Sysctl{{"net.ipv4.conf.all.send_redirects", "0"}, {"net.ipv4.conf.default.send_redirects", "0"}}},
		{ID: "cis-3.3.3", Title: "bogus ICMP responses are ignored", Families: both,
			Rationale: "keeps the kernel log free of forged error responses",
			Sysctls:   []Sysctl{{"net.ipv4.icmp_ignore_bogus_error_responses", "1"}}},
		{ID: "cis-3.3.4", Title: "broadcast ICMP requests are ignored", Families: both,
			Rationale: "a node does not take part in a smurf attack",
			Sysctls:   []Sysctl{{"net.ipv4.icmp_echo_ignore_broadcasts", "1"}}},
		{ID: "cis-3.3.5", Title: "ICMP redirects are not accepted", Families: both,
			Rationale: "an attacker on the network cannot rewrite the node's routes",
			Sysctls: []Sysctl{{"net.ipv4.conf.all.accept_redirects", "0"}, {"net.ipv4.conf.default.accept_redirects", "0"},
				{"net.ipv6.conf.all.accept_redirects", "0"}, {"net.ipv6.conf.default.accept_redirects", "0"}}},
		{ID: "cis-3.3.6", Title: "secure ICMP redirects are not accepted", Families: both,
			Rationale: "redirects from a compromised gateway are refused too",
			Sysctls:   []Sysctl{{"net.ipv4.conf.all.secure_redirects", "0"}, {"net.ipv4.conf.default.secure_redirects", "0"}}},
		{ID: "cis-3.3.7", Title: "reverse path filtering is enabled", Families: both,
			Rationale: "packets with source addresses the node would not route back through that interface are dropped (spoofing)",
			Sysctls:   []Sysctl{{"net.ipv4.conf.all.rp_filter", "1"}, {"net.ipv4.conf.default.rp_filter", "1"}}},
		{ID: "cis-3.3.8", Title: "source routed packets are not accepted", Families: both,
			Rationale: "a sender may not choose the path through the node",
			Sysctls: []Sysctl{{"net.ipv4.conf.all.accept_source_route", "0"}, {"net.ipv4.conf.default.accept_source_route", "0"},
				{"net.ipv6.conf.all.accept_source_route", "0"}, {"net.ipv6.conf.default.accept_source_route", "0"}}},
		{ID: "cis-3.3.9", Title: "suspicious packets are logged", Families: both,
			Rationale: "spoofed and martian packets leave a trace",
			Sysctls:   []Sysctl{{"net.ipv4.conf.all.log_martians", "1"}, {"net.ipv4.conf.default.log_martians", "1"}}},
		{ID: "cis-3.3.10", Title: "TCP SYN cookies are enabled", Families: both,
			Rationale: "a SYN flood does not fill the connection backlog",
			Sysctls:   []Sysctl{{"net.ipv4.tcp_syncookies", "1"}}},
		{ID: "cis-3.3.11", Title: "IPv6 router advertisements are not accepted", Families: both,
			Rationale: "a rogue router on the segment cannot give the node addresses or routes",
			Sysctls:   []Sysctl{{"net.ipv6.conf.all.accept_ra", "0"}, {"net.ipv6.conf.default.accept_ra", "0"}}},
		{ID: "cis-5.1.1", Title: "sshd_config is readable by root only", Families: both,
			Rationale: "the server's configuration is not a map for users",
			Modes:     []Mode{{Path: SSHDConfig, Perm: 0o600, Owner: "root", Group: "root"}, {Path: SSHDDropIn, Perm: 0o600, Owner: "root", Group: "root"}}},
		{ID: "cis-5.4.3.3", Title: "the default user umask is 027", Families: both,
			Rationale: "files a user makes are not readable by everyone",
			Files: []File{{Path: "/etc/profile.d/60-kiln-umask.sh", Mode: 0o644, Owner: "root:root", Purpose: "umask 027 for login shells",
				Contents: []byte("# Written by kiln (images/harden, cis-5.4.3.3).\numask 027\n")}},
			Probes: []Probe{{Name: "a login shell's umask", Command: "bash -lc umask", Want: "0027"}}},
		{ID: "cis-6.2.1.1", Title: "auditd is installed, enabled and running", Families: both,
			Rationale: "security-relevant events are recorded by the kernel, outside the processes that cause them",
			Packages:  map[Family][]string{FamilyDebian: {"auditd"}, FamilyRHEL: {"audit"}},
			Services:  []string{"auditd.service"}},
		{ID: "cis-6.2.1.3", Title: "processes that start before auditd are audited", Families: both,
			Rationale: "the kernel records events from boot on",
			Exception: "not applied by the image: audit=1 and audit_backlog_limit are kernel command line arguments, which belong to the boot loader or the platform (QEMU's -append, the AMI's GRUB)"},
		{ID: "cis-6.2.2.1", Title: "audit log storage is bounded", Families: both,
			Rationale: "the audit log cannot fill the disk",
			Exception: "cis-6.2.2.2 (keep every log, a Level 2 item) is not applied: an immutable node ships its logs off the machine and keeps a bounded local copy (5 files of 8 MiB)",
			Probes: []Probe{{Name: "auditd.conf log size and rotation",
				Command: `grep -E '^(max_log_file|num_logs|max_log_file_action) *=' /etc/audit/auditd.conf | tr -d ' ' | sort | paste -sd,`,
				Want:    "max_log_file=8,max_log_file_action=ROTATE,num_logs=5"}}},
		auditRule("cis-6.2.3.1", "changes to sudoers (scope) are audited",
			"-w /etc/sudoers -p wa -k scope", "-w /etc/sudoers.d -p wa -k scope"),
		auditRule("cis-6.2.3.2", "actions as another user are audited",
			"-a always,exit -F arch=b64 -C euid!=uid -F auid!=unset -S execve -k user_emulation",
			"-a always,exit -F arch=b32 -C euid!=uid -F auid!=unset -S execve -k user_emulation"),
		auditRule("cis-6.2.3.4", "changes to the date and time are audited",
			"-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -k time-change",
			"-a always,exit -F arch=b32 -S adjtimex,settimeofday,clock_settime -k time-change",
			"-w /etc/localtime -p wa -k time-change"),
		auditRule("cis-6.2.3.5", "changes to the network environment are audited",
			"-a always,exit -F arch=b64 -S sethostname,setdomainname -k system-locale",
			"-a always,exit -F arch=b32 -S sethostname,setdomainname -k system-locale",
			"-w /etc/issue -p wa -k system-locale", "-w /etc/issue.net -p wa -k system-locale",
			"-w /etc/hosts -p wa -k system-locale", "-w /etc/hostname -p wa -k system-locale",
			"-w /etc/systemd/network -p wa -k system-locale"),
		auditRule("cis-6.2.3.8", "changes to users and groups are audited",
			"-w /etc/group -p wa -k identity", "-w /etc/passwd -p wa -k identity",
			"-w /etc/gshadow -p wa -k identity", "-w /etc/shadow -p wa -k identity",
			"-w /etc/security/opasswd -p wa -k identity"),
		auditRule("cis-6.2.3.11", "session initiation is audited",
			"-w /var/run/utmp -p wa -k session", "-w /var/log/wtmp -p wa -k session", "-w /var/log/btmp -p wa -k session"),
		auditRule("cis-6.2.3.12", "logins and logouts are audited",
			"-w /var/log/lastlog -p wa -k logins", "-w /var/run/faillock -p wa -k logins"),
		{ID: "cis-6.2.3.14", Title: "changes to the mandatory access controls are audited", Families: debian,
			Rationale:  "the change leaves a record, with the login user that made it",
			AuditRules: []string{"-w /etc/apparmor -p wa -k MAC-policy", "-w /etc/apparmor.d -p wa -k MAC-policy"}},
		auditRule("cis-6.2.3.19", "kernel module loading and unloading is audited",
			"-a always,exit -F arch=b64 -S init_module,finit_module,delete_module -k kernel_modules",
			"-a always,exit -F arch=b32 -S init_module,finit_module,delete_module -k kernel_modules"),
		{ID: "cis-7.1.x", Title: "the account databases have their owners and modes", Families: both,
			Rationale: "password hashes are readable by root and group shadow only; the rest cannot be rewritten by users",
			Modes: []Mode{
				{Path: "/etc/passwd", Perm: 0o644, Owner: "root", Group: "root"},
				{Path: "/etc/passwd-", Perm: 0o644, Owner: "root", Group: "root", Optional: true},
				{Path: "/etc/group", Perm: 0o644, Owner: "root", Group: "root"},
				{Path: "/etc/group-", Perm: 0o644, Owner: "root", Group: "root", Optional: true},
				{Path: "/etc/shadow", Perm: 0o640, Owner: "root", Group: "shadow"},
				{Path: "/etc/shadow-", Perm: 0o640, Owner: "root", Group: "shadow", Optional: true},
				{Path: "/etc/gshadow", Perm: 0o640, Owner: "root", Group: "shadow"},
				{Path: "/etc/gshadow-", Perm: 0o640, Owner: "root", Group: "shadow", Optional: true},
				{Path: "/etc/shells", Perm: 0o644, Owner: "root", Group: "root"},
				{Path: "/etc/security/opasswd", Perm: 0o600, Owner: "root", Group: "root", Optional: true},
			}},
	}
}

// moduleRule is a rule that keeps a kernel module from loading.
func moduleRule(id, module string) Rule {
	r := Rule{ID: id, Title: module + " kernel module is not available", Families: both, Modules: []string{module},
		Rationale: "code the node never uses is attack surface: a kernel bug in it is reachable only if it can load"}
	if slices.Contains([]string{"dccp", "tipc", "rds", "sctp"}, module) {
		r.Rationale = "a network protocol the node never speaks is attack surface: an unprivileged socket() call would load it"
	}
	return r
}

// auditRule is a rule made of audit rules.
func auditRule(id, title string, rules ...string) Rule {
	return Rule{ID: id, Title: title, Families: both, AuditRules: rules,
		Rationale: "the change leaves a record, with the login user that made it"}
}

// Active returns the rules the profile applies to family f: none for baseline, else the level1
// rules for f minus the skipped ones.
func (p Profile) Active(f Family) []Rule {
	if p.Level == Baseline {
		return nil
	}
	var out []Rule
	for _, r := range Rules() {
		if r.Applies(f) && !slices.Contains(p.Skip, r.ID) {
			out = append(out, r)
		}
	}
	return out
}

// ruleIDs are the ids of Rules.
func ruleIDs() []string {
	var ids []string
	for _, r := range Rules() {
		ids = append(ids, r.ID)
	}
	return ids
}

// ruleSteps renders the rules into files and commands (their packages are installed with the
// plan's other packages, rulePackages): one sysctl drop-in,
// one modprobe drop-in and one audit rules file for all the rules (each line under its rule's id),
// the rules' own files, modes and services, and the commands that make it all take effect now, so
// that the verification that follows reads the effective state.
func ruleSteps(rules []Rule) []Step {
	var steps []Step
	var sysctl, modprobe, audit strings.Builder
	var services []string
	for _, r := range rules {
		if len(r.Sysctls) > 0 {
			fmt.Fprintf(&sysctl, "# %s: %s\n", r.ID, r.Title)
			for _, s := range r.Sysctls {
				fmt.Fprintf(&sysctl, "%s = %s\n", s.Key, s.Value)
			}
		}
		for _, m := range r.Modules {
			fmt.Fprintf(&modprobe, "# %s: %s\ninstall %s /bin/false\nblacklist %s\n", r.ID, r.Title, m, m)
		}
		if len(r.AuditRules) > 0 {
			fmt.Fprintf(&audit, "# %s: %s\n", r.ID, r.Title)
			for _, a := range r.AuditRules {
				audit.WriteString(a + "\n")
			}
		}
		for _, fl := range r.Files {
			steps = append(steps, Step{File: &fl})
		}
		for _, m := range r.Modes {
			chmod := fmt.Sprintf("chown %s:%s %s && chmod %04o %s", m.Owner, m.Group, m.Path, uint32(m.Perm), m.Path)
			if m.Optional {
				chmod = fmt.Sprintf("[ ! -e %s ] || { %s; }", m.Path, chmod)
			}
			steps = append(steps, command(r.ID+": "+m.Path+" "+m.Owner+":"+m.Group+" "+fmt.Sprintf("%04o", uint32(m.Perm)), "sh", "-c", chmod))
		}
		services = append(services, r.Services...)
	}
	const header = "# Written by kiln (images/harden): the level1 profile; each line under the rule that wants it.\n"
	if sysctl.Len() > 0 {
		steps = append(steps, file(SysctlDropIn, 0o644, []byte(header+sysctl.String()), "kernel parameters"),
			command("apply the kernel parameters now", "sysctl", "--system"))
	}
	if modprobe.Len() > 0 {
		steps = append(steps, file(ModprobeDropIn, 0o644, []byte(header+modprobe.String()), "kernel modules that may not load"))
	}
	if audit.Len() > 0 {
		steps = append(steps, file(AuditRulesFile, 0o640, []byte(header+audit.String()), "audit rules"),
			command("bounded audit logs: 5 files of 8 MiB, rotated", "sed", "-i", "-E",
				"-e", `s/^max_log_file *=.*/max_log_file = 8/`, "-e", `s/^num_logs *=.*/num_logs = 5/`,
				"-e", `s/^max_log_file_action *=.*/max_log_file_action = ROTATE/`, "/etc/audit/auditd.conf"))
	}
	if len(services) > 0 {
		steps = append(steps, command("enable and start "+strings.Join(services, ", "), append([]string{"systemctl", "enable", "--now"}, services...)...))
	}
	if audit.Len() > 0 {
		steps = append(steps, command("load the audit rules now", "augenrules", "--load"))
	}
	if hasFile(rules, "/etc/systemd/system.conf.d/") {
		steps = append(steps, command("make systemd read its new defaults", "systemctl", "daemon-reexec"))
	}
	return steps
}

func hasFile(rules []Rule, prefix string) bool {
	for _, r := range rules {
		for _, f := range r.Files {
			if strings.HasPrefix(f.Path, prefix) {
				return true
			}
		}
	}
	return false
}

// rulePackages are the packages the rules need on family f.
func rulePackages(rules []Rule, f Family) []string {
	var out []string
	for _, r := range rules {
		for _, p := range r.Packages[f] {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// RulesMarkdown renders the rule set as the table of docs/hardening.md: id, what it checks and how,
// the rationale, and kiln's exception where there is one.
func RulesMarkdown() string {
	var b strings.Builder
	b.WriteString("| id | item | families | applied as, checked with | why | kiln's exception |\n|---|---|---|---|---|---|\n")
	for _, r := range Rules() {
		var how []string
		for _, s := range r.Sysctls {
			how = append(how, fmt.Sprintf("`%s = %s` (sysctl -a)", s.Key, s.Value))
		}
		for _, m := range r.Modules {
			how = append(how, fmt.Sprintf("`install %s /bin/false` (modprobe -n -v, /proc/modules)", m))
		}
		for _, p := range r.Packages[FamilyDebian] {
			how = append(how, "package `"+p+"`")
		}
		for _, u := range r.Services {
			how = append(how, "`"+u+"` enabled and active (systemctl)")
		}
		for _, a := range r.AuditRules {
			how = append(how, "`"+a+"` (auditctl -l)")
		}
		for _, f := range r.Files {
			how = append(how, "`"+f.Path+"`")
		}
		for _, m := range r.Modes {
			opt := ""
			if m.Optional {
				opt = ", if present"
			}
			how = append(how, fmt.Sprintf("`%s` %s:%s %04o (stat%s)", m.Path, m.Owner, m.Group, uint32(m.Perm), opt))
		}
		for _, p := range r.Probes {
			how = append(how, fmt.Sprintf("`%s` prints `%s`", p.Command, p.Want))
		}
		if len(how) == 0 {
			how = []string{"nothing (see the exception)"}
		}
		var fams []string
		for _, f := range r.Families {
			fams = append(fams, string(f))
		}
		cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.ID, cell(r.Title), strings.Join(fams, ", "),
			cell(strings.Join(how, "<br>")), cell(r.Rationale), cell(r.Exception))
	}
	return b.String()
}
