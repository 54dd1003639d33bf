package ingest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// batch carries received messages from the reader to the archiver. Message
// bytes are copied into one arena: pgconn reuses its read buffer.
type batch struct {
	arena   []byte
	msgs    []batchMsg
	started time.Time // when its first message arrived
}

type batchMsg struct {
	start, end  int
	isKeepalive bool
	walEnd      uint64 // a keepalive's WAL end; the message has no data
}

const (
	batchMaxBytes = 1 << 20
	batchMaxMsgs  = 8192
	// A batch is handed over once it has this many messages or is this
	// old: one goroutine switch per message would cost more than the
	// message itself. A quiet stream hands over when the read times out.
	batchHandOffMsgs = 512
	batchHandOffAge  = 5 * time.Millisecond
	readWait         = 20 * time.Millisecond
	batchesQueued    = 4
)

func (b *batch) full() bool { return len(b.arena) >= batchMaxBytes || len(b.msgs) >= batchMaxMsgs }

func (b *batch) ready(now time.Time) bool {
	return len(b.msgs) >= batchHandOffMsgs || (len(b.msgs) > 0 && now.Sub(b.started) >= batchHandOffAge)
}

// stream runs the reader in this goroutine and the archiver in another until
// ctx ends or either fails, then confirms what is durable.
// The reader's clock is paced's (the time of the last socket read).
func stream(ctx context.Context, log hclog.Logger, o *Options, conn *pgconn.PgConn, paced *pacedReader, a *archiver, durable *atomic.Uint64, confirmed uint64) error {
	// A few batches may wait for the archiver: the socket holds only a
	// couple of hundred messages, and the walsender stops when it is full.
	batches := make(chan *batch, batchesQueued)
	free := make(chan *batch, batchesQueued+2)
	done := make(chan struct{})
	archErr := make(chan error, 1)
	go func() {
		defer close(done)
		archErr <- a.loop(batches, free)
	}()
	r := &reader{log: log, o: o, conn: conn, clock: paced, out: batches, free: free, done: done, durable: durable, floor: confirmed}
	o.Health.setStreaming(true)
	defer o.Health.setStreaming(false)
	watchCtx, stopWatch := context.WithCancel(ctx)
	go watchStall(watchCtx, log, o, durable)
	readErr := r.run(ctx)
	stopWatch()
	close(batches)
	err := <-archErr
	if err == nil {
		err = readErr
	}
	if conn.IsClosed() {
		return err
	}
	// Tell the server what is durable now, so that it resends no more than needed.
	if serr := r.sendStatus(); serr != nil && err == nil && ctx.Err() == nil {
		err = serr
	}
	if err == nil && ctx.Err() != nil {
		log.Info("stopped", "confirmed_lsn", pglogrepl.LSN(r.confirmable()))
	}
	return err
}

// reader owns the replication connection: nothing else touches it.
type reader struct {
	log      hclog.Logger
	o        *Options
	conn     *pgconn.PgConn
	clock    *pacedReader // now() for each message: a time read per socket read, not per message
	out      chan<- *batch
	free     chan *batch
	done     <-chan struct{}
	durable  *atomic.Uint64
	floor    uint64 // the slot's confirmed position at start
	received uint64
	sentAt   time.Time
	sent     uint64
}

var errArchiverStopped = errors.New("archiver stopped")

