package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"

	"lbt/catalog"
	"lbt/crypt"
	"lbt/schema"
	"lbt/source"
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
	// An idle source's position goes into the segment this often.
	positionMetaInterval = 5 * time.Minute
)

// archiver turns decoded pgoutput messages into blobs in segments and rows in
// the catalog. It runs in one goroutine; only durable is shared.
type archiver struct {
	log    hclog.Logger
	opts   *Options
	cat    *catalog.Catalog
	lookup sourceLookup // what the stream does not say: type names, storage, creations, drops, trees
	ctx    context.Context

	seg        *catalog.SegmentWriter
	segChanges int
	nextSegID  int64
	segOpened  time.Time // when seg was created or opened
	forceSeal  bool      // the next flush seals seg (SealInterval)
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

	// What the next catalog commit adds, written into the segment as a
	// metadata blob before it (docs/FORMAT.md), so that the files alone
	// rebuild the catalog.
	meta      catalog.Metadata
	metaRaw   []byte
	epochs    []catalog.EpochRecord
	described map[schemaKey]bool // schema versions the current segment describes
	// runEnds are the partition runs that looks extended since the last
	// metadata blob that said where they got to.
	runEnds   map[int64]bool
	segEpochs bool // the current segment describes the epochs
	source    catalog.ArchiveRecord
	metaAt    time.Time // when the last metadata blob was written
	metaEnd   uint64    // the position it recorded
	closing   bool      // the final flush: record the position

	durable    *atomic.Uint64 // end LSN safe to confirm to the server
	committing chan error     // the commit in flight, if any

	// When tables were created and dropped (life.go).
	seen          map[uint32]sourcePoint // where each table was last found on the source
	lastDropCheck time.Time
	pubAllTables  *bool                   // the publication is FOR ALL TABLES; nil until asked
	startXmax     uint64                  // xmax of a snapshot at the session's start (creation); 0 unknown
	suspects      map[uint32]shapeSuspect // tables whose source description changed unseen by the stream (quietddl.go)
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
	gaps                  []pendingGap
	altered               map[uint32]bool // tables a captured ALTER TABLE of this transaction names
	alteredSeen           int             // messages looked at for altered
}

type schemaKey struct {
	table   int64
	version int
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
	versions      map[int]catalog.MetaSchema // every version known, for the metadata
	tracked       bool
	warned        bool
	registeredAt  uint64 // the commit LSN at which this run added it to the catalog
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

	// What tells whether the next description follows exactly from this one.
	desc      schema.Table   // the last description: def, or what a captured DDL showed since
	storage   source.Storage // as last read on the source
	truncXid  uint32         // xid of the last TRUNCATE the stream carried since then, 0 for none
	versionAt uint64         // FromLSN of the current schema version
	lastLSN   uint64         // commit LSN of the table's last archived transaction, 0 for none
	lastTime  time.Time      // its commit time
	// commit LSN of the transaction in which the table was last described
	describedAt uint64
}

