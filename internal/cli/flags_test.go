package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
)

// groups are the command groups of the tree: commands with subcommands and nothing to run of
// their own.
func groups(cmd *cobra.Command) []string {
	var out []string
	if cmd.HasSubCommands() {
		out = append(out, cmd.CommandPath())
	}
	for _, c := range cmd.Commands() {
		out = append(out, groups(c)...)
	}
	return out
}

func TestUnknownCommand(t *testing.T) {
	tests := []struct {
		group []string
		arg   string
		// suggest is the command a typo is taken for, if any.
		suggest string
	}{
		{group: nil, arg: "nosuch"},
		{group: nil, arg: "aply", suggest: "apply"},
		{group: []string{"audit"}, arg: "nosuch"},
		{group: []string{"cluster"}, arg: "nosuch"},
		{group: []string{"completion"}, arg: "nosuch"},
		{group: []string{"controlplane"}, arg: "nosuch"},
		{group: []string{"get"}, arg: "nosuch"},
		{group: []string{"get"}, arg: "nodez", suggest: "nodes"},
		{group: []string{"image"}, arg: "nosuch"},
		{group: []string{"lint"}, arg: "nosuch"},
		{group: []string{"pxe"}, arg: "nosuch"},
		{group: []string{"render"}, arg: "nosuch"},
		{group: []string{"rotate"}, arg: "nosuch"},
		{group: []string{"rotate"}, arg: "encryption-kye", suggest: "encryption-key"},
	}
	// Every group of the tree is in the table: a new one must say how it refuses an unknown command.
	var covered []string
	for _, tc := range tests {
		covered = append(covered, strings.Join(append([]string{"kiln"}, tc.group...), " "))
	}
	if missing := slices.DeleteFunc(groups(NewRoot()), func(g string) bool { return slices.Contains(covered, g) }); len(missing) > 0 {
		t.Errorf("command groups without a case: %v", missing)
	}

	dir := t.TempDir()
	for _, tc := range tests {
		args := append(slices.Clone(tc.group), tc.arg)
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := kiln(t, dir, args...)
			path := strings.Join(append([]string{"kiln"}, tc.group...), " ")
			if code == 0 {
				t.Fatalf("exit 0, want a failure:\n%s%s", out, errOut)
			}
			for _, want := range []string{`unknown command "` + tc.arg + `" for "` + path + `"`, "'" + path + " --help'"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			if tc.suggest != "" && !strings.Contains(errOut, `did you mean "`+tc.suggest+`"`) {
				t.Errorf("stderr does not suggest %s:\n%s", tc.suggest, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing (no help)", out)
			}
		})
	}

	// A group without arguments still prints its help and succeeds.
	code, out, _ := kiln(t, dir, "image")
	if code != 0 || !strings.Contains(out, "Available Commands:") {
		t.Errorf("kiln image: exit %d\n%s", code, out)
	}
}

func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{name: "init --provider", args: []string{"init", "demo", "--provider", ""}, want: []string{"qemu", "metal", "vsphere", "aws"}},
		{name: "init --provider prefix", args: []string{"init", "demo", "--provider", "v"}, want: []string{"vsphere"}},
		{name: "render --role", args: []string{"render", "ignition", "--role", ""}, want: []string{"control-plane", "worker"}},
		{name: "render --target", args: []string{"render", "ignition", "--target", ""}, want: []string{"aws", "vsphere", "metal", "qemu"}},
		{name: "render -o", args: []string{"render", "ignition", "-o", ""}, want: []string{"json"}},
		{name: "lint --role", args: []string{"lint", "ignition", "x.ign", "--role", "c"}, want: []string{"control-plane"}},
		{name: "lint --target", args: []string{"lint", "ignition", "x.ign", "--target", ""}, want: []string{"aws", "vsphere", "metal", "qemu"}},
		{name: "audit network --role", args: []string{"audit", "network", "--role", ""}, want: []string{"control-plane", "worker"}},
		{name: "audit network -o", args: []string{"audit", "network", "-o", ""}, want: []string{"text", "json", "yaml"}},
		{name: "image build --target", args: []string{"image", "build", "--target", ""}, want: []string{"aws", "qemu", "vsphere"}},
		{name: "get nodes -o", args: []string{"get", "nodes", "-o", ""}, want: []string{"text", "wide", "json", "yaml"}},
		{name: "get machines --output", args: []string{"get", "machines", "--output", "w"}, want: []string{"wide"}},
		{name: "version -o", args: []string{"version", "-o", "j"}, want: []string{"json"}},
		{name: "validate -o", args: []string{"validate", "-o", ""}, want: []string{"text", "json", "yaml"}},
		{name: "cluster secure -o", args: []string{"cluster", "secure", "-o", ""}, want: []string{"text", "json", "yaml"}},
		{name: "pxe serve --dhcp", args: []string{"pxe", "serve", "--dhcp", ""}, want: []string{"off", "proxy", "full"}},
		{name: "--log-format on the root", args: []string{"--log-format", ""}, want: []string{"text", "json"}},
		{name: "--log-format on a command", args: []string{"apply", "--log-format", "j"}, want: []string{"json"}},
		{name: "--log-level", args: []string{"get", "nodes", "--log-level", ""}, want: []string{"debug", "info", "warn", "error"}},
		{name: "subcommands", args: []string{"image", ""}, want: []string{"audit", "build"}},
		{name: "completion shells", args: []string{"completion", ""}, want: []string{"bash", "fish", "powershell", "zsh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := kiln(t, dir, append([]string{cobra.ShellCompRequestCmd}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			// One completion a line (a tab before its description), then ":DIRECTIVE".
			lines := strings.Split(strings.TrimSpace(out), "\n")
			var got []string
			for _, l := range lines[:len(lines)-1] {
				name, _, _ := strings.Cut(l, "\t")
				got = append(got, name)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("completions (-want +got):\n%s", diff)
			}
			if d := lines[len(lines)-1]; d != ":4" { // ShellCompDirectiveNoFileComp
				t.Errorf("directive %s, want :4 (no file names)", d)
			}
		})
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		if out := mustKiln(t, dir, "completion", shell); !strings.Contains(out, "kiln") {
			t.Errorf("completion %s:\n%.200s", shell, out)
		}
	}
}

