package ingest

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"lbt/catalog"
	"lbt/schema"
)

const (
	// A table's records become a blob at a flush, or mid-transaction once
	// they reach blobMaxRaw, so that a huge transaction streams to disk.
	blobMaxRaw = 4 << 20
	// All tables' unwritten records together stay under this.
	maxBuffered = 32 << 20
	// A flush is due when this much is buffered, whatever the interval.
	flushBytes = 16 << 20
	// ... or when this many catalog rows wait in memory.
	flushRows = 200_000
)

// archiver turns decoded pgoutput messages into blobs in segments and rows in
// the catalog. It runs in one goroutine; only durable is shared.
type archiver struct {
	log    hclog.Logger
	opts   *Options
	cat    *catalog.Catalog
	lookup *pgx.Conn // resolves type names and primary keys of new schema versions
	ctx    context.Context

	seg        *catalog.SegmentWriter
	segChanges int
	nextSegID  int64
	nextBlobID int64
	enc        catalog.BlobEncoder
	w          *catalog.Writer // open catalog transaction, nil when none

	tables    map[uint32]*table // by source OID
	published map[uint32]bool   // tables in the publication at start
	parts     partitionWatch    // looks at the partition trees (partitions.go)
	epoch     int64

	archived     catalog.Position // newest transaction archived (pending or durable)
	pending      catalog.Position // what the next flush makes durable
	dirty        bool             // pending differs from what is durable
	pendingSince time.Time
	buffered     int // bytes in all tables' bufs
	pendingTxs   int // transactions the next flush makes durable
	pendingRows  int // catalog rows waiting in memory for the next flush
	touchedSince map[*table]bool

	tx       txState
	txTables []catalog.TxTable // reused for each transaction's catalog row

	durable    *atomic.Uint64 // end LSN safe to confirm to the server
	committing chan error     // the commit in flight, if any
}

// txState is the transaction being received.
type txState struct {
	active, skip, spilled bool
	commitLSN             uint64
	xid                   uint32
	commitTime            time.Time
	origin                string
	touched               []*table
	keys                  []rowKey
	keySpill              *keySpill // row keys of a spilled transaction
	messages              []message
}

type rowKey struct {
	table int64
	hash  int64
}

type message struct {
	prefix  string
	content []byte
}

// table is the archiver's state for one source table.
type table struct {
	id            int64
	oid           uint32
	def           schema.Table
	version       int
	keyCols       []int
	tracked       bool
	warned        bool
	changesMetric prometheus.Counter

	// records not yet written as a blob
	buf       []byte
	blobID    int64
	bufSchema int // schema version at the start of buf
	curSchema int // schema version of the last record in buf
	firstLSN  uint64
	markLSN   uint64 // commit LSN of the last transaction marker in buf
	markXid   uint32
	bc        catalog.Counts // changes in buf
	bufTxs    int            // transactions that begin in buf

	// the current transaction's changes to this table
	txFirstBlob   int64
	txStartOff    int
	txStartSchema int
	txPrevMarkLSN uint64
	txPrevMarkXid uint32
	tc            catalog.Counts

	act catalog.TableActivity // since the last flush
}

