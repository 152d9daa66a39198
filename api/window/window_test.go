package window

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the tests' zones do not depend on the machine's zoneinfo
)

// at parses an RFC 3339 time for a test.
func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustParse(t testing.TB, schedule, zone string) Window {
	t.Helper()
	w, err := Parse(schedule, zone)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestCurrent checks Open and Current at instants around the edges of windows. start and end are the
// occurrence Current gives, empty when the window is closed. Dates: 2026-03-02 is a Monday; the clocks
// change in Europe/Berlin on Sun 2026-03-29 (02:00 CET -> 03:00 CEST, at 01:00Z) and Sun 2026-10-25
// (03:00 CEST -> 02:00 CET, at 01:00Z), in America/New_York on Sun 2026-03-08 (02:00 EST -> 03:00 EDT,
// at 07:00Z) and Sun 2026-11-01 (02:00 EDT -> 01:00 EST, at 06:00Z).
func TestCurrent(t *testing.T) {
	tests := []struct {
		name       string
		schedule   string
		zone       string
		at         string
		start, end string
	}{
		// UTC, days and times.
		{name: "weekday, at the start", schedule: "Mon-Fri 02:00-05:00", at: "2026-03-02T02:00:00Z", start: "2026-03-02T02:00:00Z", end: "2026-03-02T05:00:00Z"},
		{name: "weekday, the last second", schedule: "Mon-Fri 02:00-05:00", at: "2026-03-06T04:59:59Z", start: "2026-03-06T02:00:00Z", end: "2026-03-06T05:00:00Z"},
		{name: "weekday, at the end", schedule: "Mon-Fri 02:00-05:00", at: "2026-03-02T05:00:00Z"},
		{name: "weekday, before the start", schedule: "Mon-Fri 02:00-05:00", at: "2026-03-02T01:59:59Z"},
		{name: "weekday window on a Saturday", schedule: "Mon-Fri 02:00-05:00", at: "2026-03-07T03:00:00Z"},
		{name: "list and range, a listed day", schedule: "Mon,Wed-Fri 03:00-04:00", at: "2026-03-04T03:30:00Z", start: "2026-03-04T03:00:00Z", end: "2026-03-04T04:00:00Z"},
		{name: "list and range, a day between", schedule: "Mon,Wed-Fri 03:00-04:00", at: "2026-03-03T03:30:00Z"},
		{name: "wrapping range, Sunday", schedule: "Fri-Mon 03:00-04:00", at: "2026-03-08T03:30:00Z", start: "2026-03-08T03:00:00Z", end: "2026-03-08T04:00:00Z"},
		{name: "wrapping range, Monday", schedule: "Fri-Mon 03:00-04:00", at: "2026-03-09T03:30:00Z", start: "2026-03-09T03:00:00Z", end: "2026-03-09T04:00:00Z"},
		{name: "wrapping range, Tuesday", schedule: "Fri-Mon 03:00-04:00", at: "2026-03-10T03:30:00Z"},
		{name: "every day", schedule: "* 03:00-04:00", at: "2026-03-03T03:30:00Z", start: "2026-03-03T03:00:00Z", end: "2026-03-03T04:00:00Z"},
		{name: "whole day, its last second", schedule: "Sat 00:00-24:00", at: "2026-03-07T23:59:59Z", start: "2026-03-07T00:00:00Z", end: "2026-03-08T00:00:00Z"},
		{name: "whole day, the next midnight", schedule: "Sat 00:00-24:00", at: "2026-03-08T00:00:00Z"},
		{name: "whole day, the midnight before", schedule: "Sat 00:00-24:00", at: "2026-03-06T23:59:59Z"},

		// Crossing midnight: the occurrence belongs to the day it starts on.
		{name: "crossing, Friday night", schedule: "Fri 22:00-02:00", at: "2026-03-06T23:00:00Z", start: "2026-03-06T22:00:00Z", end: "2026-03-07T02:00:00Z"},
		{name: "crossing, Saturday morning", schedule: "Fri 22:00-02:00", at: "2026-03-07T01:59:00Z", start: "2026-03-06T22:00:00Z", end: "2026-03-07T02:00:00Z"},
		{name: "crossing, Saturday at the end", schedule: "Fri 22:00-02:00", at: "2026-03-07T02:00:00Z"},
		{name: "crossing, Friday morning belongs to Thursday", schedule: "Fri 22:00-02:00", at: "2026-03-06T01:00:00Z"},
		{name: "crossing, ending at midnight", schedule: "Fri 22:00-00:00", at: "2026-03-06T23:59:00Z", start: "2026-03-06T22:00:00Z", end: "2026-03-07T00:00:00Z"},

		// Zones.
		{name: "Berlin in winter", schedule: "Mon-Fri 02:00-05:00", zone: "Europe/Berlin", at: "2026-03-02T01:30:00Z", start: "2026-03-02T02:00:00+01:00", end: "2026-03-02T05:00:00+01:00"},
		{name: "Berlin, 05:00 CET", schedule: "Mon-Fri 02:00-05:00", zone: "Europe/Berlin", at: "2026-03-02T04:00:00Z"},
		{name: "Berlin in summer", schedule: "Mon-Fri 02:00-05:00", zone: "Europe/Berlin", at: "2026-07-01T00:00:00Z", start: "2026-07-01T02:00:00+02:00", end: "2026-07-01T05:00:00+02:00"},
		{name: "Berlin, Monday 01:30 CET is Sunday in UTC", schedule: "Mon 01:00-02:00", zone: "Europe/Berlin", at: "2026-03-02T00:30:00Z", start: "2026-03-02T01:00:00+01:00", end: "2026-03-02T02:00:00+01:00"},
		{name: "New York", schedule: "Mon-Fri 02:00-05:00", zone: "America/New_York", at: "2026-03-02T07:30:00Z", start: "2026-03-02T02:00:00-05:00", end: "2026-03-02T05:00:00-05:00"},
		{name: "New York, Monday 02:30 UTC is Sunday there", schedule: "Mon-Fri 02:00-05:00", zone: "America/New_York", at: "2026-03-02T02:30:00Z"},
		{name: "Kolkata, half-hour offset, start", schedule: "* 02:00-02:30", zone: "Asia/Kolkata", at: "2026-03-02T20:30:00Z", start: "2026-03-03T02:00:00+05:30", end: "2026-03-03T02:30:00+05:30"},
		{name: "Kolkata, before", schedule: "* 02:00-02:30", zone: "Asia/Kolkata", at: "2026-03-02T20:29:59Z"},
		{name: "Kolkata, end", schedule: "* 02:00-02:30", zone: "Asia/Kolkata", at: "2026-03-02T21:00:00Z"},

		// The clocks go forward: a skipped start opens at the end of the gap, and the window keeps its length.
		{name: "Berlin spring, 02:00-03:00 opens at 03:00 CEST", schedule: "Sun 02:00-03:00", zone: "Europe/Berlin", at: "2026-03-29T01:00:00Z", start: "2026-03-29T03:00:00+02:00", end: "2026-03-29T04:00:00+02:00"},
		{name: "Berlin spring, 02:00-03:00 open until 04:00 CEST", schedule: "Sun 02:00-03:00", zone: "Europe/Berlin", at: "2026-03-29T01:59:59Z", start: "2026-03-29T03:00:00+02:00", end: "2026-03-29T04:00:00+02:00"},
		{name: "Berlin spring, 02:00-03:00 closed before the change", schedule: "Sun 02:00-03:00", zone: "Europe/Berlin", at: "2026-03-29T00:59:59Z"},
		{name: "Berlin spring, 02:30-03:30 opens at the change", schedule: "Sun 02:30-03:30", zone: "Europe/Berlin", at: "2026-03-29T01:00:00Z", start: "2026-03-29T03:00:00+02:00", end: "2026-03-29T04:00:00+02:00"},
		{name: "Berlin spring, 01:00-03:00 lasts two hours", schedule: "Sun 01:00-03:00", zone: "Europe/Berlin", at: "2026-03-29T01:30:00Z", start: "2026-03-29T01:00:00+01:00", end: "2026-03-29T04:00:00+02:00"},
		{name: "New York spring, 02:00-04:00 opens at 03:00 EDT", schedule: "Sun 02:00-04:00", zone: "America/New_York", at: "2026-03-08T07:00:00Z", start: "2026-03-08T03:00:00-04:00", end: "2026-03-08T05:00:00-04:00"},
		{name: "New York spring, closed at 01:59 EST", schedule: "Sun 02:00-04:00", zone: "America/New_York", at: "2026-03-08T06:59:00Z"},

		// The clocks go back: a repeated start opens the first time, and the window does not open again.
		{name: "Berlin autumn, 01:00-03:00 opens at 01:00 CEST", schedule: "Sun 01:00-03:00", zone: "Europe/Berlin", at: "2026-10-24T23:00:00Z", start: "2026-10-25T01:00:00+02:00", end: "2026-10-25T02:00:00+01:00"},
		{name: "Berlin autumn, 01:00-03:00 closes at the second 02:00", schedule: "Sun 01:00-03:00", zone: "Europe/Berlin", at: "2026-10-25T01:00:00Z"},
		{name: "Berlin autumn, the second 02:30 is outside", schedule: "Sun 01:00-03:00", zone: "Europe/Berlin", at: "2026-10-25T01:30:00Z"},
		{name: "Berlin autumn, 02:30-03:00 at the first 02:30", schedule: "Sun 02:30-03:00", zone: "Europe/Berlin", at: "2026-10-25T00:30:00Z", start: "2026-10-25T02:30:00+02:00", end: "2026-10-25T03:00:00+02:00"},
		{name: "Berlin autumn, 02:30-03:00 not at the second 02:30", schedule: "Sun 02:30-03:00", zone: "Europe/Berlin", at: "2026-10-25T01:30:00Z"},
		{name: "Berlin autumn, crossing midnight and the change", schedule: "Sat 22:00-04:00", zone: "Europe/Berlin", at: "2026-10-25T01:59:00Z", start: "2026-10-24T22:00:00+02:00", end: "2026-10-25T03:00:00+01:00"},
		{name: "New York autumn, 01:30-02:30 at the first 01:30", schedule: "Sun 01:30-02:30", zone: "America/New_York", at: "2026-11-01T05:30:00Z", start: "2026-11-01T01:30:00-04:00", end: "2026-11-01T01:30:00-05:00"},
		{name: "New York autumn, not at the second 01:45", schedule: "Sun 01:30-02:30", zone: "America/New_York", at: "2026-11-01T06:45:00Z"},

		// Whole days on the days of the change: each lasts 24 hours.
		{name: "every whole day, spring: overlap gives the later", schedule: "* 00:00-24:00", zone: "Europe/Berlin", at: "2026-03-29T22:30:00Z", start: "2026-03-30T00:00:00+02:00", end: "2026-03-31T00:00:00+02:00"},
		{name: "every whole day, autumn: closed 23:00-24:00 CET", schedule: "* 00:00-24:00", zone: "Europe/Berlin", at: "2026-10-25T22:30:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := mustParse(t, tc.schedule, tc.zone)
			now := at(t, tc.at)
			start, end, ok := w.Current(now)
			if open := w.Open(now); open != ok {
				t.Errorf("Open = %v, Current ok = %v", open, ok)
			}
			if tc.start == "" {
				if ok {
					t.Errorf("Current(%s) = %s to %s, want closed", tc.at, start, end)
				}
				return
			}
			if !ok {
				t.Fatalf("Current(%s): closed, want %s to %s", tc.at, tc.start, tc.end)
			}
			if !start.Equal(at(t, tc.start)) || !end.Equal(at(t, tc.end)) {
				t.Errorf("Current(%s) = %s to %s, want %s to %s", tc.at, start.Format(time.RFC3339), end.Format(time.RFC3339), tc.start, tc.end)
			}
			if got := end.Sub(start); got != time.Duration(w.Minutes())*time.Minute {
				t.Errorf("occurrence lasts %s, want Minutes() = %d", got, w.Minutes())
			}
			if start.Location().String() != w.TimeZone() {
				t.Errorf("start is in %s, want %s", start.Location(), w.TimeZone())
			}
		})
	}
}

