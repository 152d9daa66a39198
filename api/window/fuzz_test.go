package window

import (
	"errors"
	"testing"
	"time"
)

// fuzzZones are the zones FuzzParse picks from: time.LoadLocation of arbitrary names would only
// search the file system.
var fuzzZones = []string{"", "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Nowhere/Else"}

// FuzzParse checks that Parse never panics, that it fails only with *Errors, and that a window it
// accepts writes a String that parses to an equal window and behaves: its length is 1 to 1440
// minutes, Current and Open agree, Next is open and not before the time asked about, and the
// occurrence that holds Next lasts Minutes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"Mon-Fri 02:00-05:00", "Sat,Sun 01:00-06:00", "Mon,Wed-Fri 03:00-04:00", "Fri-Mon 23:00-01:00",
		"* 02:00-02:30", "Sat 00:00-24:00", "Sun 02:30-03:30", "Mon-Fry 02:00-05:00", "Mon 02:00-02:00", "",
	} {
		for z := range fuzzZones {
			f.Add(s, uint8(z), int64(1774746000)) // 2026-03-29T01:00:00Z, Berlin's spring change
		}
	}
	f.Fuzz(func(t *testing.T, schedule string, zone uint8, unix int64) {
		tz := fuzzZones[int(zone)%len(fuzzZones)]
		w, err := Parse(schedule, tz)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q, %q): error %v is %T, not an *Error", schedule, tz, err, err)
			}
			return
		}
		again, err := Parse(w.String(), w.TimeZone())
		if err != nil || !again.Equal(w) {
			t.Fatalf("Parse(%q, %q) writes %q in %q, which parses to %v, %v", schedule, tz, w.String(), w.TimeZone(), again, err)
		}
		if m := w.Minutes(); m < 1 || m > 24*60 {
			t.Fatalf("%q: Minutes() = %d", schedule, m)
		}
		now := time.Unix(unix%(1<<34), 0) // within a few centuries of 1970
		if _, _, ok := w.Current(now); ok != w.Open(now) {
			t.Fatalf("%q at %s: Current and Open disagree", schedule, now)
		}
		next := w.Next(now)
		start, end, ok := w.Current(next)
		if next.Before(now) || !ok {
			t.Fatalf("%q in %q: Next(%s) = %s, before it or not open", w, tz, now, next)
		}
		if end.Sub(start) != time.Duration(w.Minutes())*time.Minute {
			t.Fatalf("%q in %q: the occurrence at %s lasts %s, not %d minutes", w, tz, next, end.Sub(start), w.Minutes())
		}
	})
}
