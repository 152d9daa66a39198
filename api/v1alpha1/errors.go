package v1alpha1

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Severity says whether a finding makes a spec unusable.
type Severity int

const (
	// SeverityError makes Decode fail.
	SeverityError Severity = iota
	// SeverityWarning is reported but does not make Decode fail (unless the caller is strict, see
	// DecodeWithWarnings).
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

// Finding is one problem with a spec: where it is and what is wrong.
type Finding struct {
	// Path of the value in the spec, e.g. "spec.nodePools[1].count" or
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
func (f Finding) String() string { return f.format("") }

// Format is String with the file name in front of the position: "FILE:LINE:COL: PATH: MESSAGE".
func (f Finding) Format(file string) string { return f.format(file) }

// MarshalText writes the severity as "error" or "warning", for JSON and YAML output.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// format is String with the file name in front of the position.
func (f Finding) format(file string) string {
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

// Error is a spec that could not be used: every finding in it, errors and warnings, sorted by
// position. Decode returns it as a *Error; match it with errors.As.
type Error struct {
	// File is the name given to Decode.
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
		b.WriteString(f.format(e.File))
	}
	return b.String()
}

// sortFindings orders findings by line, then column; findings without a position come first.
// Findings at the same position keep the order in which they were found.
func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
}

// hasErrors reports whether any finding is an error.
func hasErrors(fs []Finding) bool {
	for _, f := range fs {
		if f.Severity == SeverityError {
			return true
		}
	}
	return false
}
