package pxe

import (
	"fmt"
	"net/url"
	"strings"
)

// ChainScript is /boot.ipxe: every iPXE client gets it and chains to its own script, saying who it is.
func ChainScript(base string) string {
	return "#!ipxe\n" +
		"chain " + base + "/ipxe?mac=${mac:hexhyp}&uuid=${uuid}&hostname=${hostname}\n"
}

// NoBootScript is the script of every machine that may not install now, known or not: it exits, and
// the firmware goes on to its next boot device.
const NoBootScript = "#!ipxe\nexit\n"

// Script renders the iPXE script of machine m booting profile p from the server at base (scheme, host
// and port, no trailing slash). The kernel arguments get the machine's own Ignition URL, with the
// one-time token of its enrollment ticket.
func Script(base string, m *Machine, p *Profile, token string) string {
	var b strings.Builder
	mac := url.QueryEscape(m.MAC)
	b.WriteString("#!ipxe\n")
	fmt.Fprintf(&b, "# kiln: machine %s (%s), profile %s\n", m.Name, m.MAC, p.Name)
	args := make([]string, 0, len(p.Args)+len(p.Initrd)+3)
	for i := range p.Initrd {
		args = append(args, fmt.Sprintf("initrd=initrd%d", i))
	}
	args = append(args, p.Args...)
	args = append(args,
		"ignition.firstboot",
		"ignition.platform.id=metal",
		fmt.Sprintf("ignition.config.url=%s/ignition?mac=%s&token=%s", base, mac, token))
	fmt.Fprintf(&b, "kernel %s/assets/%s?mac=%s %s\n", base, assetURLPath(p.Kernel), mac, strings.Join(args, " "))
	for i, f := range p.Initrd {
		fmt.Fprintf(&b, "initrd --name initrd%d %s/assets/%s?mac=%s\n", i, base, assetURLPath(f), mac)
	}
	b.WriteString("boot\n")
	return b.String()
}

func assetURLPath(p string) string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i := range parts {
		parts[i] = url.PathEscape(parts[i])
	}
	return strings.Join(parts, "/")
}