func newArchiver(ctx context.Context, log hclog.Logger, opts *Options, cat *catalog.Catalog, lookup sourceLookup,
	published map[uint32]bool, epoch int64, durable *atomic.Uint64) (*archiver, error) {
	a := &archiver{
		// Not cancelled with the session: the final flush at shutdown must
		// still commit what was received.
		log: log, opts: opts, cat: cat, lookup: lookup, ctx: context.WithoutCancel(ctx),
		tables: make(map[uint32]*table), published: published, epoch: epoch,
		touchedSince: make(map[*table]bool), durable: durable, seen: make(map[uint32]sourcePoint),
		suspects: make(map[uint32]shapeSuspect), described: make(map[schemaKey]bool), runEnds: map[int64]bool{},
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
	marks, err := cat.TableMarks(ctx)
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
		m := marks[r.ID]
		t := &table{id: r.ID, oid: r.OID, def: v.Table, desc: v.Table, version: v.Version, keyCols: v.KeyColumns(), tracked: true,
			storage: source.Storage{Relfilenode: m.Description.Relfilenode}, versionAt: v.FromLSN, lastLSN: m.LastChangeLSN, lastTime: m.LastChangeTime}
		if m.Description.Known {
			t.desc = m.Description.Table
		}
		t.setVersions(versions)
		a.tables[r.OID] = t
	}
	if a.epochs, err = cat.EpochRecords(ctx); err != nil {
		return nil, err
	}
	for key, dst := range map[string]*string{"system_identifier": &a.source.SystemID, "database": &a.source.Database,
		"server_version": &a.source.ServerVersion, "created_at": &a.source.CreatedAt} {
		if *dst, err = cat.Meta(ctx, key); err != nil {
			return nil, err
		}
	}
	active, ok, err := cat.ActiveSegment(ctx)
	if err != nil {
		return nil, err
	}
	if ok {
		// segOpened stays zero: with SealInterval, a segment an earlier
		// run left active is sealed at the first chance.
		a.seg, err = catalog.OpenSegment(cat.FS(), cat.Dir(), active.ID, active.Size, cat.Keys())
		if errors.Is(err, crypt.ErrNoKey) {
			// An encrypted archive's daemon may hold only the recipients:
			// it cannot unwrap the data key to append to the segment. It
			// seals it and begins the next.
			ok = false
			err = a.sealSegment(active)
		}
		if err != nil {
			return nil, err
		}
	}
	if ok {
		n, err := cat.SegmentChanges(ctx, active.ID)
		if err != nil {
			a.seg.Close()
			return nil, err
		}
		a.segChanges = int(n)
	} else if err := a.newSegment(); err != nil {
		return nil, err
	}
	a.readStartXmax()
	return a, nil
}

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
		w, err := a.catalogTx()
		if err != nil {
			return err
		}
		id, v, ok, err := w.TableByOID(m.RelationID)
		if err != nil {
			return err
		}
		if ok {
			t.id, t.def, t.version, t.keyCols, t.tracked, t.versionAt = id, v.Table, v.Version, v.KeyColumns(), true, v.FromLSN
			d, err := w.Description(id)
			if err != nil {
				return err
			}
			t.desc, t.storage.Relfilenode = v.Table, d.Relfilenode
			if d.Known {
				t.desc = d.Table
			}
			versions, err := w.SchemaVersions(id)
			if err != nil {
				return err
			}
			t.setVersions(versions)
		}
		if !t.tracked && isNew {
			a.log.Info("table not archived: it was not in the publication at start and trackNewTables is false", "table", def.QualifiedName())
		}
	}
	if !t.tracked || (a.tx.skip && t.version > 0) {
		return nil
	}
	// Every Relation message is looked up on the source, also when the
	// stream shows the same columns: pgoutput sends one after any change of
	// the table's catalog entry, and only the source tells a rewrite of its
	// rows (a new relfilenode) or a column dropped and added again (a new
	// attnum) from nothing at all.
	dctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	st, err := a.lookup.DescribeRelation(dctx, m.RelationID, &def)
	cancel()
	if err != nil {
		return err
	}
	from := a.tx.commitLSN
	if !a.tx.active {
		from = a.archived.CommitLSN + 1
	}
	var inexact string
	var untilTruncate bool
	if t.version > 0 {
		inexact = inexactChange(t.desc, def, t.storage, st, t.truncXid)
		// pgoutput sends the Relation message of a TRUNCATE before the
		// TRUNCATE itself: a new relfilenode this transaction made is
		// explained if its TRUNCATE of the table follows.
		untilTruncate = inexact != "" && a.tx.active && inexactChange(t.desc, def, t.storage, st, a.tx.xid) == ""
	}
	w, err := a.catalogTx()
	if err != nil {
		return err
	}
	defer func() { t.truncXid, t.desc, t.describedAt = 0, def, a.tx.commitLSN }()
	if t.version > 0 && t.def.SameShape(def) {
		return a.noteStorage(w, t, def, st, inexact, untilTruncate, from)
	}
	if t.id == 0 {
		if taken := a.nameTaken(m.RelationID, def); taken != nil {
			// Another archived table had this name: it was dropped (or
			// renamed) before this one was created.
			if err := a.checkDropped(taken); err != nil {
				return err
			}
		}
		created, since, err := a.creation(m.RelationID)
		if err != nil {
			return err
		}
		if t.id, err = w.AddTable(m.RelationID, from); err != nil {
			return err
		}
		t.registeredAt = from
		if created || since {
			// Its whole history is in the stream from here: it restores
			// without a basebackup.
			if err := w.SetTableCreated(t.id, from, a.tx.commitTime, created); err != nil {
				return err
			}
		}
		a.log.Info("archiving new table", "table", def.QualifiedName(), "oid", m.RelationID)
	} else {
		a.log.Info("table definition changed", "table", def.QualifiedName(), "version", t.version+1, "lsn", pglogrepl.LSN(from))
	}
	sv := catalog.SchemaVersion{TableID: t.id, Version: t.version + 1, FromLSN: from, Table: def}
	if err := w.AddSchemaVersion(sv); err != nil {
		return err
	}
	if t.versions == nil {
		t.versions = map[int]catalog.MetaSchema{}
	}
	t.versions[sv.Version] = catalog.MetaSchema{SchemaVersion: sv, OID: t.oid}
	ms := t.versions[sv.Version]
	ms.RelFirstLSN = t.relFirstLSN() // version 1's, which may be this one
	t.versions[sv.Version] = ms
	a.describe(t, sv.Version)
	t.def, t.version, t.keyCols, t.versionAt = def, sv.Version, def.KeyColumns(), from
	if p := replicaIdentityProblem(def.QualifiedName(), def.ReplicaIdentity, len(t.keyCols) > 0); p != "" && !t.warned {
		a.log.Warn(p, "table", def.QualifiedName())
		t.warned = true
	}
	return a.noteStorage(w, t, def, st, inexact, untilTruncate, from)
}

