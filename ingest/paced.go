package ingest

import (
	"io"
	"net"
	"time"
)

// pacedReader reads the replication connection a little behind the
// walsender. Under a backlog the walsender writes each message with its own
// send, and a reader that keeps up wakes for every one: a read system call
// and a network poller wake-up per message cost lbt more CPU than decoding,
// indexing and compressing it, on cores the walsender needs. After a short
// read it therefore pauses briefly, so that the next read collects dozens of
// messages. The pause stays well below what fills a Unix socket's buffer
// (about 200 small messages, under a millisecond of a busy walsender), so
// the walsender does not wait for lbt because of it.
//
// Over TCP reads are not paced: the kernel queues a backlog in a buffer of
// megabytes, so a read already takes many messages when lbt falls behind,
// and two A/B runs of the benchmark over 127.0.0.1 showed no gain from
// pausing (58k against 68k changes/s in one, 68k against 67k in the other).
//
// It is also the reader's clock: the time of its last read of the socket,
// which every message in the read buffer arrived before. The reader asks
// the time for each message, and a clock read per system call rather than
// per message took 2% of lbt's CPU off a backlog's drain.
type pacedReader struct {
	r      io.Reader
	pause  time.Duration
	short  bool      // the last read returned less than pacedShortRead
	readAt time.Time // when the last read returned, successful or not
}

const (
	pacedShortRead = 4 << 10
	pacedPause     = 100 * time.Microsecond
)

// readPause is the pause for a connection: pacedPause over a Unix socket,
// none otherwise.
func readPause(w io.Writer) time.Duration {
	if c, ok := w.(net.Conn); ok && c.LocalAddr().Network() == "unix" {
		return pacedPause
	}
	return 0
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.short && p.pause > 0 {
		shortSleep(p.pause)
	}
	n, err := p.r.Read(b)
	p.short = n < pacedShortRead
	p.readAt = time.Now()
	return n, err
}

// now is the time of the last read, or the present before the first.
func (p *pacedReader) now() time.Time {
	if p.readAt.IsZero() {
		return time.Now()
	}
	return p.readAt
}
