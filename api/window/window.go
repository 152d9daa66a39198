// Package window is kiln's maintenance windows: when a node may take its pool's reboot lock, and the
// minute of a window that is a node's own when it reboots without the cluster's API (the stagger).
//
// A window is written as a schedule, DAYS HH:MM-HH:MM, in an IANA time zone:
//
//	Mon-Fri 02:00-05:00   Monday to Friday, 02:00 to 05:00
//	Sat,Sun 01:00-06:00   the weekend
//	Mon,Wed-Fri 03:00-04:00
//	Fri-Mon 23:00-01:00   a range may wrap past Sunday: Friday, Saturday, Sunday and Monday
//	* 02:00-04:00         every day
//	Sat 00:00-24:00       the whole of Saturday (24:00 is allowed as an end only)
//
// Day names are the three-letter English ones, in any case. When the end is earlier than the start
// the window crosses midnight and belongs to the day it starts on: Fri 22:00-02:00 is open from
// Friday 22:00 to Saturday 02:00, not on Thursday night.
//
// # Time zones and daylight saving time
//
// Times are wall-clock times in the window's zone, and two rules fix what happens on the days its
// clocks change:
//
//   - An occurrence opens at the first instant at which the zone's clock shows its start time or
//     later on its start day. A start time that the clocks skip (02:30 on the day they go forward
//     from 02:00 to 03:00) opens the window at the end of the gap, 03:00; a start time that the
//     clocks show twice (02:30 on the day they go back from 03:00 to 02:00) opens it the first time.
//   - An occurrence lasts exactly its nominal length (Minutes) of real time, whatever the clocks do
//     meanwhile. So a window never opens twice a day and is never longer or shorter than written;
//     by the wall clock it closes later on the day the clocks go forward and earlier on the day they
//     go back. In Europe/Berlin, on the last Sunday of March 02:00-03:00 is open from 03:00 to 04:00
//     CEST and 01:00-03:00 from 01:00 CET to 04:00 CEST; on the last Sunday of October 01:00-03:00
//     is open from 01:00 CEST to the second 02:00 (CET), two hours.
//
// Occurrences of a window that lasts nearly a day may overlap on the day the clocks go forward;
// Current then gives the one that started last.
//
// # The zero Window
//
// The zero Window is always open: it is what no maintenance window means. For Current, Minutes and
// StaggerDue it counts as an occurrence of 60 minutes every full hour of UTC, so that a node's
// staggered minute comes once an hour.
package window

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
)

// Window is a weekly maintenance window in a time zone. Windows from Parse compare with Equal; the
// zero Window is always open (see the package comment).
type Window struct {
	days       uint8 // bit time.Weekday set for each day an occurrence starts on
	start, end int   // minutes after midnight; end may be 1440 (24:00) or at most start (crossing midnight)
	zone       string
	loc        *time.Location
}

const (
	minutesPerDay = 24 * 60
	allDays       = 1<<7 - 1
	// maxScheduleLength is far above the longest schedule anyone needs ("Mon,Tue,Wed,Thu,Fri,Sat,Sun
	// 00:00-24:00" is 39 characters) and keeps messages short.
	maxScheduleLength = 100
	// zeroMinutes is the length of an occurrence of the zero Window, for the stagger.
	zeroMinutes = 60
)

// dayNames are the day names of a schedule, indexed by time.Weekday.
var dayNames = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// Parse reads a schedule (DAYS HH:MM-HH:MM, see the package comment) in the IANA time zone timeZone;
// an empty timeZone is UTC. An empty schedule is the zero Window, always open.
//
// When the input is wrong, the error is an *Error for the schedule or the time zone, or both joined
// with errors.Join when both are wrong.
func Parse(schedule, timeZone string) (Window, error) {
	w, schedErr := parseSchedule(schedule)
	zone, loc, zoneErr := loadZone(timeZone)
	switch {
	case schedErr != nil && zoneErr != nil:
		return Window{}, errors.Join(schedErr, zoneErr)
	case schedErr != nil:
		return Window{}, schedErr
	case zoneErr != nil:
		return Window{}, zoneErr
	case schedule == "":
		return Window{}, nil
	}
	w.zone, w.loc = zone, loc
	return w, nil
}