// noteStorage records the table's storage as now read and, when the new
// description does not follow exactly from the old one, an inexact span of
// the table's history: from just after its last archived transaction (the
// change happened after it) until a basebackup after this transaction,
// which the scheduler takes at once.
// With untilTruncate the span is recorded at the commit unless a TRUNCATE
// of the table in this transaction explains the new storage.
func (a *archiver) noteStorage(w *catalog.Writer, t *table, def schema.Table, st source.Storage, inexact string, untilTruncate bool, seen uint64) error {
	if inexact != "" {
		g := catalog.TableGap{TableID: t.id, SeenLSN: seen, Reason: inexact}
		switch {
		case a.tx.active && a.altered(t.oid):
			// The captured DDL is in this transaction: the change is at
			// its commit.
			g.FromLSN, g.FromTime = a.tx.commitLSN, a.tx.commitTime
		default:
			g.FromLSN, g.FromTime = t.spanStart()
		}
		g.FromLSN = min(g.FromLSN, seen)
		if untilTruncate {
			a.tx.gaps = append(a.tx.gaps, pendingGap{t: t, gap: g, name: def.QualifiedName()})
		} else if err := a.addTableGap(w, g, def.QualifiedName()); err != nil {
			return err
		}
	}
	if err := a.setDescription(w, t, def, st); err != nil {
		return err
	}
	t.storage = st
	return nil
}

// spanStart is where an inexact span of t begins when the change is only
// known to lie after its last archived transaction: just after it, or,
// with none, at the description before this one.
func (t *table) spanStart() (uint64, time.Time) {
	if t.lastLSN > 0 {
		return t.lastLSN + 1, t.lastTime
	}
	return t.versionAt, time.Time{}
}

