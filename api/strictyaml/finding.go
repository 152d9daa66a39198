package strictyaml

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Severity says whether a finding makes a document unusable.
type Severity int

const (
	// SeverityError makes the document unusable.
	SeverityError Severity = iota
	// SeverityWarning is reported but leaves the document usable (unless the caller is strict and
	// treats warnings as errors).
	SeverityWarning
)

// String returns "error" or "warning".
func (s Severity) String() string {
	switch s {
	case SeverityError:
		return "error"
	case SeverityWarning:
		return "warning"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// MarshalText writes the severity as "error" or "warning", for JSON and YAML output.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Finding is one problem with a document: where it is and what is wrong.
type Finding struct {
	// Path of the value in the document, e.g. "spec.nodePools[1].count" or
	// "spec.nodePools[0].labels[\"example.com/role\"]"; empty for the document as a whole.
	Path string `json:"path,omitempty"`
	// Line and Column (1-based) of the value in the file; 0 when unknown. A finding about a missing
	// field points at the mapping that should hold it.
	Line     int      `json:"line,omitempty"`
	Column   int      `json:"column,omitempty"`
	Severity Severity `json:"severity"`
	// Message says what is wrong, lowercase, without trailing punctuation.
	Message string `json:"message"`
}

// String formats the finding as "LINE:COL: PATH: MESSAGE", leaving out the parts that are unknown
// (only the line when the column is unknown) and prefixing the message of a warning with "warning: ".
func (f Finding) String() string { return f.Format("") }

// Format is String with the file name in front of the position: "FILE:LINE:COL: PATH: MESSAGE".
func (f Finding) Format(file string) string {
	var b strings.Builder
	loc := file
	if f.Line > 0 {
		if loc != "" {
			loc += ":"
		}
		loc += strconv.Itoa(f.Line)
		if f.Column > 0 {
			loc += ":" + strconv.Itoa(f.Column)
		}
	}
	if loc != "" {
		b.WriteString(loc)
		b.WriteString(": ")
	}
	if f.Path != "" {
		b.WriteString(f.Path)
		b.WriteString(": ")
	}
	if f.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	b.WriteString(f.Message)
	return b.String()
}

// Error is a document that could not be used: every finding in it, errors and warnings, sorted by
// position. Match it with errors.As.
type Error struct {
	// File names the document in messages.
	File     string
	Findings []Finding
}

// Error lists one finding a line, formatted "FILE:LINE:COL: PATH: MESSAGE" (see Finding.String).
func (e *Error) Error() string {
	var b strings.Builder
	for i, f := range e.Findings {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(f.Format(e.File))
	}
	return b.String()
}

// SortFindings orders findings by line, then column; findings without a position come first.
// Findings at the same position keep the order in which they were found.
func SortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
}

// HasErrors reports whether any finding is an error.
func HasErrors(fs []Finding) bool {
	for _, f := range fs {
		if f.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Dedupe drops repeated findings, which aliases can cause by decoding one node at several paths. It
// reuses the memory of fs.
func Dedupe(fs []Finding) []Finding {
	seen := make(map[Finding]bool, len(fs))
	out := fs[:0]
	for _, f := range fs {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}

// Issue is a finding about a decoded value before it has a position: validation reports issues by
// path, and Document.Locate places them in the file.
type Issue struct {
	Path     string
	Severity Severity
	Message  string
	// AtKey points the finding at the key of a mapping entry rather than at its value, e.g. for a
	// label key that is not a qualified name.
	AtKey bool
	// Alt is the same finding told from another path, used when the file has no value at Path but
	// has one at Alt.Path (one of two overlapping ranges may be a default, not in the file).
	Alt *Issue
	// Deps are the paths the finding follows from; it is dropped when a problem with one of them has
	// already been reported.
	Deps []string
}

// Finding is the issue as a finding without a position, for values that were not decoded from a file.
func (is Issue) Finding() Finding {
	return Finding{Path: is.Path, Severity: is.Severity, Message: is.Message}
}