// Fields that an Error names: the keys of a maintenance window in the cluster spec.
const (
	FieldSchedule = "schedule"
	FieldTimeZone = "timeZone"
)

// Error says which input of Parse is wrong, and why.
type Error struct {
	// Field is FieldSchedule or FieldTimeZone.
	Field string
	// Value is the input as given.
	Value string
	// Reason says what is wrong with Value.
	Reason string
}

func (e *Error) Error() string {
	what := "schedule"
	if e.Field == FieldTimeZone {
		what = "time zone"
	}
	return fmt.Sprintf("%s %s: %s", what, quote(e.Value), e.Reason)
}

// quote quotes s for a message, shortened if it is long.
func quote(s string) string {
	if len(s) > maxScheduleLength {
		return fmt.Sprintf("%q...", s[:maxScheduleLength])
	}
	return fmt.Sprintf("%q", s)
}

func parseSchedule(s string) (Window, error) {
	fail := func(format string, args ...any) (Window, error) {
		return Window{}, &Error{Field: FieldSchedule, Value: s, Reason: fmt.Sprintf(format, args...)}
	}
	if s == "" {
		return Window{}, nil
	}
	if len(s) > maxScheduleLength {
		return fail("is %d characters long, at most %d", len(s), maxScheduleLength)
	}
	fields := strings.Fields(s)
	if len(fields) != 2 {
		return fail(`want DAYS HH:MM-HH:MM, e.g. "Mon-Fri 02:00-05:00"`)
	}
	days, err := parseDays(fields[0])
	if err != "" {
		return fail("%s", err)
	}
	from, to, ok := strings.Cut(fields[1], "-")
	if !ok || strings.Contains(to, "-") {
		return fail("times %q: want START-END, e.g. 02:00-05:00", fields[1])
	}
	start, ok := parseClock(from, false)
	if !ok {
		return fail("start %q is not a time from 00:00 to 23:59 (HH:MM)", from)
	}
	end, ok := parseClock(to, true)
	if !ok {
		return fail("end %q is not a time from 00:00 to 24:00 (HH:MM)", to)
	}
	if start == end {
		return fail("start and end are both %s: a window lasts at least a minute (for a whole day write 00:00-24:00)", from)
	}
	return Window{days: days, start: start, end: end}, nil
}

