package ingest

import (
	"syscall"
	"time"
)

// shortSleep sleeps for d with a system call rather than time.Sleep: the
// runtime's timers wait in the network poller, whose granularity is a
// millisecond, long enough to fill a Unix socket and stall the walsender.
func shortSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	syscall.Nanosleep(&ts, nil)
}
