package window_test

import (
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/api/window"
)

func ExampleParse() {
	w, err := window.Parse("mon-fri 02:00-05:00", "Europe/Berlin")
	if err != nil {
		fmt.Println(err)
		return
	}
	saturday := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC)
	fmt.Println(w, w.TimeZone(), w.Minutes())
	fmt.Println(w.Open(saturday), w.Next(saturday))

	_, err = window.Parse("Mon-Fry 02:00-05:00", "")
	fmt.Println(err)
	// Output:
	// Mon-Fri 02:00-05:00 Europe/Berlin 180
	// false 2026-03-09 02:00:00 +0100 CET
	// schedule "Mon-Fry 02:00-05:00": day "Fry" is not one of Mon..Sun
}

func ExampleStaggerMinute() {
	w, _ := window.Parse("Sun 02:00-03:00", "UTC")
	for _, node := range []string{"prod-workers-0", "prod-workers-1", "prod-workers-61"} {
		offset := window.StaggerMinute(node, w.Minutes())
		due := time.Date(2026, 3, 8, 2, offset, 0, 0, time.UTC)
		fmt.Println(node, offset, w.StaggerDue(due, offset))
	}
	// Output:
	// prod-workers-0 0 true
	// prod-workers-1 1 true
	// prod-workers-61 1 true
}
