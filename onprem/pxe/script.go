package pxe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
)

// ChainScript is /boot.ipxe: every iPXE client gets it and chains to its own script, saying who it is.
func ChainScript(base string) string {
	return "#!ipxe\n" +
		"chain " + base + "/ipxe?mac=${mac:hexhyp}&uuid=${uuid}&hostname=${hostname}\n"
}

// Script renders the iPXE script of machine m booting profile p from the server at base (scheme, host
// and port, no trailing slash). The kernel arguments get the machine's own Ignition URL, signed with
// token.
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

// Token signs a machine's Ignition URL: only the machine that was given its script knows it, so a
// machine cannot fetch another's config by changing the MAC in its URL.
func Token(key []byte, mac string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("kiln-pxe-ignition\x00"))
	h.Write([]byte(mac))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// validToken compares in constant time.
func validToken(key []byte, mac, token string) bool {
	want := Token(key, mac)
	return hmac.Equal([]byte(want), []byte(token))
}
