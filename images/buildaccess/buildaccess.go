package buildaccess

import (
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/vincent-petithory/dataurl"
	"golang.org/x/crypto/ssh"
)

// The template variables of images/templates/qemu.pkr.hcl that the build access fills or reads.
const (
	VarIgnition = "build_ignition"
	VarKey      = "ssh_private_key_file"
	VarUser     = "ssh_username"
)

// DefaultUser is the build user the qemu template logs in as unless ssh_username says otherwise.
const DefaultUser = "packer"

// Files written into the work directory.
const (
	KeyFile      = "kiln-build-key"
	IgnitionFile = "kiln-build.ign"
)

// SudoersFile is the build user's passwordless sudo grant; kiln-harden removes it with the build user.
const SudoersFile = "/etc/sudoers.d/90-kiln-build"

// Needed decides from the template variables that are given (by name) whether kiln makes the build
// access: yes when neither build_ignition nor ssh_private_key_file is given, no when both are, and an
// error naming the given one when only one of them is.
func Needed(given map[string]bool) (bool, error) {
	ign, key := given[VarIgnition], given[VarKey]
	switch {
	case ign && key:
		return false, nil
	case ign:
		return false, fmt.Errorf("%s is %w %s: pass both, or neither and kiln makes a one-time pair", VarIgnition, ErrHalfGiven, VarKey)
	case key:
		return false, fmt.Errorf("%s is %w %s: pass both, or neither and kiln makes a one-time pair", VarKey, ErrHalfGiven, VarIgnition)
	}
	return true, nil
}

// Key is a build key: the private half in OpenSSH PEM format and the public half as an
// authorized_keys line.
type Key struct {
	PrivatePEM    []byte
	AuthorizedKey string
}

// NewKey makes an ed25519 key from random.
func NewKey(random io.Reader) (Key, error) {
	_, priv, err := ed25519.GenerateKey(random)
	if err != nil {
		return Key{}, fmt.Errorf("buildaccess: build key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "kiln build key")
	if err != nil {
		return Key{}, fmt.Errorf("buildaccess: build key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return Key{}, fmt.Errorf("buildaccess: build key: %w", err)
	}
	return Key{
		PrivatePEM:    pem.EncodeToMemory(block),
		AuthorizedKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))),
	}, nil
}

// Ignition returns the build-time Ignition config: user with authorizedKey in the authorized_keys
// file Debian's sshd reads, and passwordless sudo. It is checked with Ignition's own validator.
func Ignition(user, authorizedKey string) ([]byte, error) {
	if user == "" || strings.ContainsAny(user, "/ \t\n:") {
		return nil, fmt.Errorf("buildaccess: %s %q: not a user name", VarUser, user)
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey)); err != nil {
		return nil, fmt.Errorf("buildaccess: authorized key: %w", err)
	}
	home := "/home/" + user
	owner := types.NodeUser{Name: &user}
	group := types.NodeGroup{Name: &user}
	yes := true
	cfg := types.Config{
		Ignition: types.Ignition{Version: types.MaxVersion.String()},
		Passwd: types.Passwd{Users: []types.PasswdUser{{
			Name:              user,
			SSHAuthorizedKeys: []types.SSHAuthorizedKey{types.SSHAuthorizedKey(authorizedKey)},
		}}},
		Storage: types.Storage{
			Directories: []types.Directory{{
				Node:               types.Node{Path: home + "/.ssh", User: owner, Group: group},
				DirectoryEmbedded1: types.DirectoryEmbedded1{Mode: intPtr(0o700)},
			}},
			Files: []types.File{
				dataFile(home+"/.ssh/authorized_keys", 0o600, authorizedKey+"\n", owner, group, &yes),
				dataFile(SudoersFile, 0o440, user+" ALL=(ALL) NOPASSWD:ALL\n", types.NodeUser{}, types.NodeGroup{}, &yes),
			},
		},
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("buildaccess: %w", err)
	}
	if _, rpt, err := v3_5.Parse(out); err != nil {
		return nil, fmt.Errorf("buildaccess: build ignition config: %w: %s", err, rpt.String())
	}
	return out, nil
}

func dataFile(path string, mode int, contents string, user types.NodeUser, group types.NodeGroup, overwrite *bool) types.File {
	src := dataurl.EncodeBytes([]byte(contents))
	return types.File{
		Node: types.Node{Path: path, User: user, Group: group, Overwrite: overwrite},
		FileEmbedded1: types.FileEmbedded1{
			Mode:     intPtr(mode),
			Contents: types.Resource{Source: &src},
		},
	}
}

func intPtr(i int) *int { return &i }

// Access is a build key and its build config written into a directory.
type Access struct {
	KeyPath, IgnitionPath string
}

// Write makes a build key from random and the build config for user, and writes them into dir as
// KeyFile and IgnitionFile, readable by the owner only. A file of the same name left by an earlier
// run is replaced.
func Write(dir, user string, random io.Reader) (*Access, error) {
	key, err := NewKey(random)
	if err != nil {
		return nil, err
	}
	ign, err := Ignition(user, key.AuthorizedKey)
	if err != nil {
		return nil, err
	}
	a := &Access{KeyPath: filepath.Join(dir, KeyFile), IgnitionPath: filepath.Join(dir, IgnitionFile)}
	if err := writePrivate(a.KeyPath, key.PrivatePEM); err != nil {
		return nil, err
	}
	if err := writePrivate(a.IgnitionPath, ign); err != nil {
		return nil, errors.Join(err, a.Remove())
	}
	return a, nil
}

// writePrivate writes data to a new file at path with mode 0600, whatever the umask.
func writePrivate(path string, data []byte) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("buildaccess: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("buildaccess: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("buildaccess: write %s: %w", path, err)
	}
	return nil
}

// Vars returns the template variables that pass the access to packer, as NAME=VALUE.
func (a *Access) Vars() []string {
	return []string{VarIgnition + "=" + a.IgnitionPath, VarKey + "=" + a.KeyPath}
}

// Remove deletes both files; one already gone is not an error.
func (a *Access) Remove() error {
	var errs []error
	for _, p := range []string{a.KeyPath, a.IgnitionPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("buildaccess: %w", err))
		}
	}
	return errors.Join(errs...)
}
