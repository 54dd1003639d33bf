package ingest

// The archiver's buffers: change records per table, written out as blobs
// (and metadata blobs) into the active segment at a flush, or before the
// transaction ends when it grows too large for memory.

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"

	"lbt/catalog"
)

// sealSegment marks the segment active, which nothing will be appended to
// any more, sealed in the catalog.
func (a *archiver) sealSegment(active catalog.OpenSegmentState) error {
	w, err := a.cat.Begin(a.ctx)
	if err != nil {
		return err
	}
	if err := w.SetSegmentSize(active.ID, active.Size, true); err != nil {
		w.Rollback()
		return err
	}
	if err := w.Commit(); err != nil {
		return err
	}
	a.log.Info("sealed the active segment: without decryptIdentityFile, lbt backup cannot append to an encrypted one", "segment", active.ID)
	return nil
}

// newSegment creates the next segment and records it at once, so that the
// catalog never references a segment that is not on disk.
func (a *archiver) newSegment() error {
	id := a.nextSegID
	// A header alone with this id is left from a crash before its catalog
	// row was committed; anything more is data of a newer catalog's, and
	// is refused, never removed.
	if err := catalog.RemoveSegmentLeftover(a.cat.FS(), a.cat.Dir(), id); err != nil {
		return fatalError{err}
	}
	seg, err := catalog.CreateSegment(a.cat.FS(), a.cat.Dir(), id, a.cat.Keys())
	if err != nil {
		return err
	}
	w, err := a.cat.Begin(a.ctx)
	if err != nil {
		seg.Close()
		return err
	}
	if err := w.AddSegment(id, seg.Size()); err != nil {
		w.Rollback()
		seg.Close()
		return err
	}
	if err := w.Commit(); err != nil {
		seg.Close()
		return err
	}
	a.seg, a.segChanges, a.nextSegID = seg, 0, id+1
	a.segOpened = time.Now()
	clear(a.described)
	a.segEpochs = false
	a.log.Debug("new segment", "segment", id)
	return nil
}

// startRecord prepares t's buffer for a record of the current transaction:
// a transaction marker when the transaction first writes there, and a schema
// switch when the definition changed.
func (a *archiver) startRecord(t *table) {
	if len(t.buf) == 0 {
		t.blobID = a.nextBlobID
		a.nextBlobID++
		t.bufSchema, t.curSchema = t.version, t.version
		t.firstLSN = a.tx.commitLSN
		t.markLSN, t.markXid = 0, 0
	}
	if t.markLSN != a.tx.commitLSN {
		if t.txFirstBlob == 0 {
			t.bufTxs++
			t.txFirstBlob = t.blobID
			t.txStartOff, t.txStartSchema = len(t.buf), t.curSchema
			t.txPrevMarkLSN, t.txPrevMarkXid = t.markLSN, t.markXid
			a.tx.touched = append(a.tx.touched, t)
		}
		t.buf = catalog.AppendTx(t.buf, a.tx.commitLSN, t.markLSN, a.tx.xid, t.markXid)
		t.markLSN, t.markXid = a.tx.commitLSN, a.tx.xid
	}
	if t.curSchema != t.version {
		t.buf = catalog.AppendSchema(t.buf, t.version)
		t.curSchema = t.version
	}
}