// setDescription records the table as now read on the source when it
// differs from the last description, so that after a restart the next one
// is compared with it.
func (a *archiver) setDescription(w *catalog.Writer, t *table, desc schema.Table, st source.Storage) error {
	if st.Relfilenode == t.storage.Relfilenode && t.desc.SameShape(desc) {
		return nil
	}
	return w.SetDescription(t.id, catalog.TableDescription{Relfilenode: st.Relfilenode, Table: desc})
}

// pendingGap is an inexact span that a TRUNCATE later in the transaction
// may still explain.
type pendingGap struct {
	t    *table
	gap  catalog.TableGap
	name string
}

func (a *archiver) addTableGap(w *catalog.Writer, g catalog.TableGap, name string) error {
	if err := w.AddTableGap(g); err != nil {
		return err
	}
	a.log.Warn("table changed in a way the stream does not carry: restores from from_lsn on are refused until its next basebackup, which is taken now",
		"table", name, "reason", g.Reason, "from_lsn", pglogrepl.LSN(g.FromLSN), "lsn", pglogrepl.LSN(g.SeenLSN))
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
		t.truncXid = a.tx.xid
		a.tx.gaps = slices.DeleteFunc(a.tx.gaps, func(p pendingGap) bool { return p.t == t })
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
	if len(a.tx.gaps) > 0 {
		w, err := a.catalogTx()
		if err != nil {
			return err
		}
		for _, p := range a.tx.gaps {
			if err := a.addTableGap(w, p.gap, p.name); err != nil {
				return err
			}
		}
	}
	if err := a.describeAltered(); err != nil {
		return err
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
			t.lastLSN, t.lastTime = a.tx.commitLSN, m.CommitTime
			a.touchedSince[t] = true
			t.txFirstBlob, t.tc = 0, catalog.Counts{}
		}
		w.AddTx(catalog.Tx{CommitLSN: a.tx.commitLSN, EndLSN: uint64(m.TransactionEndLSN), Xid: a.tx.xid,
			CommitTime: m.CommitTime, Origin: a.tx.origin, Tables: a.txTables})
		a.meta.Txs = append(a.meta.Txs, catalog.MetaTx{CommitLSN: a.tx.commitLSN, EndLSN: uint64(m.TransactionEndLSN), Xid: a.tx.xid,
			CommitTime: m.CommitTime, Origin: a.tx.origin, Explicit: len(a.tx.touched) == 0})
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
			a.meta.Messages = append(a.meta.Messages, catalog.MetaMessage{CommitLSN: a.tx.commitLSN, Seq: i, Prefix: msg.prefix, Content: msg.content})
		}
		if err := a.tableDDL(m.CommitTime); err != nil {
			return err
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

func (t *table) setVersions(versions []catalog.SchemaVersion) {
	t.versions = make(map[int]catalog.MetaSchema, len(versions))
	for _, v := range versions {
		t.versions[v.Version] = catalog.MetaSchema{SchemaVersion: v, OID: t.oid}
	}
	first := t.relFirstLSN()
	for k, v := range t.versions {
		v.RelFirstLSN = first
		t.versions[k] = v
	}
}

// relFirstLSN is the rel row's first_lsn: version 1's from LSN, as both
// the archiver and a basebackup register a table.
func (t *table) relFirstLSN() uint64 {
	if v, ok := t.versions[1]; ok {
		return v.FromLSN
	}
	return 0
}

// describe adds a schema version to the next metadata blob unless the
// current segment already holds it.
func (a *archiver) describe(t *table, version int) {
	k := schemaKey{t.id, version}
	if a.described[k] {
		return
	}
	v, ok := t.versions[version]
	if !ok {
		return // a version 0: no blob uses it
	}
	a.described[k] = true
	a.meta.Schemas = append(a.meta.Schemas, v)
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
