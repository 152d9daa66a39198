package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/spf13/cobra"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/images/buildaccess"
	"github.com/kiln-dev/kiln/images/harden"
	"github.com/kiln-dev/kiln/images/packer/hardening"
	"github.com/kiln-dev/kiln/images/templates"
	"github.com/kiln-dev/kiln/sshexec"
)

func newImage(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Bake hardened machine images with Packer and audit running machines",
	}
	cmd.AddCommand(newImageBuild(g), newImageAudit(g))
	return cmd
}

func newImageBuild(g *globals) *cobra.Command {
	var (
		target, packerPath, workDir, baseImage string
		vars, varFiles                         []string
	)
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Bake a hardened image with packer build and kiln's template for the target",
		Long: `build writes kiln's Packer template for the target (embedded in kiln: qemu for qcow2 or raw images,
aws for amazon-ebs, vsphere for vsphere-clone) into a work directory and runs packer build on it,
passing Packer's progress through. The template boots the base image with a build-time Ignition
config (the build user and its key), runs the kiln-harden provisioner, which hardens the machine,
verifies sshd -T and apt-config dump against kiln's profile and fails the build on any drift, and
cleans the image. packer and its plugins (kiln's packer-plugin-kiln and the target's builder) must be
installed: packer finds them in PACKER_PLUGIN_PATH.

For the qemu target, kiln makes the build access itself when neither build_ignition nor
ssh_private_key_file is given (by --var, --var-file, a *.auto.pkrvars.hcl file in the work directory
or PKR_VAR_NAME): a one-time ed25519 build key and the build Ignition config that creates the build
user (ssh_username, default packer) with its public half and passwordless sudo, both written into the
work directory as kiln-build-key and kiln-build.ign (mode 0600), passed to packer, and removed when
the build ends. kiln-harden removes the build user from the image. Giving one of the two without the
other is an error.

--base-image DIR names a kiln base image directory (hack/tools.sh base-image: disk.qcow2, vmlinuz,
initrd.img, cmdline) and fills base_image, kernel, initrd and kernel_cmdline from it; a variable
given otherwise wins.`,
		Example: `  kiln image build --target qemu --base-image ~/.cache/kiln/base-image/KEY --var accelerator=tcg
  kiln image build --target qemu --var base_image=disk.qcow2 --var kernel=vmlinuz --var initrd=initrd.img \
    --var build_ignition=build.ign --var ssh_private_key_file=build_key --var accelerator=tcg
  kiln image build --target qemu --base-image DIR --var format=raw   # a raw image for bare metal`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			for _, v := range vars {
				if !strings.Contains(v, "=") {
					return fmt.Errorf("--var %q: want NAME=VALUE", v)
				}
			}
			if baseImage != "" && target != "qemu" {
				return fmt.Errorf("--base-image: only the qemu target boots a kiln base image directory (--target %s)", target)
			}
			dir := workDir
			if dir == "" {
				tmp, err := os.MkdirTemp("", "kiln-image-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			} else if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			tpl, err := templates.Write(dir, target)
			if err != nil {
				return fmt.Errorf("--target: %w", err)
			}
			args := []string{"build", "-color=false"}
			var abs []string
			for _, f := range varFiles {
				a, err := filepath.Abs(f)
				if err != nil {
					return err
				}
				abs = append(abs, a)
				args = append(args, "-var-file", a)
			}
			given, err := givenVars(vars, abs, dir, os.Environ())
			if err != nil {
				return err
			}
			for _, v := range vars {
				args = append(args, "-var", v)
			}
			if baseImage != "" {
				bv, err := baseImageVars(baseImage, given)
				if err != nil {
					return err
				}
				for _, v := range bv {
					args = append(args, "-var", v)
				}
			}
			if target == "qemu" {
				need, err := buildaccess.Needed(keys(given))
				if err != nil {
					return fmt.Errorf("--var: %w", err)
				}
				if need {
					user := given[buildaccess.VarUser]
					if user == "" {
						user = buildaccess.DefaultUser
					}
					access, err := buildaccess.Write(dir, user, rand.Reader)
					if err != nil {
						return err
					}
					defer func() { err = errors.Join(err, access.Remove()) }()
					fmt.Fprintf(g.errOut, "kiln: one-time build access for %s: %s, %s (removed after the build)\n", user, access.KeyPath, access.IgnitionPath)
					for _, v := range access.Vars() {
						args = append(args, "-var", v)
					}
				}
			}
			args = append(args, filepath.Base(tpl))
			p := exec.CommandContext(cmd.Context(), packerPath, args...)
			p.Dir = dir
			p.Stdout, p.Stderr = g.out, g.errOut
			fmt.Fprintf(g.errOut, "kiln: packer %s (in %s)\n", strings.Join(redactVars(args), " "), dir)
			if err := p.Run(); err != nil {
				return fmt.Errorf("packer build %s: %w", filepath.Base(tpl), err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "qemu", "qemu, aws or vsphere")
	completeFlag(cmd, "target", slices.Sorted(maps.Keys(templates.Targets))...)
	f.StringVar(&packerPath, "packer", envOr("KILN_PACKER", "packer"), "the packer binary (env KILN_PACKER)")
	f.StringArrayVar(&vars, "var", nil, "template variable NAME=VALUE (repeatable; the template's header lists them)")
	f.StringArrayVar(&varFiles, "var-file", nil, "Packer variables file (repeatable)")
	f.StringVar(&workDir, "work-dir", "", "directory for the template and Packer's relative output (default: a temporary directory, removed afterwards; set it to keep a qemu image's output-kiln-qemu/)")
	f.StringVar(&baseImage, "base-image", "", "qemu: a kiln base image directory (disk.qcow2, vmlinuz, initrd.img, cmdline) that fills base_image, kernel, initrd and kernel_cmdline")
	cmd.MarkFlagDirname("base-image")
	return cmd
}

// Files of a kiln base image directory (hack/tools.sh base-image), and the qemu template variables
// each fills.
var baseImageFiles = []struct{ file, variable string }{
	{"disk.qcow2", "base_image"},
	{"vmlinuz", "kernel"},
	{"initrd.img", "initrd"},
	{"cmdline", "kernel_cmdline"},
}

// baseImageVars returns the -var values that boot the kiln base image in dir: base_image, kernel and
// initrd as absolute paths (packer runs in the work directory), kernel_cmdline as the cmdline file's
// text. A variable in given is left to its given value. Every missing file is reported at once.
func baseImageVars(dir string, given map[string]string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("--base-image %s: %w", dir, err)
	}
	var out []string
	var errs []error
	for _, bf := range baseImageFiles {
		if _, ok := given[bf.variable]; ok {
			continue
		}
		p := filepath.Join(abs, bf.file)
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("--base-image: %s for %s: %w", p, bf.variable, err))
			continue
		}
		if !fi.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("--base-image: %s for %s: not a regular file", p, bf.variable))
			continue
		}
		value := p
		if bf.variable == "kernel_cmdline" {
			data, err := readlimit.ReadFile(p, readlimit.Spec)
			if err != nil {
				errs = append(errs, fmt.Errorf("--base-image: %s for %s: %w", p, bf.variable, err))
				continue
			}
			value = strings.TrimSpace(string(data))
			if value == "" || strings.Contains(value, "\n") {
				errs = append(errs, fmt.Errorf("--base-image: %s for %s: want one line of kernel arguments", p, bf.variable))
				continue
			}
		}
		out = append(out, bf.variable+"="+value)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// givenVars returns the template variables that are given, by name, with their value where it is a