func (a *archiver) change(data []byte) error {
	if !a.tx.active {
		return fmt.Errorf("change outside a transaction")
	}
	if a.tx.skip {
		return nil
	}
	if len(data) < 6 {
		return errShort
	}
	oid := binary.BigEndian.Uint32(data[1:5])
	t := a.tables[oid]
	if t == nil {
		return fmt.Errorf("change of relation %d before its RELATION message", oid)
	}
	if !t.tracked {
		return nil
	}
	before := len(t.buf)
	a.startRecord(t)
	p := 5
	var err error
	var n int
	var key, oldKey int64
	var hasKey, hasOld bool
	switch data[0] {
	case 'I':
		if data[p] != 'N' {
			return fmt.Errorf("INSERT into %s: unexpected tuple type %q", t.def.QualifiedName(), data[p])
		}
		t.buf = append(t.buf, catalog.TagInsert)
		t.buf, _, key, hasKey, err = appendTuple(t.buf, data[p+1:], t.keyCols)
		t.tc.Inserts++
		t.bc.Inserts++
	case 'U':
		t.buf = append(t.buf, catalog.TagUpdate)
		if data[p] == 'K' || data[p] == 'O' {
			t.buf = append(t.buf, data[p])
			t.buf, n, oldKey, hasOld, err = appendTuple(t.buf, data[p+1:], t.keyCols)
			if err != nil {
				break
			}
			p += 1 + n
		} else {
			t.buf = append(t.buf, catalog.OldNone)
		}
		if p >= len(data) || data[p] != 'N' {
			return fmt.Errorf("UPDATE of %s: no new tuple", t.def.QualifiedName())
		}
		t.buf, _, key, hasKey, err = appendTuple(t.buf, data[p+1:], t.keyCols)
		t.tc.Updates++
		t.bc.Updates++
	case 'D':
		if data[p] != 'K' && data[p] != 'O' {
			return fmt.Errorf("DELETE from %s: unexpected tuple type %q", t.def.QualifiedName(), data[p])
		}
		t.buf = append(t.buf, catalog.TagDelete, data[p])
		t.buf, _, key, hasKey, err = appendTuple(t.buf, data[p+1:], t.keyCols)
		t.tc.Deletes++
		t.bc.Deletes++
	}
	if err != nil {
		return fmt.Errorf("decode change of %s: %w", t.def.QualifiedName(), err)
	}
	if hasKey {
		a.addKey(t, key)
	}
	if hasOld && oldKey != key {
		a.addKey(t, oldKey)
	}
	a.buffered += len(t.buf) - before
	return a.bound(t)
}

func (a *archiver) addKey(t *table, hash int64) {
	a.tx.keys = append(a.tx.keys, rowKey{t.id, hash})
}

// spillKeys moves a large transaction's row keys from memory to its spill
// file.
func (a *archiver) spillKeys() error {
	if a.tx.keySpill == nil {
		s, err := newKeySpill(a.opts.tempDir())
		if err != nil {
			return err
		}
		a.tx.keySpill = s
	}
	for _, k := range a.tx.keys {
		if err := a.tx.keySpill.add(k.table, k.hash); err != nil {
			return err
		}
	}
	a.tx.keys = a.tx.keys[:0]
	return nil
}

