package harden

import (
	"fmt"
	"strconv"
	"strings"
)

// settingKind says how a setting appears in sshd_config and in `sshd -T` output, and so how it is compared.
type settingKind int

const (
	// scalar is one keyword, one value; compared case-insensitively (sshd -T prints yes/no in lower case
	// and LogLevel in upper case, whatever the config said).
	scalar settingKind = iota
	// exact is one keyword, one value compared as is (a path).
	exact
	// commaList is one keyword with a comma-separated list, compared as a set (algorithms).
	commaList
	// repeated is one line per value (HostKey, AllowGroups), compared as a set.
	repeated
)

// sshdSetting is one sshd_config keyword of the profile with the values sshd -T must print for it.
type sshdSetting struct {
	keyword string // as written in sshd_config; sshd -T prints it in lower case
	values  []string
	kind    settingKind
}

// sshdFixed are the settings every kiln profile has; they are not Profile fields because no kiln image
// may differ in them.
var sshdFixed = []sshdSetting{
	{keyword: "PubkeyAuthentication", values: []string{"yes"}},
	{keyword: "PasswordAuthentication", values: []string{"no"}},
	{keyword: "KbdInteractiveAuthentication", values: []string{"no"}},
	{keyword: "AuthenticationMethods", values: []string{"publickey"}},
	{keyword: "PermitRootLogin", values: []string{"no"}},
	{keyword: "PermitEmptyPasswords", values: []string{"no"}},
	{keyword: "PermitUserEnvironment", values: []string{"no"}},
	{keyword: "HostbasedAuthentication", values: []string{"no"}},
	{keyword: "IgnoreRhosts", values: []string{"yes"}},
	{keyword: "GSSAPIAuthentication", values: []string{"no"}},
	{keyword: "DisableForwarding", values: []string{"yes"}},
	// DisableForwarding turns all of these off; they are written too so that what sshd -T prints,
	// and what an auditor reads, says so one by one.
	{keyword: "X11Forwarding", values: []string{"no"}},
	{keyword: "AllowTcpForwarding", values: []string{"no"}},
	{keyword: "AllowAgentForwarding", values: []string{"no"}},
	{keyword: "AllowStreamLocalForwarding", values: []string{"no"}},
	{keyword: "GatewayPorts", values: []string{"no"}},
	{keyword: "PermitTunnel", values: []string{"no"}},
	{keyword: "Compression", values: []string{"no"}},
	{keyword: "UsePAM", values: []string{"yes"}},
}

// sshdSettings returns every setting of the profile in drop-in order.
func (s SSHD) sshdSettings() []sshdSetting {
	one := func(kw string, v any) sshdSetting {
		return sshdSetting{keyword: kw, values: []string{fmt.Sprint(v)}}
	}
	out := append([]sshdSetting(nil), sshdFixed...)
	out = append(out,
		one("MaxAuthTries", s.MaxAuthTries),
		one("MaxSessions", s.MaxSessions),
		one("LoginGraceTime", s.LoginGraceTime),
		one("ClientAliveInterval", s.ClientAliveInterval),
		one("ClientAliveCountMax", s.ClientAliveCountMax),
		one("MaxStartups", s.MaxStartups),
		one("PerSourceMaxStartups", s.PerSourceMaxStartups),
		one("LogLevel", s.LogLevel),
		sshdSetting{keyword: "Banner", values: []string{s.Banner}, kind: exact},
	)
	if len(s.AllowGroups) > 0 {
		out = append(out, sshdSetting{keyword: "AllowGroups", values: s.AllowGroups, kind: repeated})
	}
	out = append(out,
		sshdSetting{keyword: "HostKey", values: []string{HostKeyEd25519, HostKeyRSA}, kind: repeated},
		one("RequiredRSASize", s.RequiredRSASize),
		sshdSetting{keyword: "KexAlgorithms", values: s.KexAlgorithms, kind: commaList},
		sshdSetting{keyword: "Ciphers", values: s.Ciphers, kind: commaList},
		sshdSetting{keyword: "MACs", values: s.MACs, kind: commaList},
	)
	return out
}

// sshdDropIn renders the sshd_config.d drop-in. It sorts first among the drop-ins (00-) because sshd keeps
// the first value it reads for most keywords, and distros ship drop-ins of their own (RHEL's
// 50-redhat.conf with the crypto policy, cloud-init's 50-cloud-init.conf with PasswordAuthentication).
func sshdDropIn(s SSHD) []byte {
	var b strings.Builder
	b.WriteString("# Written by kiln (images/harden). sshd keeps the first value it reads, so this file\n")
	b.WriteString("# sorts first in sshd_config.d; edit the kiln profile, not this file.\n")
	for _, st := range s.sshdSettings() {
		switch st.kind {
		case commaList:
			fmt.Fprintf(&b, "%s %s\n", st.keyword, strings.Join(st.values, ","))
		case repeated:
			if st.keyword == "AllowGroups" {
				fmt.Fprintf(&b, "%s %s\n", st.keyword, strings.Join(st.values, " "))
				continue
			}
			for _, v := range st.values {
				fmt.Fprintf(&b, "%s %s\n", st.keyword, v)
			}
		default:
			fmt.Fprintf(&b, "%s %s\n", st.keyword, st.values[0])
		}
	}
	return []byte(b.String())
}

// hostKeyUnit renders the systemd unit that generates the profile's host keys on first boot: the image
// carries none, and Debian's ssh.service does not make missing ones (its package postinst does, once).
func hostKeyUnit(s SSHD) []byte {
	bits := strconv.Itoa(s.RSAHostKeyBits)
	return []byte(`# Written by kiln (images/harden): the image carries no host keys; make them on first boot.
[Unit]
Description=Generate SSH host keys (ed25519, RSA ` + bits + `)
Before=ssh.service sshd.service
ConditionPathExists=|!` + HostKeyEd25519 + `
ConditionPathExists=|!` + HostKeyRSA + `

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'test -e ` + HostKeyEd25519 + ` || ssh-keygen -q -t ed25519 -N "" -f ` + HostKeyEd25519 + `'
ExecStart=/bin/sh -c 'test -e ` + HostKeyRSA + ` || ssh-keygen -q -t rsa -b ` + bits + ` -N "" -f ` + HostKeyRSA + `'

[Install]
WantedBy=multi-user.target
`)
}