func (r *reader) run(ctx context.Context) error {
	cur := r.newBatch()
	var deadlineSet time.Time
	for {
		if ctx.Err() != nil {
			return r.handOff(cur, true)
		}
		select {
		case <-r.done: // the archiver failed; its error is the one to report
			return errArchiverStopped
		default:
		}
		now := r.clock.now()
		if now.Sub(r.sentAt) >= r.o.StatusInterval || r.confirmable() != r.sent {
			if err := r.sendStatus(); err != nil {
				return err
			}
		}
		if cur.ready(now) {
			// Hand over when the queue has room; wait for the archiver
			// only when the batch is full, which bounds memory.
			select {
			case r.out <- cur:
				cur = r.newBatch()
			case <-r.done:
				return errArchiverStopped
			default:
				if cur.full() {
					if err := r.handOff(cur, false); err != nil {
						return err
					}
					cur = r.newBatch()
				}
			}
		}
		// Moving the deadline costs a timer update: under load, do it once
		// in a while rather than for every message.
		// The deadline is set from the present, not from the last read:
		// after a long hand-off that one is old, and a deadline from it
		// could be past already.
		if now.Sub(deadlineSet) >= readWait/2 {
			at := time.Now()
			r.conn.Conn().SetReadDeadline(at.Add(readWait))
			deadlineSet = at
		}
		msg, err := r.conn.ReceiveMessage(context.Background())
		if err != nil {
			if isTimeout(err) {
				deadlineSet = time.Time{}
				if len(cur.msgs) > 0 {
					if err := r.handOff(cur, false); err != nil {
						return err
					}
					cur = r.newBatch()
				}
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("replication stream: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(cur.msgs) == 0 {
				cur.started = now
			}
			if err := r.copyData(m.Data, cur); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return errors.New("replication stream: the server ended it")
		case *pgproto3.NoticeResponse:
			r.log.Info("server notice", "message", m.Message)
		}
	}
}

func (r *reader) copyData(data []byte, cur *batch) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parse keepalive: %w", err)
		}
		cur.msgs = append(cur.msgs, batchMsg{isKeepalive: true, walEnd: uint64(k.ServerWALEnd)})
		if k.ReplyRequested {
			return r.sendStatus()
		}
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parse XLogData: %w", err)
		}
		start := len(cur.arena)
		cur.arena = append(cur.arena, x.WALData...)
		cur.msgs = append(cur.msgs, batchMsg{start: start, end: len(cur.arena)})
		r.received = max(r.received, uint64(x.WALStart))
	}
	return nil
}

// handOff gives the batch to the archiver, waiting as long as it takes but
// keeping the walsender informed meanwhile.
func (r *reader) handOff(b *batch, final bool) error {
	if len(b.msgs) == 0 {
		return nil
	}
	tick := time.NewTicker(r.o.StatusInterval)
	defer tick.Stop()
	for {
		select {
		case r.out <- b:
			return nil
		case <-r.done:
			return errArchiverStopped
		case <-tick.C:
			if !final {
				if err := r.sendStatus(); err != nil {
					return err
				}
			}
		}
	}
}

func (r *reader) newBatch() *batch {
	select {
	case b := <-r.free:
		b.arena, b.msgs = b.arena[:0], b.msgs[:0]
		return b
	default:
		return &batch{arena: make([]byte, 0, 64<<10)}
	}
}

// confirmable is the position to confirm: what is durable and, with an
// object store, also held there (Options.Covered); never below what the
// slot had confirmed at start.
func (r *reader) confirmable() uint64 {
	d := r.durable.Load()
	if r.o.Covered != nil {
		d = min(d, r.o.Covered())
	}
	return max(d, r.floor)
}

// sendStatus reports the confirmable position as flushed. The flush field
// is never zero: the server would take the write position for it.
func (r *reader) sendStatus() error {
	d := r.confirmable()
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(max(r.received, d)),
		WALFlushPosition: pglogrepl.LSN(d),
		WALApplyPosition: pglogrepl.LSN(d),
		ClientTime:       time.Now(),
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	r.sentAt, r.sent = time.Now(), d
	return nil
}