func newArchiver(ctx context.Context, log hclog.Logger, opts *Options, cat *catalog.Catalog, lookup *pgx.Conn,
	published map[uint32]bool, epoch int64, durable *atomic.Uint64) (*archiver, error) {
	a := &archiver{
		// Not cancelled with the session: the final flush at shutdown must
		// still commit what was received.
		log: log, opts: opts, cat: cat, lookup: lookup, ctx: context.WithoutCancel(ctx),
		tables: make(map[uint32]*table), published: published, epoch: epoch,
		touchedSince: make(map[*table]bool), durable: durable,
	}
	if err := removeKeySpills(opts.tempDir()); err != nil {
		return nil, err
	}
	pos, _, err := cat.Position(ctx)
	if err != nil {
		return nil, err
	}
	pos.Epoch = epoch
	a.archived, a.pending = pos, pos
	if a.nextSegID, a.nextBlobID, err = cat.NextIDs(ctx); err != nil {
		return nil, err
	}
	refs, err := cat.Tables(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		versions, err := cat.SchemaVersions(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		if len(versions) == 0 {
			continue
		}
		v := versions[len(versions)-1]
		a.tables[r.OID] = &table{id: r.ID, oid: r.OID, def: v.Table, version: v.Version, keyCols: v.KeyColumns(), tracked: true}
	}
	active, ok, err := cat.ActiveSegment(ctx)
	if err != nil {
		return nil, err
	}
	if ok {
		a.seg, err = catalog.OpenSegment(cat.Dir(), active.ID, active.Size)
		if err != nil {
			return nil, err
		}
		var n int
		if err := cat.DB().QueryRowContext(ctx, `SELECT coalesce(sum(changes), 0) FROM blob WHERE segment_id = ?`, active.ID).Scan(&n); err != nil {
			a.seg.Close()
			return nil, fmt.Errorf("catalog segment %d: %w", active.ID, err)
		}
		a.segChanges = n
	} else if err := a.newSegment(); err != nil {
		return nil, err
	}
	return a, nil
}

// newSegment creates the next segment and records it at once, so that the
// catalog never references a segment that is not on disk.
func (a *archiver) newSegment() error {
	id := a.nextSegID
	// A file with this id can only be left from a crash before its catalog
	// row was committed: nothing references it.
	os.Remove(filepath.Join(a.cat.Dir(), catalog.SegmentName(id)))
	seg, err := catalog.CreateSegment(a.cat.Dir(), id)
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
	a.log.Debug("new segment", "segment", id)
	return nil
}

func (a *archiver) close() {
	a.waitCommit()
	if a.tx.keySpill != nil {
		a.tx.keySpill.Close()
		a.tx.keySpill = nil
	}
	if a.w != nil {
		a.w.Rollback()
		a.w = nil
	}
	if a.seg != nil {
		a.seg.Close()
	}
}

func (a *archiver) writer() (*catalog.Writer, error) {
	if a.w == nil {
		w, err := a.cat.Begin(a.ctx)
		if err != nil {
			return nil, err
		}
		a.w = w
	}
	return a.w, nil
}

// handle processes one pgoutput message.
func (a *archiver) handle(data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("empty pgoutput message")
	}
	switch data[0] {
	case 'I', 'U', 'D':
		return a.change(data)
	case 'B':
		var m pglogrepl.BeginMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode BEGIN: %w", err)
		}
		return a.begin(&m)
	case 'C':
		var m pglogrepl.CommitMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode COMMIT: %w", err)
		}
		return a.commit(&m)
	case 'R':
		var m pglogrepl.RelationMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode RELATION: %w", err)
		}
		return a.relation(&m)
	case 'T':
		var m pglogrepl.TruncateMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode TRUNCATE: %w", err)
		}
		return a.truncate(&m)
	case 'O':
		var m pglogrepl.OriginMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode ORIGIN: %w", err)
		}
		a.tx.origin = m.Name
		return nil
	case 'M':
		var m pglogrepl.LogicalDecodingMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode MESSAGE: %w", err)
		}
		if m.Transactional && a.tx.active {
			if !a.tx.skip {
				// Copied (the connection reuses its buffer), and never nil: an
				// empty message is an empty value, not NULL.
				a.tx.messages = append(a.tx.messages, message{prefix: m.Prefix, content: append([]byte{}, m.Content...)})
				a.parts.noteMessage(m.Prefix)
			}
		} else {
			a.log.Debug("non-transactional logical message not archived", "prefix", m.Prefix, "lsn", m.LSN)
		}
		return nil
	case 'Y':
		return nil // type names are resolved on the source with the schema version
	default:
		return fmt.Errorf("unexpected pgoutput message %q", data[0])
	}
}

func (a *archiver) begin(m *pglogrepl.BeginMessage) error {
	if a.tx.active {
		return fmt.Errorf("BEGIN of xid %d inside transaction xid %d", m.Xid, a.tx.xid)
	}
	a.tx = txState{active: true, commitLSN: uint64(m.FinalLSN), xid: m.Xid, commitTime: m.CommitTime,
		touched: a.tx.touched[:0], keys: a.tx.keys[:0]}
	if uint64(m.FinalLSN) <= a.archived.CommitLSN {
		// Already archived: the server resends what it was not yet told was durable.
		a.tx.skip = true
		a.log.Debug("skipping transaction already archived", "xid", m.Xid, "lsn", m.FinalLSN)
	}
	return nil
}

