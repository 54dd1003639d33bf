package ingest

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Health says whether the daemon makes progress, for a supervisor's
// watchdog and the health endpoint: the stream runs, and the archiver is
// not stuck on one batch of messages. A stream that only sends status
// updates while its archiver waits forever would look alive to the server
// and to systemd; Health does not. A nil *Health records nothing.
type Health struct {
	streaming atomic.Bool
	busySince atomic.Int64 // Unix nanoseconds: the archiver took its current batch then; 0 while it waits for one
}

// NewHealth returns a Health of a daemon that is not streaming yet.
func NewHealth() *Health { return &Health{} }

// Check returns nil while the stream runs and the archiver has spent less
// than stallAfter on its current batch, else why not.
func (h *Health) Check(now time.Time, stallAfter time.Duration) error {
	if h == nil {
		return nil
	}
	if !h.streaming.Load() {
		return fmt.Errorf("not streaming: connecting to the source, or waiting to retry")
	}
	if busy := h.busyFor(now); busy >= stallAfter {
		return fmt.Errorf("stalled: the archiver has been on one batch of messages for %s", busy.Round(time.Second))
	}
	return nil
}

func (h *Health) busyFor(now time.Time) time.Duration {
	since := h.busySince.Load()
	if since == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, since))
}

func (h *Health) setStreaming(on bool) {
	if h != nil {
		h.streaming.Store(on)
	}
}

func (h *Health) busy(now time.Time) {
	if h != nil {
		h.busySince.Store(now.UnixNano())
	}
}

func (h *Health) idle() {
	if h != nil {
		h.busySince.Store(0)
	}
}
