package ingest

import (
	"io"
	"time"
)

// coalescingReader reads the replication socket in fewer, larger pieces.
// The walsender writes every message on its own, and a reader that keeps
// up gets them one or two per read: a system call, a wake-up of the
// walsender and a park of the reading goroutine for every hundred bytes.
// After a short read it waits a moment so that more can arrive; a backup
// can spare the millisecond. A read that comes back full does not wait:
// lbt is behind, and the data is already there.
type coalescingReader struct {
	r     io.Reader
	wait  time.Duration
	short bool // the last read returned less than coalesceShortRead
	sleep func(time.Duration)
}

const (
	coalesceWait      = time.Millisecond
	coalesceShortRead = 16 << 10
)

func newCoalescingReader(r io.Reader) *coalescingReader {
	return &coalescingReader{r: r, wait: coalesceWait, sleep: time.Sleep}
}

func (c *coalescingReader) Read(p []byte) (int, error) {
	if c.short && len(p) >= coalesceShortRead {
		c.sleep(c.wait)
	}
	n, err := c.r.Read(p)
	c.short = n < coalesceShortRead
	return n, err
}
