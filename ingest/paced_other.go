//go:build !linux

package ingest

import "time"

// shortSleep does not pause where a sub-millisecond sleep is not to be had
// cheaply: reads are then not paced.
func shortSleep(time.Duration) {}