func (a *archiver) relation(m *pglogrepl.RelationMessage) error {
	a.parts.noteRelation(m.RelationID, a.tables[m.RelationID] != nil)
	def := schema.Table{Schema: m.Namespace, Name: m.RelationName, ReplicaIdentity: m.ReplicaIdentity}
	for _, c := range m.Columns {
		def.Columns = append(def.Columns, schema.Column{Name: c.Name, TypeOID: c.DataType, TypeMod: c.TypeModifier, Key: c.Flags&1 != 0})
	}
	t := a.tables[m.RelationID]
	isNew := t == nil
	if isNew {
		t = &table{oid: m.RelationID, tracked: a.opts.TrackNewTables || a.published[m.RelationID]}
		a.tables[m.RelationID] = t
	}
	if !t.tracked || isNew {
		// A basebackup (lbt basebackup --table) may have registered the
		// table: then it is archived from now on, whatever trackNewTables says.
		w, err := a.writer()
		if err != nil {
			return err
		}
		id, v, ok, err := w.TableByOID(m.RelationID)
		if err != nil {
			return err
		}
		if ok {
			t.id, t.def, t.version, t.keyCols, t.tracked = id, v.Table, v.Version, v.KeyColumns(), true
		}
		if !t.tracked && isNew {
			a.log.Info("table not archived: it was not in the publication at start and trackNewTables is false", "table", def.QualifiedName())
		}
	}
	if !t.tracked || (a.tx.skip && t.version > 0) {
		return nil
	}
	if t.version > 0 && sameStreamShape(t.def, def) {
		return nil
	}
	dctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	err := describeTable(dctx, a.lookup, m.RelationID, &def)
	cancel()
	if err != nil {
		return err
	}
	if t.version > 0 && t.def.SameShape(def) {
		return nil
	}
	w, err := a.writer()
	if err != nil {
		return err
	}
	from := a.tx.commitLSN
	if !a.tx.active {
		from = a.archived.CommitLSN + 1
	}
	if t.id == 0 {
		if t.id, err = w.AddTable(m.RelationID, from); err != nil {
			return err
		}
		a.log.Info("archiving new table", "table", def.QualifiedName(), "oid", m.RelationID)
	} else {
		a.log.Info("table definition changed", "table", def.QualifiedName(), "version", t.version+1, "lsn", pglogrepl.LSN(from))
	}
	sv := catalog.SchemaVersion{TableID: t.id, Version: t.version + 1, FromLSN: from, Table: def}
	if err := w.AddSchemaVersion(sv); err != nil {
		return err
	}
	t.def, t.version, t.keyCols = def, sv.Version, def.KeyColumns()
	if p := replicaIdentityProblem(def.QualifiedName(), def.ReplicaIdentity, len(t.keyCols) > 0); p != "" && !t.warned {
		a.log.Warn(p, "table", def.QualifiedName())
		t.warned = true
	}
	return nil
}