func TestNext(t *testing.T) {
	tests := []struct {
		name     string
		schedule string
		zone     string
		at       string
		want     string
	}{
		{name: "open: now", schedule: "Mon-Fri 02:00-05:00", at: "2026-03-02T03:00:00Z", want: "2026-03-02T03:00:00Z"},
		{name: "later today", schedule: "Mon-Fri 02:00-05:00", at: "2026-03-02T01:00:00Z", want: "2026-03-02T02:00:00Z"},
		{name: "at the end: tomorrow", schedule: "Mon-Fri 02:00-05:00", at: "2026-03-02T05:00:00Z", want: "2026-03-03T02:00:00Z"},
		{name: "Friday after: Monday", schedule: "Mon-Fri 02:00-05:00", at: "2026-03-06T06:00:00Z", want: "2026-03-09T02:00:00Z"},
		{name: "once a week, just missed", schedule: "Wed 02:00-03:00", at: "2026-03-04T03:00:00Z", want: "2026-03-11T02:00:00Z"},
		{name: "crossing: the start day", schedule: "Fri 22:00-02:00", at: "2026-03-07T02:00:00Z", want: "2026-03-13T22:00:00Z"},
		{name: "Berlin: in its zone", schedule: "Sat,Sun 01:00-06:00", zone: "Europe/Berlin", at: "2026-03-06T12:00:00Z", want: "2026-03-07T00:00:00Z"},
		{name: "Kolkata", schedule: "* 02:00-02:30", zone: "Asia/Kolkata", at: "2026-03-02T21:00:00Z", want: "2026-03-03T20:30:00Z"},
		{name: "Berlin spring: the end of the gap", schedule: "Sun 02:30-03:30", zone: "Europe/Berlin", at: "2026-03-28T12:00:00Z", want: "2026-03-29T01:00:00Z"},
		{name: "Berlin autumn: the first 02:30", schedule: "Sun 02:30-03:00", zone: "Europe/Berlin", at: "2026-10-24T12:00:00Z", want: "2026-10-25T00:30:00Z"},
		{name: "Berlin autumn: not the second 02:30", schedule: "Sun 02:30-03:00", zone: "Europe/Berlin", at: "2026-10-25T01:00:00Z", want: "2026-11-01T01:30:00Z"},
		{name: "New York spring", schedule: "Sun 02:00-04:00", zone: "America/New_York", at: "2026-03-07T12:00:00Z", want: "2026-03-08T07:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := mustParse(t, tc.schedule, tc.zone)
			got := w.Next(at(t, tc.at))
			if !got.Equal(at(t, tc.want)) {
				t.Errorf("Next(%s) = %s, want %s", tc.at, got.Format(time.RFC3339), tc.want)
			}
			if !w.Open(got) {
				t.Errorf("not open at Next(%s) = %s", tc.at, got)
			}
		})
	}
}