// literal string (else ""): --var NAME=VALUE, the top-level attributes of the --var-file files (HCL
// or JSON by their extension), the *.auto.pkrvars.hcl and *.auto.pkrvars.json files that Packer reads
// from the work directory, and PKR_VAR_NAME in environ. Later sources override earlier ones, as
// Packer's own precedence puts --var over files over the environment.
func givenVars(vars, varFiles []string, workDir string, environ []string) (map[string]string, error) {
	given := map[string]string{}
	for _, kv := range environ {
		if rest, ok := strings.CutPrefix(kv, "PKR_VAR_"); ok {
			name, value, _ := strings.Cut(rest, "=")
			given[name] = value
		}
	}
	auto, err := filepath.Glob(filepath.Join(workDir, "*.auto.pkrvars.*"))
	if err != nil {
		return nil, err
	}
	slices.Sort(auto)
	for _, f := range append(auto, varFiles...) {
		if err := varFileAttrs(f, given); err != nil {
			return nil, err
		}
	}
	for _, v := range vars {
		name, value, _ := strings.Cut(v, "=")
		given[name] = value
	}
	return given, nil
}

// varFileAttrs adds the top-level attributes of a Packer variables file to given.
func varFileAttrs(path string, given map[string]string) error {
	src, err := readlimit.ReadFile(path, readlimit.Spec)
	if err != nil {
		return fmt.Errorf("--var-file: %w", err)
	}
	parser := hclparse.NewParser()
	var file *hcl.File
	var diags hcl.Diagnostics
	if strings.HasSuffix(path, ".json") {
		file, diags = parser.ParseJSON(src, path)
	} else {
		file, diags = parser.ParseHCL(src, path)
	}
	if diags.HasErrors() {
		return fmt.Errorf("--var-file: %w", diags)
	}
	attrs, diags := file.Body.JustAttributes()
	if diags.HasErrors() {
		return fmt.Errorf("--var-file: %w", diags)
	}
	for name, a := range attrs {
		given[name] = ""
		if v, d := a.Expr.Value(nil); !d.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
			given[name] = v.AsString()
		}
	}
	return nil
}

