package ingest

import (
	"context"
	"errors"
	"fmt"
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
	pubAllTables  *bool                      // the publication is FOR ALL TABLES; nil until asked
	startXmax     uint64                     // xmax of a snapshot at the session's start (creation); 0 unknown
	suspects      map[uint32]shapeSuspect    // tables whose source description changed unseen by the stream (quietddl.go)
	awaited       map[uint32]awaitedTruncate // tables whose new storage a TRUNCATE still in the stream may explain (relation.go)
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
	ended                 bool            // seen ended on the source (awaitEnded)
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
		suspects: make(map[uint32]shapeSuspect), awaited: make(map[uint32]awaitedTruncate), described: make(map[schemaKey]bool), runEnds: map[int64]bool{},
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
	case 'Y':
		return nil // type names are resolved on the source with the schema version
	case 'B', 'C', 'R', 'T', 'O', 'M': // decoded by pglogrepl.Parse below
	default:
		return fmt.Errorf("unexpected pgoutput message %q", data[0])
	}
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return fmt.Errorf("decode pgoutput message %q: %w", data[0], err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		return a.begin(m)
	case *pglogrepl.CommitMessage:
		return a.commit(m)
	case *pglogrepl.RelationMessage:
		return a.relation(m)
	case *pglogrepl.TruncateMessage:
		return a.truncate(m)
	case *pglogrepl.OriginMessage:
		a.tx.origin = m.Name
		return nil
	case *pglogrepl.LogicalDecodingMessage:
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
		if p, ok := a.awaited[oid]; ok && p.xid == a.tx.xid {
			delete(a.awaited, oid)
		}
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
	if err := a.settleAwaited(uint64(m.TransactionEndLSN)); err != nil {
		return err
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