func TestZeroWindow(t *testing.T) {
	var w Window
	now := at(t, "2026-03-02T10:17:30+05:30") // 04:47:30 UTC
	if !w.Open(now) {
		t.Error("the zero Window is not open")
	}
	if got := w.Next(now); !got.Equal(now) {
		t.Errorf("Next = %s, want now", got)
	}
	start, end, ok := w.Current(now)
	if !ok || !start.Equal(at(t, "2026-03-02T04:00:00Z")) || !end.Equal(at(t, "2026-03-02T05:00:00Z")) {
		t.Errorf("Current = %s, %s, %v, want the UTC hour 04:00 to 05:00", start, end, ok)
	}
	if w.Minutes() != 60 || w.String() != "" || w.TimeZone() != "" {
		t.Errorf("Minutes, String, TimeZone = %d, %q, %q, want 60, \"\", \"\"", w.Minutes(), w.String(), w.TimeZone())
	}
	parsed, err := Parse("", "Europe/Berlin")
	if err != nil || parsed != (Window{}) {
		t.Errorf(`Parse("") = %#v, %v, want the zero Window`, parsed, err)
	}
	if !w.StaggerDue(now, 47) || !w.StaggerDue(now, 107) || w.StaggerDue(now, 17) {
		t.Error("the zero Window's staggered minute is not offset mod 60 in the UTC hour")
	}
}