// loop runs the archiver over the batches until the reader closes them.
func (a *archiver) loop(in <-chan *batch, free chan<- *batch) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	// A quiet stream brings no batch for a long time: look for dropped
	// tables on a clock of their own.
	var dropCheck <-chan time.Time
	if a.opts.DropCheckInterval > 0 {
		tick := time.NewTicker(a.opts.DropCheckInterval)
		defer tick.Stop()
		dropCheck = tick.C
	}
	// Wakes the loop for the looks at the partition trees (partitions.go)
	// when the stream is quiet.
	looks := time.NewTicker(time.Second)
	defer looks.Stop()
	// Seals the active segment on time when the stream is quiet.
	var sealCheck <-chan time.Time
	if a.opts.SealInterval > 0 {
		tick := time.NewTicker(min(a.opts.SealInterval/4, 5*time.Second))
		defer tick.Stop()
		sealCheck = tick.C
	}
	for {
		a.opts.Health.idle()
		select {
		case <-dropCheck:
		case b, ok := <-in:
			a.opts.Health.busy(time.Now())
			if !ok {
				return a.finish()
			}
			for _, m := range b.msgs {
				if m.isKeepalive {
					a.keepalive(m.walEnd)
					continue
				}
				data := b.arena[m.start:m.end]
				if err := a.handle(data); err != nil {
					return err
				}
				// Between transactions is the only place a flush can run:
				// check after each commit, not only at batch ends, which
				// under load mostly fall inside transactions.
				if data[0] == 'C' && a.flushDue() {
					if err := a.flush(); err != nil {
						return err
					}
				}
			}
			select {
			case free <- b:
			default:
			}
		case <-timer.C:
			a.opts.Health.busy(time.Now())
			armed = false
		case <-looks.C:
		case <-sealCheck:
		}
		if err := a.maybeLookPartitions(); err != nil {
			return err
		}
		if a.flushDue() {
			if err := a.flush(); err != nil {
				return err
			}
		}
		if a.sealDue() {
			a.forceSeal = true
			if err := a.flush(); err != nil {
				return err
			}
		}
		if a.quietDue() {
			// The commit in flight, if any, is the last: the catalog is
			// then at a.pending.
			if err := a.waitCommit(); err != nil {
				return err
			}
			if err := a.opts.Quiet(a.ctx, a.cat, a.pending); err != nil {
				return err
			}
		}
		if a.dropCheckDue() {
			if err := a.checkDropped(nil); err != nil {
				return err
			}
			if err := a.checkShapes(); err != nil {
				return err
			}
		}
		if a.dirty && !armed {
			timer.Reset(max(a.opts.FlushInterval-time.Since(a.pendingSince), 10*time.Millisecond))
			armed = true
		}
	}
}

// watchStall warns, once a minute, while the archiver is stuck on one
// batch: the reader still answers the server then, so nothing else would
// show it.
func watchStall(ctx context.Context, log hclog.Logger, o *Options, durable *atomic.Uint64) {
	tick := time.NewTicker(min(o.StatusInterval, o.StallAfter/2))
	defer tick.Stop()
	var warned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			err := o.Health.Check(now, o.StallAfter)
			if err == nil || now.Sub(warned) < time.Minute {
				continue
			}
			warned = now
			log.Warn("no progress: "+err.Error(), "confirmed_lsn", pglogrepl.LSN(durable.Load()))
		}
	}
}

// finish makes every completed transaction durable when the stream stops.
// A transaction cut off in the middle is dropped; the server sends it again.
func (a *archiver) finish() error {
	if !a.discardCurrentTx() {
		// A large transaction already wrote part of itself; everything
		// before it is durable, and its own rows are abandoned with the
		// catalog transaction. Its blobs are cut off at the next start.
		return nil
	}
	// The final flush records the position in the segment even when only
	// keepalives moved it, so that a catalog rebuilt from the files knows
	// everything the server was told.
	a.closing = true
	// A TRUNCATE still awaited may be far down the stream, or no TRUNCATE
	// at all: until the next run sees it, the span is refused.
	if len(a.awaited) > 0 {
		if err := a.settleAwaited(math.MaxUint64); err != nil {
			return err
		}
		a.markPending(a.pending)
	}
	if a.dirty || a.pending.EndLSN > a.metaEnd {
		if err := a.flush(); err != nil {
			return err
		}
	}
	return a.waitCommit()
}
