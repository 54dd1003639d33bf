package ingest

// The committer: the durable step of each flush (fsync the segment, commit
// the catalog rows, publish the position), run beside the archiver.

import (
	"time"

	"lbt/catalog"
)

// commitJob is one flush's durable step: fsync the segment, commit the
// catalog rows, publish the position. A committer goroutine runs it while
// the archiver goes on decoding what follows, so that the stream does not
// stall for the length of an fsync and a catalog commit.
type commitJob struct {
	w        *catalog.Writer
	seg      *catalog.SegmentWriter
	segSize  int64 // the bytes this flush's rows reference
	sealed   bool
	pos      catalog.Position
	activity map[int64]catalog.TableActivity
	txs      int
}

// commitFlush hands what was flushed to the committer; with wait, or when the
// segment is sealed, it also waits until it is durable. One commit runs at a
// time, so positions become durable in order.
func (a *archiver) commitFlush(wait bool) error {
	if err := a.waitCommit(); err != nil {
		return err
	}
	w, err := a.writer()
	if err != nil {
		return err
	}
	if err := a.writeMetadata(w); err != nil {
		return err
	}
	job := commitJob{w: w, seg: a.seg, segSize: a.seg.Size(), pos: a.pending, txs: a.pendingTxs,
		activity: make(map[int64]catalog.TableActivity, len(a.touchedSince))}
	job.sealed = a.segChanges >= a.opts.DeltasPerFile || job.segSize >= a.opts.SegmentMaxBytes || a.forceSeal
	a.forceSeal = false
	for t := range a.touchedSince {
		job.activity[t.id] = t.act
		if m := a.opts.Metrics; m != nil && t.act.Changes > 0 {
			if t.changesMetric == nil {
				t.changesMetric = m.changes.WithLabelValues(t.def.QualifiedName())
			}
			t.changesMetric.Add(float64(t.act.Changes))
		}
		t.act = catalog.TableActivity{}
		delete(a.touchedSince, t)
	}
	a.w = nil
	a.dirty = false
	a.pendingTxs, a.pendingRows = 0, 0
	done := make(chan error, 1)
	a.committing = done
	go func() { done <- a.runCommit(job) }()
	if !wait && !job.sealed {
		return nil
	}
	if err := a.waitCommit(); err != nil {
		return err
	}
	if job.sealed {
		a.seg.Close()
		a.seg = nil
		if a.opts.Sealed != nil {
			if err := a.opts.Sealed(a.ctx, a.cat, job.pos); err != nil {
				return err
			}
		}
		return a.newSegment()
	}
	return nil
}

// sealDue says whether the active segment has been open for SealInterval
// with something in it, and can be sealed now (between transactions).
func (a *archiver) sealDue() bool {
	return a.opts.SealInterval > 0 && !a.tx.active && a.seg != nil &&
		a.seg.Size() > catalog.SegmentHeaderSize && time.Since(a.segOpened) >= a.opts.SealInterval
}

// quietDue says whether the archiver is between transactions with nothing
// in the active segment and nothing waiting to be flushed (Options.Quiet).
func (a *archiver) quietDue() bool {
	return a.opts.Quiet != nil && !a.tx.active && !a.dirty && a.seg != nil &&
		a.seg.Size() == catalog.SegmentHeaderSize
}

// waitCommit waits for the commit in flight, if any, and returns its error.
func (a *archiver) waitCommit() error {
	if a.committing == nil {
		return nil
	}
	err := <-a.committing
	a.committing = nil
	return err
}

// runCommit runs in the committer goroutine. It touches only the job, the
// shared atomic durable position and the metrics.
func (a *archiver) runCommit(job commitJob) error {
	start := time.Now()
	if a.opts.Fsync {
		if err := job.seg.Sync(); err != nil {
			job.w.Rollback()
			return err
		}
	}
	for id, act := range job.activity {
		if err := job.w.AddTableActivity(id, act); err != nil {
			job.w.Rollback()
			return err
		}
	}
	if err := job.w.SetSegmentSize(job.seg.ID, job.segSize, job.sealed); err != nil {
		job.w.Rollback()
		return err
	}
	if err := job.w.SetPosition(job.pos); err != nil {
		job.w.Rollback()
		return err
	}
	if err := job.w.Commit(); err != nil {
		return err
	}
	a.durable.Store(job.pos.EndLSN)
	if m := a.opts.Metrics; m != nil {
		m.transactions.Add(float64(job.txs))
		m.flushes.Observe(time.Since(start).Seconds())
		m.archivedLSN.Set(float64(job.pos.EndLSN))
		if !job.pos.CommitTime.IsZero() {
			m.lastCommit.Set(float64(job.pos.CommitTime.UnixMicro()) / 1e6)
		}
	}
	return nil
}