// bound keeps memory bounded inside a large transaction by writing buffers
// out as blobs before the transaction ends.
func (a *archiver) bound(t *table) error {
	if a.tx.spilled && len(a.tx.keys) >= 4096 {
		// A huge transaction's row keys go to its spill file as they come.
		if err := a.spillKeys(); err != nil {
			return err
		}
	}
	if len(t.buf) < blobMaxRaw && a.buffered < maxBuffered && len(a.tx.keys) < 1<<16 {
		return nil
	}
	if !a.tx.spilled {
		// Make everything before this transaction durable first, so that the
		// catalog transaction from here on holds this transaction alone and
		// can be abandoned whole if it never commits.
		if err := a.flushBeforeCurrentTx(); err != nil {
			return err
		}
		a.tx.spilled = true
		if _, err := a.writer(); err != nil {
			return err
		}
		a.log.Debug("large transaction: writing it out as it arrives", "xid", a.tx.xid, "lsn", pglogrepl.LSN(a.tx.commitLSN))
	}
	if err := a.spillKeys(); err != nil {
		return err
	}
	if len(t.buf) >= blobMaxRaw {
		return a.writeBlob(t)
	}
	for _, u := range a.tables {
		if len(u.buf) > 0 {
			if err := a.writeBlob(u); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushDue says whether a flush should run now.
func (a *archiver) flushDue() bool {
	return a.dirty && !a.tx.active && (time.Since(a.pendingSince) >= a.opts.FlushInterval ||
		a.buffered >= flushBytes || a.pendingRows >= flushRows)
}

// flush makes every completed transaction durable: blobs written and
// fsynced, then the catalog committed, then the position published for the
// server.
func (a *archiver) flush() error {
	if a.tx.active {
		return fmt.Errorf("flush inside a transaction")
	}
	for _, t := range a.tables {
		if len(t.buf) > 0 {
			if err := a.writeBlob(t); err != nil {
				return err
			}
		}
	}
	return a.commitFlush(false)
}

// flushBeforeCurrentTx makes durable everything before the current
// transaction, keeping that transaction's records in the buffers.
func (a *archiver) flushBeforeCurrentTx() error {
	for _, t := range a.tables {
		if len(t.buf) == 0 {
			continue
		}
		if t.txFirstBlob == 0 { // untouched by the current transaction
			if err := a.writeBlob(t); err != nil {
				return err
			}
			continue
		}
		if t.txStartOff == 0 {
			continue
		}
		restLen := len(t.buf) - t.txStartOff
		rest := rebaseMarker(t.buf[t.txStartOff:], a.tx.commitLSN, a.tx.xid)
		t.buf = t.buf[:t.txStartOff]
		a.buffered -= restLen
		t.markLSN, t.markXid = t.txPrevMarkLSN, t.txPrevMarkXid
		t.bc.Sub(t.tc)
		t.bufTxs--
		if err := a.writeBlob(t); err != nil {
			return err
		}
		t.buf = append(t.buf[:0], rest...)
		a.buffered += len(t.buf)
		t.blobID = a.nextBlobID
		a.nextBlobID++
		t.txFirstBlob = t.blobID
		t.bufSchema, t.firstLSN = t.txStartSchema, a.tx.commitLSN
		t.markLSN, t.markXid = a.tx.commitLSN, a.tx.xid
		t.bc, t.bufTxs = t.tc, 1
		t.txStartOff = 0
	}
	if !a.dirty {
		return a.waitCommit()
	}
	// The current transaction's own rows go to SQLite from here on: what
	// came before must be committed first.
	return a.commitFlush(true)
}

// rebaseMarker rewrites the transaction marker at the start of recs, which is
// relative to the marker before it, as an absolute one.
func rebaseMarker(recs []byte, commitLSN uint64, xid uint32) []byte {
	_, n1 := binary.Uvarint(recs[1:])
	_, n2 := binary.Varint(recs[1+n1:])
	out := catalog.AppendTx(nil, commitLSN, 0, xid, 0)
	return append(out, recs[1+n1+n2:]...)
}

// discardCurrentTx drops the records of a transaction that will not commit
// here (lbt is stopping inside it); the server sends it again after restart.
func (a *archiver) discardCurrentTx() bool {
	if !a.tx.active || a.tx.skip {
		a.tx.active = false
		return true
	}
	if a.tx.spilled {
		return false
	}
	for _, t := range a.tx.touched {
		a.buffered -= len(t.buf) - t.txStartOff
		t.buf = t.buf[:t.txStartOff]
		t.markLSN, t.markXid = t.txPrevMarkLSN, t.txPrevMarkXid
		t.curSchema = t.txStartSchema
		t.bc.Sub(t.tc)
		t.bufTxs--
		t.txFirstBlob, t.tc = 0, catalog.Counts{}
	}
	a.tx = txState{}
	return true
}

func (a *archiver) writeBlob(t *table) error {
	w, err := a.writer()
	if err != nil {
		return err
	}
	frame, h, err := a.enc.Encode(t.id, t.bufSchema, t.firstLSN, t.buf)
	if err != nil {
		return err
	}
	off, length, err := a.seg.Append(frame)
	if err != nil {
		return err
	}
	w.AddBlob(catalog.Blob{ID: t.blobID, TableID: t.id, SegmentID: a.seg.ID, Offset: off, Length: length,
		CRC: h.CRC, Schema: t.bufSchema, FirstLSN: t.firstLSN, LastLSN: t.markLSN, Changes: int(t.bc.Total()), RawLength: len(t.buf),
		Txs: t.bufTxs, Counts: t.bc, SHA256: sha256.Sum256(frame)})
	a.meta.Blobs = append(a.meta.Blobs, catalog.MetaBlob{Offset: off, ID: t.blobID})
	for v := t.bufSchema; v <= t.curSchema; v++ {
		a.describe(t, v)
	}
	a.segChanges += int(t.bc.Total())
	a.buffered -= len(t.buf)
	if m := a.opts.Metrics; m != nil {
		m.blobBytes.Add(float64(len(frame)))
	}
	t.act.Blobs++
	a.touchedSince[t] = true
	if cap(t.buf) > 1<<20 {
		t.buf = nil // do not keep a huge transaction's buffer for a quiet table
	} else {
		t.buf = t.buf[:0]
	}
	t.bc, t.bufTxs = catalog.Counts{}, 0
	t.markLSN, t.markXid = 0, 0
	return nil
}

// writeMetadata appends the metadata blob of the catalog commit being
// prepared, after its blobs: what the commit adds, for a catalog rebuilt
// from the files. A commit that only moves the position on (an idle
// source's keepalive) writes one at the final flush and every few minutes,
// not at each status interval: a rebuilt catalog knows the position up to
// the last one. The commit's rows of inexact spans, table storage, table
// lives and partition trees go with it too.
func (a *archiver) writeMetadata(w *catalog.Writer) error {
	m := &a.meta
	extended, err := w.TableRecords(m)
	if err != nil {
		return err
	}
	for _, id := range extended {
		a.runEnds[id] = true
	}
	for _, p := range m.Partitions {
		delete(a.runEnds, p.ID) // carried whole
	}
	// A look that finds the trees unchanged only moves their runs on: that
	// is written as a keepalive's position is, now and then.
	due := a.closing || time.Since(a.metaAt) >= positionMetaInterval
	if len(m.Blobs) == 0 && len(m.Txs) == 0 && len(m.Schemas) == 0 &&
		len(m.Gaps) == 0 && len(m.Storage) == 0 && len(m.Lives) == 0 && len(m.Partitions) == 0 &&
		!(len(a.runEnds) > 0 && due) && (a.pending.EndLSN <= a.metaEnd || !due) {
		return nil
	}
	if len(a.runEnds) > 0 {
		ids := slices.Sorted(maps.Keys(a.runEnds))
		if err := w.RunEnds(ids, m); err != nil {
			return err
		}
		clear(a.runEnds)
	}
	if !a.segEpochs {
		m.Epochs, m.Archive = a.epochs, &a.source
	}
	m.Position = &catalog.MetaPosition{Epoch: a.pending.Epoch, EndLSN: a.pending.EndLSN, At: time.Now()}
	var first uint64
	if len(m.Txs) > 0 {
		first = m.Txs[0].CommitLSN
	}
	if a.metaRaw, err = catalog.AppendMetadata(a.metaRaw[:0], m); err != nil {
		return err
	}
	frame, _, err := a.enc.Encode(catalog.MetaTableID, 0, first, a.metaRaw)
	if err != nil {
		return err
	}
	if _, _, err := a.seg.Append(frame); err != nil {
		return err
	}
	a.segEpochs = true
	a.metaAt, a.metaEnd = time.Now(), a.pending.EndLSN
	a.meta = catalog.Metadata{Txs: m.Txs[:0], Blobs: m.Blobs[:0], Schemas: m.Schemas[:0]}
	return nil
}