func TestMinutes(t *testing.T) {
	for schedule, want := range map[string]int{
		"Mon 02:00-05:00": 180,
		"Mon 02:00-02:01": 1,
		"Mon 22:00-02:00": 240,
		"Mon 22:00-00:00": 120,
		"Mon 00:00-24:00": 1440,
		"Mon 00:01-00:00": 1439,
		"Mon 02:00-01:59": 1439,
	} {
		if got := mustParse(t, schedule, "").Minutes(); got != want {
			t.Errorf("%s: Minutes() = %d, want %d", schedule, got, want)
		}
	}
}

// TestString checks the canonical form of schedules and that it parses back to an equal window.
func TestString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Mon-Fri 02:00-05:00", "Mon-Fri 02:00-05:00"},
		{"mon-FRI 02:00-05:00", "Mon-Fri 02:00-05:00"},
		{"  Mon-Fri\t02:00-05:00 ", "Mon-Fri 02:00-05:00"},
		{"Mon 02:00-05:00", "Mon 02:00-05:00"},
		{"Sun,Sat 01:00-06:00", "Sat,Sun 01:00-06:00"},
		{"Sat-Sun 01:00-06:00", "Sat,Sun 01:00-06:00"},
		{"Sun,Mon 01:00-06:00", "Sun,Mon 01:00-06:00"},
		{"Mon,Wed-Fri 03:00-04:00", "Mon,Wed-Fri 03:00-04:00"},
		{"Mon,Tue,Wed 03:00-04:00", "Mon-Wed 03:00-04:00"},
		{"Mon,Mon 03:00-04:00", "Mon 03:00-04:00"},
		{"Mon-Fri,Wed 03:00-04:00", "Mon-Fri 03:00-04:00"},
		{"Fri-Mon 23:00-01:00", "Fri-Mon 23:00-01:00"},
		{"Sat,Sun,Mon,Wed,Thu 03:00-04:00", "Sat-Mon,Wed,Thu 03:00-04:00"},
		{"Mon,Sun 03:00-04:00", "Sun,Mon 03:00-04:00"},
		{"Mon-Sun 03:00-04:00", "* 03:00-04:00"},
		{"Tue-Mon 03:00-04:00", "* 03:00-04:00"},
		{"* 03:00-04:00", "* 03:00-04:00"},
		{"Sat 00:00-24:00", "Sat 00:00-24:00"},
		{"Fri 22:00-00:00", "Fri 22:00-00:00"},
	}
	for _, zone := range []string{"", "Europe/Berlin", "Asia/Kolkata"} {
		for _, tc := range tests {
			w := mustParse(t, tc.in, zone)
			if got := w.String(); got != tc.want {
				t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.want)
			}
			again := mustParse(t, w.String(), w.TimeZone())
			if !again.Equal(w) {
				t.Errorf("%q in %q: Parse(String(), TimeZone()) = %v in %s, not equal", tc.in, zone, again, again.TimeZone())
			}
		}
	}
	if got := mustParse(t, "Mon 02:00-03:00", "").TimeZone(); got != "UTC" {
		t.Errorf("TimeZone() of no zone = %q, want UTC", got)
	}
	if mustParse(t, "Mon 02:00-03:00", "").Equal(mustParse(t, "Mon 02:00-03:00", "Europe/Berlin")) {
		t.Error("windows in different zones are Equal")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		schedule, zone string
		want           []string // fragments of the message
		fields         []string // the fields of the *Errors
	}{
		{schedule: "Mon-Fry 02:00-05:00", want: []string{`schedule "Mon-Fry 02:00-05:00": day "Fry" is not one of Mon..Sun`}},
		{schedule: "Monday 02:00-05:00", want: []string{`day "Monday" is not one of Mon..Sun`}},
		{schedule: "Mon-Fri", want: []string{`want DAYS HH:MM-HH:MM, e.g. "Mon-Fri 02:00-05:00"`}},
		{schedule: "Mon-Fri 02:00 - 05:00", want: []string{"want DAYS HH:MM-HH:MM"}},
		{schedule: "   ", want: []string{"want DAYS HH:MM-HH:MM"}},
		{schedule: "Mon 02:00", want: []string{`times "02:00": want START-END, e.g. 02:00-05:00`}},
		{schedule: "Mon 02:00-03:00-04:00", want: []string{`times "02:00-03:00-04:00": want START-END`}},
		{schedule: "Mon 2:00-05:00", want: []string{`start "2:00" is not a time from 00:00 to 23:59 (HH:MM)`}},
		{schedule: "Mon 24:00-05:00", want: []string{`start "24:00" is not a time from 00:00 to 23:59`}},
		{schedule: "Mon 02:60-05:00", want: []string{`start "02:60" is not a time`}},
		{schedule: "Mon 02:00-25:00", want: []string{`end "25:00" is not a time from 00:00 to 24:00 (HH:MM)`}},
		{schedule: "Mon 02:00-24:01", want: []string{`end "24:01" is not a time`}},
		{schedule: "Mon 02:00-0500", want: []string{`end "0500" is not a time`}},
		{schedule: "Mon 02:00-+5:00", want: []string{`end "+5:00" is not a time`}},
		{schedule: "Mon 02:00-02:00", want: []string{"start and end are both 02:00: a window lasts at least a minute"}},
		{schedule: "Mon 00:00-00:00", want: []string{"for a whole day write 00:00-24:00"}},
		{schedule: "Mon,,Tue 02:00-03:00", want: []string{`days "Mon,,Tue" have an empty entry`}},
		{schedule: "Mon, 02:00-03:00", want: []string{`days "Mon," have an empty entry`}},
		{schedule: "*,Mon 02:00-03:00", want: []string{`"*" means every day and stands alone`}},
		{schedule: "Mon- 02:00-03:00", want: []string{`day range "Mon-": want FIRST-LAST, e.g. Mon-Fri`}},
		{schedule: "Mon-Tue-Wed 02:00-03:00", want: []string{`day range "Mon-Tue-Wed": want FIRST-LAST`}},
		{schedule: "Mon-mon 02:00-03:00", want: []string{`day range "Mon-mon" starts and ends on the same day: write Mon for that day or * for every day`}},
		{schedule: strings.Repeat("Mon,", 30) + "Mon 02:00-03:00", want: []string{"is 135 characters long, at most 100"}},
		{schedule: "Mon 02:00-03:00", zone: "Europe/Berln", want: []string{`time zone "Europe/Berln": is not an IANA time zone name (e.g. Europe/Berlin, America/New_York, UTC)`}, fields: []string{FieldTimeZone}},
		{schedule: "Mon 02:00-03:00", zone: "Local", want: []string{`time zone "Local": is this machine's zone`}, fields: []string{FieldTimeZone}},
		{schedule: "Mon 02:00-03:00", zone: "../../etc/passwd", want: []string{"is not an IANA time zone name"}, fields: []string{FieldTimeZone}},
		{
			schedule: "Mon 02:00-02:00", zone: "Mars/Olympus",
			want:   []string{`schedule "Mon 02:00-02:00": start and end`, `time zone "Mars/Olympus": is not an IANA`},
			fields: []string{FieldSchedule, FieldTimeZone},
		},
		{schedule: "Mon 02:00-03:00", zone: strings.Repeat("a/", 51), want: []string{"is 102 characters long, not an IANA time zone name"}, fields: []string{FieldTimeZone}},
		{schedule: "", zone: "Mars/Olympus", want: []string{`time zone "Mars/Olympus"`}, fields: []string{FieldTimeZone}},
	}
	for _, tc := range tests {
		t.Run(tc.schedule+" "+tc.zone, func(t *testing.T) {
			w, err := Parse(tc.schedule, tc.zone)
			if err == nil {
				t.Fatalf("Parse(%q, %q) = %v, want an error", tc.schedule, tc.zone, w)
			}
			if w != (Window{}) {
				t.Errorf("Parse returned %#v with its error, want the zero Window", w)
			}
			for _, f := range tc.want {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q does not say %q", err, f)
				}
			}
			fields := tc.fields
			if fields == nil {
				fields = []string{FieldSchedule}
			}
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			var got []string
			for _, e := range errs {
				var pe *Error
				if !errors.As(e, &pe) {
					t.Fatalf("error %v is %T, want *Error", e, e)
				}
				got = append(got, pe.Field)
			}
			if fmt.Sprint(got) != fmt.Sprint(fields) {
				t.Errorf("errors are about %v, want %v", got, fields)
			}
		})
	}
}

