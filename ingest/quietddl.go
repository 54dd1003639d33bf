package ingest

import (
	"context"
	"time"

	"lbt/catalog"
)

// shapeSuspect is a table whose description on the source no longer
// follows from the archive's, seen by a periodic look rather than in the
// stream.
type shapeSuspect struct {
	at     sourcePoint // the source's WAL position before the look that saw it
	reason string
}

// checkShapes looks, with the periodic look for dropped tables, whether a
// table's rows or columns changed on the source in a way that no message
// of the stream has shown: a DDL that rewrote a quiet table (ALTER COLUMN
// TYPE, a volatile default) sends nothing until the table's next change,
// and until then a restore of it would give its old rows.
//
// A change seen so is first only a suspicion, while the stream has not
// caught up with the look: a TRUNCATE or a change of the table on their
// way explain it, and relation handles those. At a later look, with the
// stream past the first look's position and the change still not
// explained, it is an inexact span from just after the table's last
// archived transaction, and the scheduler takes the basebackup that
// closes it. Without DDL capture a quiet table's rewrite is so refused
// from about two looks (DropCheckInterval) after it; with capture, from
// its own commit (describeAltered).
func (a *archiver) checkShapes() error {
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	before, err := a.sourcePoint(ctx)
	if err != nil {
		a.log.Warn("cannot look at the archived tables on the source", "error", err)
		return nil
	}
	awaited := len(a.awaited)
	if err := a.settleAwaited(a.pending.EndLSN); err != nil {
		return err
	}
	if len(a.awaited) < awaited {
		a.markPending(a.pending) // commit it with the next flush
	}
	for oid, t := range a.tables {
		if _, ok := a.awaited[oid]; ok || !t.tracked || t.version == 0 || t.id == 0 || len(t.buf) > 0 {
			continue // an awaited TRUNCATE is settled above
		}
		desc, st, ok, err := a.lookup.DescribeCurrent(ctx, oid, t.desc)
		if err != nil {
			a.log.Warn("cannot look at an archived table on the source", "table", t.desc.QualifiedName(), "error", err)
			return nil
		}
		if !ok {
			continue // dropped: checkDropped records it
		}
		reason := inexactChange(t.desc, desc, t.storage, st, t.truncXid)
		if reason == "" {
			delete(a.suspects, oid)
			continue
		}
		s, ok := a.suspects[oid]
		if !ok {
			a.suspects[oid] = shapeSuspect{at: before, reason: reason}
			continue
		}
		if a.pending.EndLSN < s.at.lsn {
			continue // the stream may still bring what explains it
		}
		w, err := a.catalogTx()
		if err != nil {
			return err
		}
		g := catalog.TableGap{TableID: t.id, SeenLSN: s.at.lsn, Reason: reason}
		g.FromLSN, g.FromTime = t.spanStart()
		g.FromLSN = min(g.FromLSN, g.SeenLSN)
		if err := a.addTableGap(w, g, desc.QualifiedName()); err != nil {
			return err
		}
		if err := a.setDescription(w, t, desc, st); err != nil {
			return err
		}
		t.desc, t.storage, t.truncXid = desc, st, 0
		delete(a.suspects, oid)
		a.markPending(a.pending) // commit it with the next flush
	}
	return nil
}