// sameStreamShape compares what the stream says of a table, before the
// source is asked for type names and the primary key.
func sameStreamShape(old, cur schema.Table) bool {
	if old.Schema != cur.Schema || old.Name != cur.Name || old.ReplicaIdentity != cur.ReplicaIdentity || len(old.Columns) != len(cur.Columns) {
		return false
	}
	for i, c := range cur.Columns {
		o := old.Columns[i]
		if o.Name != c.Name || o.TypeOID != c.TypeOID || o.TypeMod != c.TypeMod || o.Key != c.Key {
			return false
		}
	}
	return true
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

func (a *archiver) truncate(m *pglogrepl.TruncateMessage) error {
	if !a.tx.active {
		return fmt.Errorf("TRUNCATE outside a transaction")
	}
	if a.tx.skip {
		return nil
	}
	for _, oid := range m.RelationIDs {
		t := a.tables[oid]
		if t == nil {
			return fmt.Errorf("TRUNCATE of relation %d before its RELATION message", oid)
		}
		if !t.tracked {
			continue
		}
		before := len(t.buf)
		a.startRecord(t)
		t.buf = append(t.buf, catalog.TagTruncate, m.Option)
		a.buffered += len(t.buf) - before
		t.tc.Truncates++
		t.bc.Truncates++
	}
	return nil
}

func (a *archiver) commit(m *pglogrepl.CommitMessage) error {
	if !a.tx.active {
		return fmt.Errorf("COMMIT outside a transaction")
	}
	if uint64(m.CommitLSN) != a.tx.commitLSN {
		return fmt.Errorf("COMMIT at %s does not match BEGIN's %s", m.CommitLSN, pglogrepl.LSN(a.tx.commitLSN))
	}
	defer func() { a.tx.active = false }()
	if a.tx.skip {
		return nil
	}
	if len(a.tx.touched) > 0 || len(a.tx.messages) > 0 {
		w, err := a.writer()
		if err != nil {
			return err
		}
		a.txTables = a.txTables[:0]
		for _, t := range a.tx.touched {
			a.txTables = append(a.txTables, catalog.TxTable{TableID: t.id, Counts: t.tc})
			t.act.Changes += int(t.tc.Total())
			t.act.LastChangeLSN, t.act.LastChangeTime = a.tx.commitLSN, m.CommitTime
			a.touchedSince[t] = true
			t.txFirstBlob, t.tc = 0, catalog.Counts{}
		}
		w.AddTx(catalog.Tx{CommitLSN: a.tx.commitLSN, EndLSN: uint64(m.TransactionEndLSN), Xid: a.tx.xid,
			CommitTime: m.CommitTime, Origin: a.tx.origin, Tables: a.txTables})
		if a.tx.keySpill != nil {
			if err := a.spillKeys(); err != nil {
				return err
			}
			if err := a.tx.keySpill.rewind(); err != nil {
				return err
			}
			w.AddRowKeySource(a.tx.commitLSN, a.tx.keySpill)
			a.tx.keySpill = nil
		}
		for _, k := range a.tx.keys {
			w.AddRowKey(k.table, k.hash, a.tx.commitLSN)
		}
		for i, msg := range a.tx.messages {
			w.AddMessage(a.tx.commitLSN, i, msg.prefix, msg.content)
		}
	}
	a.archived = catalog.Position{Epoch: a.epoch, EndLSN: uint64(m.TransactionEndLSN), CommitLSN: a.tx.commitLSN, CommitTime: m.CommitTime}
	a.pendingTxs++
	a.pendingRows += 1 + len(a.tx.keys) + len(a.tx.messages)
	a.markPending(a.archived)
	return nil
}

func (a *archiver) markPending(p catalog.Position) {
	a.pending = p
	if !a.dirty {
		a.dirty = true
		a.pendingSince = time.Now()
	}
}

// keepalive records that the server has nothing more for lbt up to walEnd.
// Confirming it lets an idle slot advance, so that WAL does not pile up on a
// busy source whose tracked tables are quiet. It is safe only between
// transactions, with everything received before it archived.
func (a *archiver) keepalive(walEnd uint64) {
	if a.tx.active || walEnd <= a.pending.EndLSN {
		return
	}
	p := a.pending
	p.EndLSN = walEnd
	a.markPending(p)
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
	off, err := a.seg.Append(frame)
	if err != nil {
		return err
	}
	w.AddBlob(catalog.Blob{ID: t.blobID, TableID: t.id, SegmentID: a.seg.ID, Offset: off, Length: int64(len(frame)),
		CRC: h.CRC, Schema: t.bufSchema, FirstLSN: t.firstLSN, LastLSN: t.markLSN, Changes: int(t.bc.Total()), RawLength: len(t.buf),
		Txs: t.bufTxs, Counts: t.bc})
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
	job := commitJob{w: w, seg: a.seg, segSize: a.seg.Size(), pos: a.pending, txs: a.pendingTxs,
		activity: make(map[int64]catalog.TableActivity, len(a.touchedSince))}
	job.sealed = a.segChanges >= a.opts.DeltasPerFile || job.segSize >= a.opts.SegmentMaxBytes
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
		return a.newSegment()
	}
	return nil
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