func TestStaggerMinute(t *testing.T) {
	tests := []struct {
		name    string
		node    string
		minutes int
		want    int
	}{
		{name: "ordinal 0", node: "prod-workers-0", minutes: 60, want: 0},
		{name: "ordinal", node: "prod-workers-7", minutes: 60, want: 7},
		{name: "ordinal beyond the window", node: "prod-workers-61", minutes: 60, want: 1},
		{name: "leading zeros", node: "prod-workers-007", minutes: 60, want: 7},
		{name: "one-minute window", node: "prod-workers-5", minutes: 1, want: 0},
		{name: "no window length", node: "prod-workers-5", minutes: 0, want: 0},
		{name: "negative length", node: "prod-workers-5", minutes: -3, want: 0},
		// Names without an ordinal: FNV-1a 64 of the name, modulo minutes.
		{name: "no dash", node: "worker7", minutes: 180, want: fnvMod("worker7", 180)},
		{name: "empty ordinal", node: "prod-workers-", minutes: 180, want: fnvMod("prod-workers-", 180)},
		{name: "sign is not an ordinal", node: "prod-workers-+5", minutes: 180, want: fnvMod("prod-workers-+5", 180)},
		{name: "letters after the dash", node: "ip-10-0-0-5.ec2.internal", minutes: 180, want: fnvMod("ip-10-0-0-5.ec2.internal", 180)},
		{name: "ordinal too large for an int", node: "p-99999999999999999999999", minutes: 180, want: fnvMod("p-99999999999999999999999", 180)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := StaggerMinute(tc.node, tc.minutes)
			if got != tc.want {
				t.Errorf("StaggerMinute(%q, %d) = %d, want %d", tc.node, tc.minutes, got, tc.want)
			}
			if tc.minutes > 0 && (got < 0 || got >= tc.minutes) {
				t.Errorf("StaggerMinute(%q, %d) = %d, outside [0, %d)", tc.node, tc.minutes, got, tc.minutes)
			}
		})
	}
}

