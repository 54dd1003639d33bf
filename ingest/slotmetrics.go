package ingest

import (
	"context"
	"time"

	"lbt/source"
)

// watchSlot keeps the slot's metrics current: the WAL it keeps on the
// source and how far the source is ahead of what it confirmed. They are
// what a stopped or slow daemon costs the source, so they are read on a
// connection of their own, whatever the stream is doing.
func watchSlot(ctx context.Context, o *Options, every time.Duration) {
	if o.Metrics == nil {
		return
	}
	for {
		qctx, cancel := context.WithTimeout(ctx, every)
		s, err := source.ReadSlotState(qctx, o.Conn, o.Slot)
		cancel()
		if err == nil && s.Exists {
			o.Metrics.retainedWAL.Set(float64(s.RetainedWAL))
			lag := 0.0
			if s.Current > s.Confirmed {
				lag = float64(s.Current - s.Confirmed)
			}
			o.Metrics.slotLag.Set(lag)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
