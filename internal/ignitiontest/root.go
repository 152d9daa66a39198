package ignitiontest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// basePasswd and baseGroup are Debian's base-passwd master files (bookworm),
// the users and groups every Debian system starts with.
const basePasswd = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
games:x:5:60:games:/usr/games:/usr/sbin/nologin
man:x:6:12:man:/var/cache/man:/usr/sbin/nologin
lp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
news:x:9:9:news:/var/spool/news:/usr/sbin/nologin
uucp:x:10:10:uucp:/var/spool/uucp:/usr/sbin/nologin
proxy:x:13:13:proxy:/bin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
backup:x:34:34:backup:/var/backups:/usr/sbin/nologin
list:x:38:38:Mailing List Manager:/var/list:/usr/sbin/nologin
irc:x:39:39:ircd:/run/ircd:/usr/sbin/nologin
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`

const baseGroup = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
news:x:9:
uucp:x:10:
man:x:12:
proxy:x:13:
kmem:x:15:
dialout:x:20:
fax:x:21:
voice:x:22:
cdrom:x:24:
floppy:x:25:
tape:x:26:
sudo:x:27:
audio:x:29:
dip:x:30:
www-data:x:33:
backup:x:34:
operator:x:37:
list:x:38:
irc:x:39:
src:x:40:
shadow:x:42:
utmp:x:43:
video:x:44:
sasl:x:45:
plugdev:x:46:
staff:x:50:
games:x:60:
users:x:100:
nogroup:x:65534:
`

// shadowGID is the gid of Debian's "shadow" group, which owns /etc/shadow and
// /etc/gshadow.
const shadowGID = 42

// fallbackLoginDefs stands in for the host's /etc/login.defs where it has
// none: the settings of Debian's that useradd acts on.
const fallbackLoginDefs = `MAIL_DIR	/var/mail
UMASK		022
PASS_MAX_DAYS	99999
PASS_MIN_DAYS	0
PASS_WARN_AGE	7
UID_MIN		1000
UID_MAX		60000
SUB_UID_MIN	100000
SUB_UID_MAX	600100000
SUB_UID_COUNT	65536
GID_MIN		1000
GID_MAX		60000
SUB_GID_MIN	100000
SUB_GID_MAX	600100000
SUB_GID_COUNT	65536
DEFAULT_HOME	yes
USERGROUPS_ENAB	yes
ENCRYPT_METHOD	SHA512
`

// nsswitch makes the lookups that Ignition does inside root (getpwnam and
// getgrnam after chroot) read root's own files.
const nsswitch = `passwd:         files
group:          files
shadow:         files
gshadow:        files
`

// MakeRoot lays out in dir (created if missing) the minimal system that
// Ignition's files stage needs to create users, write files with owners and
// enable units: see Apply. It reads the host's /etc/login.defs and
// /etc/default/useradd, so that useradd --root behaves as on a Debian image,
// and writes nothing outside dir.
func MakeRoot(dir string) error {
	for _, d := range []string{
		"etc/default",
		"etc/skel",
		"etc/ssh/sshd_config.d",
		"etc/systemd/system",
		"home",
		"root",
		"tmp",
		"var/log",
	} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("make root: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "root"), 0o700); err != nil {
		return fmt.Errorf("make root: %w", err)
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o777|fs.ModeSticky); err != nil {
		return fmt.Errorf("make root: %w", err)
	}

	loginDefs, err := os.ReadFile("/etc/login.defs")
	if errors.Is(err, fs.ErrNotExist) {
		loginDefs, err = []byte(fallbackLoginDefs), nil
	}
	if err != nil {
		return fmt.Errorf("make root: %w", err)
	}
	files := []rootFile{
		{path: "etc/passwd", data: basePasswd, mode: 0o644},
		{path: "etc/group", data: baseGroup, mode: 0o644},
		{path: "etc/shadow", data: shadowLines(basePasswd, ":*:19000:0:99999:7:::"), mode: 0o640, gid: shadowGID},
		{path: "etc/gshadow", data: shadowLines(baseGroup, ":*::"), mode: 0o640, gid: shadowGID},
		{path: "etc/login.defs", data: string(loginDefs), mode: 0o644},
		{path: "etc/nsswitch.conf", data: nsswitch, mode: 0o644},
	}
	if useradd, err := os.ReadFile("/etc/default/useradd"); err == nil {
		files = append(files, rootFile{path: "etc/default/useradd", data: string(useradd), mode: 0o644})
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("make root: %w", err)
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			return fmt.Errorf("make root: %w", err)
		}
		// WriteFile's mode is subject to the umask and ignored for an
		// existing file.
		if err := os.Chmod(p, f.mode); err != nil {
			return fmt.Errorf("make root: %w", err)
		}
		if f.gid != 0 {
			if err := os.Chown(p, 0, f.gid); err != nil {
				return fmt.Errorf("make root: %w", err)
			}
		}
	}
	return nil
}

// rootFile is a file that MakeRoot writes: path relative to the root, owned by
// root and group gid.
type rootFile struct {
	path string
	data string
	mode fs.FileMode
	gid  int
}

// shadowLines returns one line per entry of a passwd or group file: its name
// followed by rest.
func shadowLines(entries, rest string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(entries), "\n") {
		name, _, _ := strings.Cut(line, ":")
		b.WriteString(name + rest + "\n")
	}
	return b.String()
}