// fnvMod is FNV-1a 64 of s modulo n, written out from the algorithm's definition.
func fnvMod(s string, n int) int {
	h := uint64(14695981039346656037)
	for _, c := range []byte(s) {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return int(h % uint64(n))
}

// TestStaggerPools checks the promise of the stagger: for every pool size n up to the window's length
// in minutes, the nodes c-p-0 .. c-p-(n-1) are due in n distinct minutes of an occurrence, each in
// exactly one.
func TestStaggerPools(t *testing.T) {
	for _, tc := range []struct{ schedule, zone, at string }{
		{"Mon 02:00-02:01", "", "2026-03-02T02:00:00Z"},
		{"Mon 02:00-02:07", "", "2026-03-02T02:00:00Z"},
		{"Mon-Fri 02:00-05:00", "Europe/Berlin", "2026-03-02T01:00:00Z"},
		{"Sun 02:00-03:00", "Europe/Berlin", "2026-03-29T01:00:00Z"}, // opens at the end of the gap
		{"Sun 01:00-03:00", "Europe/Berlin", "2026-10-24T23:00:00Z"}, // through the second 02:00
		{"* 02:00-02:30", "Asia/Kolkata", "2026-03-02T20:30:00Z"},
		{"Sat 00:00-24:00", "America/New_York", "2026-03-07T05:00:00Z"},
		{"", "", "2026-03-02T04:00:00Z"}, // the zero Window: each UTC hour
	} {
		t.Run(tc.schedule+" "+tc.zone, func(t *testing.T) {
			w := mustParse(t, tc.schedule, tc.zone)
			start, _, ok := w.Current(at(t, tc.at))
			if !ok || !start.Equal(at(t, tc.at)) {
				t.Fatalf("no occurrence starts at %s: %s, %v", tc.at, start, ok)
			}
			m := w.Minutes()
			// due[i] is the minute of the occurrence in which node c-p-i is due.
			due := make([]int, m)
			for i := range due {
				node := fmt.Sprintf("c-p-%d", i)
				offset := StaggerMinute(node, m)
				due[i] = -1
				for k := range m {
					for _, s := range []time.Duration{0, 30 * time.Second, time.Minute - time.Nanosecond} {
						if w.StaggerDue(start.Add(time.Duration(k)*time.Minute+s), offset) {
							if due[i] != -1 && due[i] != k {
								t.Fatalf("%s is due in minutes %d and %d", node, due[i], k)
							}
							due[i] = k
						}
					}
				}
				if due[i] == -1 {
					t.Fatalf("%s (offset %d) is never due in the occurrence at %s", node, offset, start)
				}
			}
			for n := 1; n <= m; n++ {
				seen := map[int]string{}
				for i := range n {
					if other, dup := seen[due[i]]; dup {
						t.Fatalf("pool of %d: c-p-%d and %s share minute %d", n, i, other, due[i])
					}
					seen[due[i]] = fmt.Sprintf("c-p-%d", i)
				}
			}
		})
	}
}

func TestStaggerDue(t *testing.T) {
	w := mustParse(t, "Mon-Fri 02:00-05:00", "Europe/Berlin") // 180 minutes; 02:00 CET is 01:00Z
	tests := []struct {
		name   string
		at     string
		offset int
		want   bool
	}{
		{name: "the first minute", at: "2026-03-02T01:00:00Z", offset: 0, want: true},
		{name: "its last instant", at: "2026-03-02T01:00:59Z", offset: 0, want: true},
		{name: "the next minute", at: "2026-03-02T01:01:00Z", offset: 0, want: false},
		{name: "offset 90", at: "2026-03-02T02:30:10Z", offset: 90, want: true},
		{name: "offset 90, a minute early", at: "2026-03-02T02:29:59Z", offset: 90, want: false},
		{name: "the last minute", at: "2026-03-02T03:59:00Z", offset: 179, want: true},
		{name: "offset beyond the window wraps", at: "2026-03-02T01:05:00Z", offset: 185, want: true},
		{name: "negative offset wraps", at: "2026-03-02T03:59:00Z", offset: -1, want: true},
		{name: "outside the window", at: "2026-03-02T04:00:00Z", offset: 0, want: false},
		{name: "the minute on a closed day", at: "2026-03-07T01:00:00Z", offset: 0, want: false},
		{name: "the next day's occurrence", at: "2026-03-03T01:30:00Z", offset: 30, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := w.StaggerDue(at(t, tc.at), tc.offset); got != tc.want {
				t.Errorf("StaggerDue(%s, %d) = %v, want %v", tc.at, tc.offset, got, tc.want)
			}
		})
	}
}