func keys(m map[string]string) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// redactVars hides the values of variables whose name suggests a secret.
func redactVars(args []string) []string {
	out := slices.Clone(args)
	for i := 1; i < len(out); i++ {
		if out[i-1] != "-var" {
			continue
		}
		name, _, _ := strings.Cut(out[i], "=")
		l := strings.ToLower(name)
		if strings.Contains(l, "password") || strings.Contains(l, "secret") || strings.Contains(l, "token") {
			out[i] = name + "=REDACTED"
		}
	}
	return out
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// auditOptions are the inputs of `kiln image audit`.
type auditOptions struct {
	host, user, keyPath, specPath, knownHosts string
	port                                      int
	insecureHostKey                           bool
	allowGroups                               []string
	level, rebootTime                         string
	automaticReboot                           bool
	timeout                                   time.Duration
}

func newImageAudit(g *globals) *cobra.Command {
	var o auditOptions
	cmd := &cobra.Command{
		Use:   "audit HOST",
		Short: "Check a running machine against kiln's hardening profile over SSH; exit non-zero on drift",
		Long: `audit logs in to HOST over SSH (key only: -i FILE, or the cluster's generated key from the state
store with -f cluster.yaml), reads the effective sshd configuration (sudo sshd -T), the apt
configuration (apt-config dump) and, at level level1, the state each rule checks (sysctl -a,
modprobe -n -v, systemctl, auditctl -l, file modes: docs/hardening.md), compares them with kiln's
hardening profile and prints every drift. The level and the skipped rules are those the image
recorded when it was built (` + harden.Provenance + `), unless --level says otherwise.
It exits non-zero when there is one. The host key must be in --known-hosts (an unknown or changed
key is an error) unless --insecure-ignore-host-key is given; --timeout bounds the whole exchange.
For a cluster's machines, 'kiln known-hosts --output-file FILE' writes the host keys they reported and
kiln pinned, for --known-hosts FILE.`,
		Example: `  kiln image audit 10.0.1.12 -f cluster.yaml --known-hosts ~/.ssh/known_hosts
  kiln known-hosts -f cluster.yaml --output-file known_hosts
  kiln image audit 127.0.0.1 -p 2222 -f cluster.yaml --known-hosts known_hosts`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.host = args[0]
			signer, user, err := g.auditSigner(&o, cmd.Flags().Changed("file"))
			if err != nil {
				return err
			}
			drifts, err := auditHost(cmd.Context(), o, user, signer, g.errOut)
			if err != nil {
				return err
			}
			for _, d := range drifts {
				fmt.Fprintln(g.out, d)
			}
			if len(drifts) > 0 {
				return fmt.Errorf("image audit %s: %d drifts from the hardening profile", o.host, len(drifts))
			}
			fmt.Fprintf(g.out, "%s: no drift from the hardening profile\n", o.host)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&o.port, "port", "p", 22, "SSH port")
	f.StringVarP(&o.user, "user", "l", "", "user to log in as (default: the spec's admin user, else kiln)")
	f.StringVarP(&o.keyPath, "identity", "i", "", "private key file (default: the cluster's generated key, with -f)")
	f.StringVarP(&o.specPath, "file", "f", "cluster.yaml", "cluster spec whose generated SSH key and admin user to use")
	f.StringVar(&o.knownHosts, "known-hosts", filepath.Join(homeDir(), ".ssh", "known_hosts"), "known_hosts file that must hold the host's key")
	f.BoolVar(&o.insecureHostKey, "insecure-ignore-host-key", false, "accept any host key (prints its fingerprint)")
	f.StringVar(&o.level, "level", "", "the hardening level to check, level1 or baseline (default: the level and skipped rules recorded in the image's "+harden.Provenance+", else level1)")
	f.StringSliceVar(&o.allowGroups, "allow-groups", nil, "the allow_groups the image was baked with")
	f.StringVar(&o.rebootTime, "automatic-reboot-time", "", "the automatic_reboot_time the image was baked with (default 02:00)")
	f.BoolVar(&o.automaticReboot, "automatic-reboot", false, "the image was baked with reboot_agent = false and automatic_reboot = true (unattended-upgrades reboots by itself, without kiln's reboot agent)")
	f.DurationVar(&o.timeout, "timeout", sshexec.DefaultTimeout, "how long the SSH connection and the audit's commands may take")
	return cmd
}

func homeDir() string {
	h, _ := os.UserHomeDir()
	return h
}

// auditSigner returns the key and user to log in with: the key of -i, else the cluster's generated
// key; the user of -l, else the spec's admin user when the spec is read, else kiln.
func (g *globals) auditSigner(o *auditOptions, specGiven bool) (ssh.Signer, string, error) {
	user := o.user
	if o.keyPath != "" && !specGiven {
		pem, err := readlimit.ReadFile(o.keyPath, readlimit.Key)
		if err != nil {
			return nil, "", fmt.Errorf("-i: %w", err)
		}
		s, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			return nil, "", fmt.Errorf("-i %s: %w", o.keyPath, err)
		}
		if user == "" {
			user = "kiln"
		}
		return s, user, nil
	}
	c, b, err := g.loadCluster(o.specPath)
	if err != nil {
		return nil, "", err
	}
	if user == "" {
		user = c.Spec.SSH.User
	}
	if o.keyPath != "" {
		s, _, err := g.auditSigner(&auditOptions{keyPath: o.keyPath, user: user}, false)
		return s, user, err
	}
	if len(b.SSH.PrivateKeyPEM) == 0 {
		return nil, "", fmt.Errorf("cluster %s uses your own SSH keys; pass -i with the private key", c.Metadata.Name)
	}
	s, err := ssh.ParsePrivateKey(b.SSH.PrivateKeyPEM)
	if err != nil {
		return nil, "", fmt.Errorf("cluster %s: SSH key: %w", c.Metadata.Name, err)
	}
	return s, user, nil
}