func TestOutputFile(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	render := []string{"render", "ignition", "--role", "worker", "--node", "demo-workers-0"}
	const notice = "-o FILE is deprecated; use --output-file "
	for _, tc := range []struct {
		name string
		args []string
		// file is the file that must be written, mode 0600; "" for standard output.
		file       string
		wantNotice bool
		wantErr    string
	}{
		{name: "render --output-file", args: append(slices.Clone(render), "--output-file", "a.ign"), file: "a.ign"},
		{name: "render -o FILE, deprecated", args: append(slices.Clone(render), "-o", "b.ign"), file: "b.ign", wantNotice: true},
		{name: "render -o json", args: append(slices.Clone(render), "-o", "json")},
		{name: "render to standard output", args: render},
		{name: "render -o yaml", args: append(slices.Clone(render), "-o", "yaml"), wantErr: "-o yaml: unknown output format (want json)"},
		{name: "render -o FILE and --output-file", args: append(slices.Clone(render), "-o", "c.ign", "--output-file", "d.ign"), wantErr: "--output-file d.ign is given"},
		{name: "ssh-key --output-file", args: []string{"ssh-key", "--output-file", "id_a"}, file: "id_a"},
		{name: "ssh-key -o FILE, deprecated", args: []string{"ssh-key", "-o", "id_b"}, file: "id_b", wantNotice: true},
		{name: "ssh-key without a file", args: []string{"ssh-key"}, wantErr: "--output-file is required"},
		{name: "ssh-key -o json", args: []string{"ssh-key", "-o", "json"}, wantErr: "no output formats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := kiln(t, dir, tc.args...)
			if tc.wantErr != "" {
				if code == 0 || !strings.Contains(errOut, tc.wantErr) {
					t.Fatalf("exit %d, stderr %q; want a failure naming %q", code, errOut, tc.wantErr)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, errOut)
			}
			if got := strings.Contains(errOut, notice); got != tc.wantNotice {
				t.Errorf("deprecation notice %v, want %v: %s", got, tc.wantNotice, errOut)
			}
			if tc.wantNotice && !strings.Contains(errOut, notice+tc.file) {
				t.Errorf("the notice does not name %s: %s", tc.file, errOut)
			}
			if tc.file == "" {
				if !json.Valid([]byte(out)) {
					t.Errorf("standard output is not the JSON config:\n%.200s", out)
				}
				return
			}
			fi, err := os.Stat(filepath.Join(dir, tc.file))
			if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
				t.Errorf("%s: %v, %v; want a file of mode 0600", tc.file, fi, err)
			}
		})
	}
}

func TestLogFlags(t *testing.T) {
	for _, tc := range []struct {
		name          string
		args          []string
		wantErr       string
		wantJSON      bool
		wantDebugLogs bool
	}{
		{name: "defaults", args: []string{"version"}},
		{name: "json, on the root", args: []string{"--log-format", "json", "version"}, wantJSON: true},
		{name: "json, after the command", args: []string{"version", "--log-format", "json", "--log-level", "debug"}, wantJSON: true, wantDebugLogs: true},
		{name: "unknown format", args: []string{"version", "--log-format", "xml"}, wantErr: "--log-format xml: unknown format (want text or json)"},
		{name: "unknown level", args: []string{"get", "machines", "--log-level", "loud"}, wantErr: "--log-level loud: unknown level (want debug, info, warn or error)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &globals{}
			root := newRoot(g)
			var out, errOut bytes.Buffer
			code := run(root, tc.args, &out, &errOut)
			if tc.wantErr != "" {
				if code == 0 || !strings.Contains(errOut.String(), tc.wantErr) {
					t.Fatalf("exit %d, stderr %q; want a failure naming %q", code, errOut.String(), tc.wantErr)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			// The command's logger is the root's: it writes to the command's stderr as the flags say.
			errOut.Reset()
			g.log.Debug("probe", "k", "v")
			g.log.Info("probe", "k", "v")
			lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
			if want := map[bool]int{false: 1, true: 2}[tc.wantDebugLogs]; len(lines) != want {
				t.Fatalf("%d log lines, want %d:\n%s", len(lines), want, errOut.String())
			}
			if got := json.Valid([]byte(lines[0])); got != tc.wantJSON {
				t.Errorf("JSON %v, want %v: %s", got, tc.wantJSON, lines[0])
			}
		})
	}
}
