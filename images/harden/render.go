package harden

import (
	"fmt"
	"strings"
)

// String renders the plan as text for people and golden files: one block per step, a file's contents
// indented under its header, a command's argv shell-quoted.
func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# kiln hardening plan for %s\n", p.Distro)
	if p.VerifyOnly {
		b.WriteString("# verify only: image-based distro, no changes\n")
	}
	for i, s := range p.Steps {
		switch {
		case s.File != nil:
			f := s.File
			fmt.Fprintf(&b, "\n## %d. file %s %s %04o: %s\n", i+1, f.Path, f.Owner, uint32(f.Mode.Perm()), f.Purpose)
			for _, line := range strings.SplitAfter(string(f.Contents), "\n") {
				if line == "" {
					continue
				}
				b.WriteString("    " + strings.TrimSuffix(line, "\n") + "\n")
			}
			if len(f.Contents) > 0 && !strings.HasSuffix(string(f.Contents), "\n") {
				b.WriteString("    (no newline at end of file)\n")
			}
		case s.Command != nil:
			fmt.Fprintf(&b, "\n## %d. command: %s\n    $ %s\n", i+1, s.Command.Purpose, ShellQuote(s.Command.Argv))
		}
	}
	return b.String()
}

// ShellQuote joins argv into one POSIX shell command line, single-quoting every word that needs it, for
// communicators that take a command string.
func ShellQuote(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = quoteWord(a)
	}
	return strings.Join(words, " ")
}

func quoteWord(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@+%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