// parseDays reads the DAYS of a schedule, or says what is wrong with it.
func parseDays(s string) (uint8, string) {
	if s == "*" {
		return allDays, ""
	}
	var days uint8
	for item := range strings.SplitSeq(s, ",") {
		first, last, isRange := strings.Cut(item, "-")
		switch {
		case item == "":
			return 0, fmt.Sprintf("days %q have an empty entry", s)
		case item == "*":
			return 0, `"*" means every day and stands alone`
		case isRange && (first == "" || last == "" || strings.Contains(last, "-")):
			return 0, fmt.Sprintf("day range %q: want FIRST-LAST, e.g. Mon-Fri", item)
		}
		a, err := parseDay(first)
		if err != "" {
			return 0, err
		}
		b := a
		if isRange {
			if b, err = parseDay(last); err != "" {
				return 0, err
			}
			if a == b {
				return 0, fmt.Sprintf("day range %q starts and ends on the same day: write %s for that day or * for every day", item, dayNames[a])
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			days |= 1 << d
			if d == b {
				break
			}
		}
	}
	return days, ""
}

func parseDay(s string) (time.Weekday, string) {
	for d, name := range dayNames {
		if strings.EqualFold(s, name) {
			return time.Weekday(d), ""
		}
	}
	return 0, fmt.Sprintf("day %q is not one of Mon..Sun", s)
}

// parseClock reads HH:MM as minutes after midnight; 24:00 only if it is an end.
func parseClock(s string, end bool) (int, bool) {
	if len(s) != 5 || s[2] != ':' || !isDigits(s[:2]) || !isDigits(s[3:]) {
		return 0, false
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	switch {
	case end && h == 24 && m == 0:
		return minutesPerDay, true
	case h > 23 || m > 59:
		return 0, false
	}
	return h*60 + m, true
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// loadZone loads an IANA time zone; "" is UTC.
func loadZone(name string) (string, *time.Location, error) {
	fail := func(reason string) (string, *time.Location, error) {
		return "", nil, &Error{Field: FieldTimeZone, Value: name, Reason: reason}
	}
	switch name {
	case "", "UTC":
		return "UTC", time.UTC, nil
	case "Local":
		return fail("is this machine's zone, which differs between machines: give an IANA name such as Europe/Berlin")
	}
	if len(name) > maxScheduleLength {
		return fail(fmt.Sprintf("is %d characters long, not an IANA time zone name", len(name)))
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return fail("is not an IANA time zone name (e.g. Europe/Berlin, America/New_York, UTC)")
	}
	return name, loc, nil
}

// String writes the schedule in a canonical form (Mon-Fri 02:00-05:00) that Parse, with TimeZone,
// reads back to an equal Window. The zero Window writes as "".
func (w Window) String() string {
	if w.days == 0 {
		return ""
	}
	return formatDays(w.days) + " " + formatClock(w.start) + "-" + formatClock(w.end)
}

// formatDays writes a set of days as runs in the order of the week from Monday: one day as Mon, two
// as Sat,Sun, three or more as Mon-Fri. A run through Sunday and Monday is written as one range
// (Fri-Mon) and comes first.
func formatDays(days uint8) string {
	if days == allDays {
		return "*"
	}
	in := func(d int) bool { return days&(1<<((d%7+7)%7)) != 0 }
	first := 1 // Monday, or the start of the run that holds Monday and Sunday
	for in(first - 1) {
		first--
	}
	var items []string
	for i := 0; i < 7; {
		d := first + i
		if !in(d) {
			i++
			continue
		}
		n := 1
		for i+n < 7 && in(d+n) {
			n++
		}
		name := func(d int) string { return dayNames[(d%7+7)%7] }
		switch n {
		case 1:
			items = append(items, name(d))
		case 2:
			items = append(items, name(d), name(d+1))
		default:
			items = append(items, name(d)+"-"+name(d+n-1))
		}
		i += n
	}
	return strings.Join(items, ",")
}

func formatClock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// TimeZone is the window's IANA time zone name, "UTC" when none was given, and "" for the zero
// Window.
func (w Window) TimeZone() string { return w.zone }

// Equal reports whether w and o are the same window: the same days, times and time zone.
func (w Window) Equal(o Window) bool {
	return w.days == o.days && w.start == o.start && w.end == o.end && w.zone == o.zone
}

// Minutes is the nominal length of an occurrence in minutes, from 1 to 1440; 60 for the zero Window.
func (w Window) Minutes() int {
	switch {
	case w.days == 0:
		return zeroMinutes
	case w.end > w.start:
		return w.end - w.start
	}
	return w.end + minutesPerDay - w.start
}

func (w Window) length() time.Duration { return time.Duration(w.Minutes()) * time.Minute }

// Open reports whether t lies in an occurrence of the window. The zero Window is always open.
func (w Window) Open(t time.Time) bool {
	_, _, ok := w.Current(t)
	return ok
}

// Current gives the occurrence that holds t, start inclusive and end exclusive, in the window's time
// zone; ok is false if t is outside the window. Of two overlapping occurrences (see the package
// comment) it gives the one that started last. For the zero Window it gives the hour of UTC that
// holds t.
func (w Window) Current(t time.Time) (start, end time.Time, ok bool) {
	if w.days == 0 {
		start = t.Truncate(time.Hour)
		return start, start.Add(time.Hour), true
	}
	// An occurrence lasts at most a day, so one that holds t started on t's date or one of the two
	// before it (two: the clocks may go back across midnight).
	y, m, d := t.In(w.loc).Date()
	for k := 0; k >= -2; k-- {
		s, ok := w.startOn(y, m, d+k)
		if !ok {
			continue
		}
		if e := s.Add(w.length()); !t.Before(s) && t.Before(e) {
			return s, e, true
		}
	}
	return time.Time{}, time.Time{}, false
}

// Next gives the start of the next occurrence at or after t, in the window's time zone, or t itself
// if the window is open at t (always, for the zero Window).
func (w Window) Next(t time.Time) time.Time {
	if w.Open(t) {
		return t
	}
	y, m, d := t.In(w.loc).Date()
	var next time.Time
	for k := -1; k <= 8; k++ {
		if s, ok := w.startOn(y, m, d+k); ok && !s.Before(t) && (next.IsZero() || s.Before(next)) {
			next = s
		}
	}
	return next
}

// startOn gives the start of the occurrence on the date y-m-d (d may be out of its month's range, as
// for time.Date), if the window has one that day.
func (w Window) startOn(y int, m time.Month, d int) (time.Time, bool) {
	date := time.Date(y, m, d, 0, 0, 0, 0, time.UTC) // the calendar date, normalized
	if w.days&(1<<date.Weekday()) == 0 {
		return time.Time{}, false
	}
	return firstAtOrAfter(date, w.start, w.loc), true
}

// firstAtOrAfter is the first instant at which the clock of loc shows minute (after midnight) of the
// calendar date or later: the end of the gap if the clocks skip that time, the first time if they show
// it twice.
func firstAtOrAfter(date time.Time, minute int, loc *time.Location) time.Time {
	y, m, d := date.Date()
	want := time.Date(y, m, d, 0, minute, 0, 0, time.UTC)
	t := time.Date(y, m, d, 0, minute, 0, 0, loc)
	zoneStart, zoneEnd := t.ZoneBounds()
	// A time the clocks skip: time.Date moves it by the gap, forward or back depending on the zone,
	// and the change itself is the first instant that shows a later time.
	switch wall := wallClock(t); {
	case wall.After(want) && !zoneStart.IsZero():
		return zoneStart
	case wall.Before(want) && !zoneEnd.IsZero():
		return zoneEnd
	case !wall.Equal(want) || zoneStart.IsZero():
		return t
	}
	// If the offset before t's zone period was larger, the clocks showed the same time before the
	// change too; take that first showing.
	_, off := t.Zone()
	_, prevOff := zoneStart.Add(-time.Nanosecond).Zone()
	if prevOff > off {
		if earlier := t.Add(time.Duration(off-prevOff) * time.Second); earlier.Before(zoneStart) {
			return earlier
		}
	}
	return t
}

// wallClock is what the clock of t's zone shows at t, as a time in UTC.
func wallClock(t time.Time) time.Time {
	y, m, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, m, d, h, mi, s, t.Nanosecond(), time.UTC)
}

// StaggerDue reports whether t lies in the node's own minute of the occurrence that holds t: the minute
// that starts offset minutes after the occurrence's start. It is false outside the window. An offset
// outside [0, Minutes()) is taken modulo Minutes(), so that it always names a minute of the window and
// nodes with distinct offsets stay apart as far as the window allows (clamping would put every such
// node on the last minute; refusing would never let them reboot). For the zero Window the minute is
// offset modulo 60 within each hour of UTC.
func (w Window) StaggerDue(t time.Time, offset int) bool {
	start, _, ok := w.Current(t)
	if !ok {
		return false
	}
	n := w.Minutes()
	offset = (offset%n + n) % n
	from := start.Add(time.Duration(offset) * time.Minute)
	return !t.Before(from) && t.Before(from.Add(time.Minute))
}

// StaggerMinute gives a node its minute in a window of the given length: a number in [0, minutes), the
// same every time for the same name. A name that ends in -<decimal ordinal>, as kiln's machine names
// <cluster>-<pool>-<ordinal> do, gets its ordinal modulo minutes: nodes whose ordinals differ modulo
// minutes never share a minute, and since a pool's machines take the lowest free ordinals, the nodes
// of a pool of at most minutes machines are apart. Any other
// name, or one whose ordinal is too large for an int, gets its FNV-1a hash modulo minutes. For
// minutes below 1 it is 0.
func StaggerMinute(nodeName string, minutes int) int {
	if minutes < 1 {
		return 0
	}
	i := strings.LastIndexByte(nodeName, '-')
	if n, err := strconv.Atoi(nodeName[i+1:]); i >= 0 && err == nil && isDigits(nodeName[i+1:]) {
		return n % minutes
	}
	h := fnv.New64a()
	h.Write([]byte(nodeName))
	return int(h.Sum64() % uint64(minutes))
}
