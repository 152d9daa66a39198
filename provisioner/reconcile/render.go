package reconcile

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode"
)

// PlanAPIVersion and PlanKind name the shape of a plan's JSON form (Document). A field is only ever
// added to this version; anything else is a new version.
const (
	PlanAPIVersion = "kiln.dev/v1alpha1"
	PlanKind       = "Plan"
)

// The verbs of a plan's actions.
const (
	VerbCreate  = "create"
	VerbReplace = "replace"
	VerbDelete  = "delete"
	VerbStop    = "stop"
	VerbHold    = "hold"
)

// Action is one step of a plan as people and programs see it.
type Action struct {
	// Verb is VerbCreate, VerbReplace, VerbDelete, VerbStop (power off and keep) or VerbHold (held
	// back, and why).
	Verb string `json:"action"`
	// Machine is the machine created, replaced, deleted, powered off or held back; empty when a
	// whole pool is held back.
	Machine string `json:"machine,omitempty"`
	Pool    string `json:"pool"`
	// Replacement is the new machine of a replace.
	Replacement string `json:"replacement,omitempty"`
	// Image of the machine a create or replace makes.
	Image  string `json:"image,omitempty"`
	Reason string `json:"reason"`
	// Healthy marks a delete or stop of a machine not known to have failed (Delete.Healthy).
	Healthy bool `json:"healthy,omitempty"`
	// Confirm marks a delete that kiln apply asks about first: a healthy machine that goes without a
	// replacement (Plan.NeedConfirmation).
	Confirm bool `json:"confirm,omitempty"`
}

// Document is the JSON form of a plan.
type Document struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Cluster    string `json:"cluster"`
	// NeedsConfirmation is true when an action has Confirm set.
	NeedsConfirmation bool     `json:"needsConfirmation"`
	Actions           []Action `json:"actions"`
}

// NeedConfirmation returns the deletes that take healthy machines away without a replacement: a pool
// scaled down, removed or renamed. kiln apply acts on a plan that has any only when the user says yes.
func (p Plan) NeedConfirmation() []Delete {
	var out []Delete
	for _, d := range p.Deletes {
		if d.confirm() {
			out = append(out, d)
		}
	}
	return out
}

func (d Delete) confirm() bool { return d.Healthy && d.Surplus }

// Actions lists the plan's steps in the order the executor takes them: creates and replacements,
// deletes, power-offs; then what is held back.
func (p Plan) Actions() []Action {
	out := make([]Action, 0, len(p.Creates)+len(p.Deletes)+len(p.StopInsteadOfDelete)+len(p.Blocked))
	for _, c := range p.Creates {
		if c.Replaces != "" {
			out = append(out, Action{Verb: VerbReplace, Machine: c.Replaces, Pool: c.Pool, Replacement: c.Name, Image: c.Image, Reason: c.Reason})
			continue
		}
		out = append(out, Action{Verb: VerbCreate, Machine: c.Name, Pool: c.Pool, Image: c.Image, Reason: c.Reason})
	}
	for _, d := range p.Deletes {
		out = append(out, Action{Verb: VerbDelete, Machine: d.Name, Pool: d.Pool, Reason: d.Reason, Healthy: d.Healthy, Confirm: d.confirm()})
	}
	for _, d := range p.StopInsteadOfDelete {
		out = append(out, Action{Verb: VerbStop, Machine: d.Name, Pool: d.Pool, Reason: d.Reason, Healthy: d.Healthy})
	}
	for _, b := range p.Blocked {
		out = append(out, Action{Verb: VerbHold, Machine: b.Machine, Pool: b.Pool, Reason: b.Reason})
	}
	return out
}

// Document is the plan's JSON form for cluster.
func (p Plan) Document(cluster string) Document {
	return Document{
		APIVersion:        PlanAPIVersion,
		Kind:              PlanKind,
		Cluster:           cluster,
		NeedsConfirmation: len(p.NeedConfirmation()) > 0,
		Actions:           p.Actions(),
	}
}

// WriteJSON writes the plan's Document for cluster as indented JSON.
func (p Plan) WriteJSON(w io.Writer, cluster string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(p.Document(cluster)); err != nil {
		return fmt.Errorf("plan of %s: %w", cluster, err)
	}
	return nil
}

// WriteText writes the plan for people: one line per action (verb, machine, pool, reason) in aligned
// columns, then a summary line. A replace names the old machine and, in its reason, the new one; a
// delete that needs confirmation says so.
func (p Plan) WriteText(w io.Writer) error {
	actions := p.Actions()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, a := range actions {
		reason := a.Reason
		switch {
		case a.Verb == VerbReplace:
			reason = "by " + a.Replacement + ": " + reason
		case a.Confirm:
			reason = "healthy, asks first: " + reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Verb, oneLine(cmp.Or(a.Machine, "-")), oneLine(a.Pool), oneLine(reason))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	if _, err := fmt.Fprintln(w, p.summary()); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	return nil
}

// summary is one line counting the plan's actions by verb.
func (p Plan) summary() string {
	replaces := 0
	for _, c := range p.Creates {
		if c.Replaces != "" {
			replaces++
		}
	}
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(len(p.Creates)-replaces, "to create")
	add(replaces, "to replace")
	del := fmt.Sprintf("%d to delete", len(p.Deletes))
	if n := len(p.NeedConfirmation()); n > 0 {
		del += fmt.Sprintf(" (%d healthy without a replacement: confirm)", n)
	}
	if len(p.Deletes) > 0 {
		parts = append(parts, del)
	}
	add(len(p.StopInsteadOfDelete), "to power off")
	add(len(p.Blocked), "held back")
	if len(parts) == 0 {
		return "plan: nothing to do"
	}
	return "plan: " + strings.Join(parts, ", ")
}

// oneLine keeps a field on its line and in its column: control characters, tabs and line breaks
// among them, become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