// auditHost logs in and returns every drift of the machine from the profile, one line each.
func auditHost(ctx context.Context, o auditOptions, user string, signer ssh.Signer, warn io.Writer) ([]string, error) {
	cfg := sshexec.Config{User: user, Signer: signer, KnownHosts: o.knownHosts, Timeout: o.timeout}
	if o.insecureHostKey {
		cfg.InsecureHostKey = func(_ string, key ssh.PublicKey) {
			fmt.Fprintf(warn, "kiln: warning: host key %s not checked (--insecure-ignore-host-key)\n", ssh.FingerprintSHA256(key))
		}
	}
	addr := net.JoinHostPort(o.host, strconv.Itoa(o.port))
	client, err := sshexec.Dial(ctx, addr, cfg)
	if errors.Is(err, sshexec.ErrKnownHostsFile) {
		return nil, fmt.Errorf("--known-hosts: %w (or pass --insecure-ignore-host-key)", err)
	}
	if err != nil {
		return nil, err
	}
	defer client.Close()
	run := func(cmd string) ([]byte, error) {
		res, err := client.Run(ctx, cmd)
		return res.Stdout, err
	}
	osRelease, err := run("cat /etc/os-release")
	if err != nil {
		return nil, err
	}
	distro, err := hardening.ParseOSRelease(osRelease)
	if err != nil {
		return nil, fmt.Errorf("%s: /etc/os-release: %w", addr, err)
	}
	// The level and skipped rules the image was built with, from its record, unless --level says.
	p := harden.DefaultProfile()
	record, err := run("cat " + harden.Provenance + " 2>/dev/null; true")
	if err != nil {
		return nil, err
	}
	switch {
	case o.level != "":
		if p, err = harden.ProfileAt(harden.Level(o.level)); err != nil {
			return nil, fmt.Errorf("--level: %w", err)
		}
	case len(bytes.TrimSpace(record)) > 0:
		rec, err := harden.ParseRecord(record)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", addr, err)
		}
		if p, err = rec.Profile(); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", addr, harden.Provenance, err)
		}
	}
	p.SSHD.AllowGroups = o.allowGroups
	if o.rebootTime != "" {
		p.Upgrades.AutomaticRebootTime = o.rebootTime
	}
	if o.automaticReboot {
		p.Upgrades.RebootAgent, p.Upgrades.AutomaticReboot = false, true
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	drifts, err := harden.Audit(p, distro, func(argv []string) ([]byte, error) {
		return run(harden.ShellQuote(append([]string{"sudo", "-n"}, argv...)))
	})
	if err != nil {
		return nil, err
	}
	lines := make([]string, len(drifts))
	for i, d := range drifts {
		lines[i] = d.String()
	}
	return lines, nil
}
