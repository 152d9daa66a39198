package firewall

// UnitName is the systemd unit that loads a node's ruleset.
const UnitName = "kiln-firewall.service"

// RulesetPath is where Ignition writes the node's ruleset (the output of Nftables for its role).
const RulesetPath = "/etc/kiln/firewall.nft"

// Unit returns the text of UnitName, for Ignition to write and enable. The unit loads RulesetPath
// with nft once, early in boot and before network-pre.target, so that no interface is up without
// the firewall; it has no default dependencies so that it can run that early, and it is pulled in
// by sysinit.target. It has no ExecStop: stopping the unit leaves the firewall in place. ExecReload
// loads the file again, which replaces the table (see Nftables).
//
// nft loads a file atomically, so a ruleset that does not load leaves no kiln table at all, and the
// unit failing does not hold the network back (network-pre.target wants it, it does not require it).
// Rulesets are checked with `nft -c` when rendered, so that points to a kernel without nf_tables.
func Unit() string {
	return `[Unit]
Description=kiln node firewall (nftables)
Documentation=man:nft(8)
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
StandardInput=null
ExecStart=/usr/sbin/nft -f ` + RulesetPath + `
ExecReload=/usr/sbin/nft -f ` + RulesetPath + `

[Install]
WantedBy=sysinit.target
`
}
