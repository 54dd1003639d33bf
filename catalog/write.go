package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Position is how far the archive reaches: the last transaction it holds
// completely. EndLSN is what was confirmed to the server.
type Position struct {
	Epoch      int64
	EndLSN     uint64
	CommitLSN  uint64
	CommitTime time.Time
}

// Tx is one archived transaction.
type Tx struct {
	CommitLSN  uint64
	EndLSN     uint64
	Xid        uint32
	CommitTime time.Time
	Origin     string
	Tables     []TxTable // in the order the transaction first changed them
}

// Counts are changes to one table by kind.
type Counts struct {
	Inserts, Updates, Deletes, Truncates int64
}

// Total is the number of changes.
func (c Counts) Total() int64 { return c.Inserts + c.Updates + c.Deletes + c.Truncates }

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Inserts += o.Inserts
	c.Updates += o.Updates
	c.Deletes += o.Deletes
	c.Truncates += o.Truncates
}

// Sub subtracts o from c.
func (c *Counts) Sub(o Counts) {
	c.Inserts -= o.Inserts
	c.Updates -= o.Updates
	c.Deletes -= o.Deletes
	c.Truncates -= o.Truncates
}

// TxTable is what one transaction did to one table. Its changes are in the
// table's blobs whose LSN range holds the transaction's commit LSN.
type TxTable struct {
	TableID int64
	Counts
}

// Blob is the catalog's record of one blob in a segment.
type Blob struct {
	ID        int64
	TableID   int64
	SegmentID int64
	Offset    int64
	Length    int64
	CRC       uint32
	Schema    int
	FirstLSN  uint64
	LastLSN   uint64
	Changes   int
	RawLength int
	Txs       int // transactions that begin in the blob; one split over blobs counts in the first
	Counts
	SHA256 [32]byte // of the blob's bytes, header included (format 4); zero when not read
}

// TableActivity accumulates what a flush adds to a table's state.
type TableActivity struct {
	Changes        int
	Blobs          int
	LastChangeLSN  uint64
	LastChangeTime time.Time
}

// Writer adds rows to the catalog as one SQLite transaction. The rows of
// the high-volume tables wait in memory and are inserted many at a time at
// Commit, so that SQLite's single write lock is held only for the commit
// itself and other writers (basebackups, purge) get their turn. Rows that
// callers need at once (a new table's id) open the transaction early.
// Nothing is visible to readers, or durable, before Commit.
type Writer struct {
	db        *sql.DB
	tx        *sql.Tx // nil until a write needs it
	ctx       context.Context
	keys      []keyEntry // row keys, written as runs at Commit
	txs       *batchInsert
	truncates *batchInsert
	blobs     *batchInsert
	messages  *batchInsert
	keySource []keySource // row keys kept outside memory, inserted at Commit
	txRange   txRange     // of the transactions added since the last commit
	tables    []byte      // reused to encode Tx.Tables
	touched   touchedRows // for the commit's metadata blob (TableRecords)
	chain     commitChain // the commit's link of the hash chain
}

// txRange accumulates a tx_range row.
type txRange struct {
	n                 int
	firstLSN, lastLSN uint64
	minTime, maxTime  int64
	minXid, maxXid    uint32
}

func (r *txRange) add(lsn uint64, us int64, xid uint32) {
	if r.n == 0 {
		r.firstLSN, r.minTime, r.maxTime, r.minXid, r.maxXid = lsn, us, us, xid, xid
	}
	r.n++
	r.lastLSN = lsn
	r.minTime, r.maxTime = min(r.minTime, us), max(r.maxTime, us)
	r.minXid, r.maxXid = min(r.minXid, xid), max(r.maxXid, xid)
}

// Begin starts a write transaction.
func (c *Catalog) Begin(ctx context.Context) (*Writer, error) {
	return &Writer{
		db:        c.pool,
		ctx:       ctx,
		txs:       newBatchInsert("tx", "commit_lsn, end_lsn, xid, commit_time, origin, tables", 6, 128, ""),
		truncates: newBatchInsert("tx_truncate", "table_id, commit_lsn", 2, 64, ""),
		blobs: newBatchInsert("blob", "id, table_id, segment_id, offset, length, crc, schema, first_lsn, last_lsn, changes, raw_length, "+
			"txs, inserts, updates, deletes, truncates, sha256", 17, 32, ""),
		messages: newBatchInsert("tx_message", "commit_lsn, seq, prefix, content", 4, 64, ""),
	}, nil
}

// open begins the SQLite transaction if it has not begun.
func (w *Writer) open() error {
	if w.tx != nil {
		return nil
	}
	tx, err := w.db.BeginTx(w.ctx, nil)
	if err != nil {
		return fmt.Errorf("catalog begin: %w", err)
	}
	w.tx = tx
	return nil
}

// AddRowKey indexes one change of a row by the hash of its key.
func (w *Writer) AddRowKey(tableID int64, keyHash int64, commitLSN uint64) {
	w.keys = append(w.keys, keyEntry{tableID, keyHash, commitLSN})
}

// RowKey is one change's row key, as AddRowKey takes it.
type RowKey struct{ TableID, Hash int64 }

// RowKeySource yields the row keys of a transaction too large to keep them
// in memory. Next fills buf and returns how many it filled, 0 at the end.
type RowKeySource interface {
	Next(buf []RowKey) (int, error)
	Close() error
}

type keySource struct {
	commitLSN uint64
	src       RowKeySource
}

// AddRowKeySource indexes the changes of the transaction committed at
// commitLSN by the keys src yields. They are read at Commit, so that the
// write lock is taken only then; Commit and Rollback close src.
func (w *Writer) AddRowKeySource(commitLSN uint64, src RowKeySource) {
	w.keySource = append(w.keySource, keySource{commitLSN, src})
}

// AddTx records a transaction and what it did to each table.
func (w *Writer) AddTx(t Tx) {
	var origin any
	if t.Origin != "" {
		origin = t.Origin
	}
	// The encoding is copied: the driver may keep the argument until the
	// insert runs.
	w.tables = AppendTxTables(w.tables[:0], t.Tables)
	us := Micros(t.CommitTime)
	w.txs.add(int64(t.CommitLSN), int64(t.EndLSN), int64(t.Xid), us, origin, append([]byte{}, w.tables...))
	for _, tt := range t.Tables {
		if tt.Truncates > 0 {
			w.truncates.add(tt.TableID, int64(t.CommitLSN))
		}
	}
	w.txRange.add(t.CommitLSN, us, t.Xid)
	w.chain.addTx(t, us)
}

// AddBlob records a blob whose bytes are already in its segment.
func (w *Writer) AddBlob(b Blob) {
	w.blobs.add(b.ID, b.TableID, b.SegmentID, b.Offset, b.Length, int64(b.CRC), b.Schema,
		int64(b.FirstLSN), int64(b.LastLSN), b.Changes, b.RawLength,
		b.Txs, b.Inserts, b.Updates, b.Deletes, b.Truncates, b.SHA256[:])
	w.chain.addBlob(b)
}

// AddMessage records a transactional logical message.
func (w *Writer) AddMessage(commitLSN uint64, seq int, prefix string, content []byte) {
	w.messages.add(int64(commitLSN), seq, prefix, content)
	w.chain.addMessage(commitLSN, seq, prefix, content)
}

// AddTable records a table seen for the first time and returns its id.
func (w *Writer) AddTable(oid uint32, firstLSN uint64) (int64, error) {
	if err := w.open(); err != nil {
		return 0, err
	}
	res, err := w.tx.ExecContext(w.ctx, `INSERT INTO rel (oid, first_lsn) VALUES (?, ?)`, int64(oid), int64(firstLSN))
	if err != nil {
		return 0, fmt.Errorf("catalog add table %d: %w", oid, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("catalog add table %d: %w", oid, err)
	}
	if _, err := w.tx.ExecContext(w.ctx, `INSERT INTO table_state (table_id) VALUES (?)`, id); err != nil {
		return 0, fmt.Errorf("catalog add table %d: %w", oid, err)
	}
	return id, nil
}

// AddSchemaVersion records a table definition from the LSN where it took effect.
func (w *Writer) AddSchemaVersion(s SchemaVersion) error {
	if err := w.open(); err != nil {
		return err
	}
	cols, err := s.columnsJSON()
	if err != nil {
		return err
	}
	pk, err := s.primaryKeyJSON()
	if err != nil {
		return err
	}
	_, err = w.tx.ExecContext(w.ctx, `INSERT INTO schema_version (table_id, version, from_lsn, nspname, relname, replident, columns, primary_key)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		s.TableID, s.Version, int64(s.FromLSN), s.Schema, s.Name, string(rune(s.ReplicaIdentity)), cols, pk)
	if err != nil {
		return fmt.Errorf("catalog add schema version %d of %s: %w", s.Version, s.QualifiedName(), err)
	}
	return nil
}

// AddSegment records a new segment file.
func (w *Writer) AddSegment(id int64, size int64) error {
	if err := w.open(); err != nil {
		return err
	}
	_, err := w.tx.ExecContext(w.ctx, `INSERT INTO segment (id, created_at, size) VALUES (?, ?, ?)`, id, Micros(time.Now()), size)
	if err != nil {
		return fmt.Errorf("catalog add segment %d: %w", id, err)
	}
	return nil
}

// SetSegmentSize records how many bytes of a segment the catalog references,
// and whether it is sealed (no more blobs will be appended).
func (w *Writer) SetSegmentSize(id int64, size int64, sealed bool) error {
	if err := w.open(); err != nil {
		return err
	}
	_, err := w.tx.ExecContext(w.ctx, `UPDATE segment SET size = ?, sealed = ? WHERE id = ?`, size, sealed, id)
	if err != nil {
		return fmt.Errorf("catalog segment %d: %w", id, err)
	}
	return nil
}

// AddTableActivity adds a flush's changes to a table's state.
func (w *Writer) AddTableActivity(tableID int64, a TableActivity) error {
	if err := w.open(); err != nil {
		return err
	}
	_, err := w.tx.ExecContext(w.ctx, `UPDATE table_state SET
		changes_since_base = changes_since_base + ?,
		blobs_since_base = blobs_since_base + ?,
		last_change_lsn = max(last_change_lsn, ?),
		last_change_time = max(last_change_time, ?)
		WHERE table_id = ?`,
		a.Changes, a.Blobs, int64(a.LastChangeLSN), Micros(a.LastChangeTime), tableID)
	if err != nil {
		return fmt.Errorf("catalog table state %d: %w", tableID, err)
	}
	return nil
}

// SetPosition records how far the archive reaches.
func (w *Writer) SetPosition(p Position) error {
	if err := w.open(); err != nil {
		return err
	}
	_, err := w.tx.ExecContext(w.ctx, `INSERT INTO position (id, epoch, end_lsn, commit_lsn, commit_time, updated_at)
		VALUES (1, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, end_lsn = excluded.end_lsn,
			commit_lsn = excluded.commit_lsn, commit_time = excluded.commit_time, updated_at = excluded.updated_at`,
		p.Epoch, int64(p.EndLSN), int64(p.CommitLSN), Micros(p.CommitTime), Micros(time.Now()))
	if err != nil {
		return fmt.Errorf("catalog set position: %w", err)
	}
	return nil
}

// AddEpoch starts a new epoch of the archive's history and returns its id.
func (w *Writer) AddEpoch(startLSN uint64, slot, reason string) (int64, error) {
	if err := w.open(); err != nil {
		return 0, err
	}
	res, err := w.tx.ExecContext(w.ctx, `INSERT INTO epoch (start_lsn, started_at, slot, reason) VALUES (?, ?, ?, ?)`,
		int64(startLSN), Micros(time.Now()), slot, reason)
	if err != nil {
		return 0, fmt.Errorf("catalog add epoch: %w", err)
	}
	return res.LastInsertId()
}

// Commit writes the pending rows and commits. Segment bytes the rows point
// at must already be durable.
func (w *Writer) Commit() error {
	if err := w.insertPending(); err != nil {
		w.Rollback()
		return err
	}
	if err := w.insertKeySources(); err != nil {
		w.Rollback()
		return err
	}
	if err := w.appendLink(); err != nil {
		w.Rollback()
		return err
	}
	if r := w.txRange; r.n > 0 {
		_, err := w.tx.ExecContext(w.ctx, `INSERT INTO tx_range (first_lsn, last_lsn, min_time, max_time, min_xid, max_xid) VALUES (?, ?, ?, ?, ?, ?)`,
			int64(r.firstLSN), int64(r.lastLSN), r.minTime, r.maxTime, int64(r.minXid), int64(r.maxXid))
		if err != nil {
			w.Rollback()
			return fmt.Errorf("catalog insert into tx_range: %w", err)
		}
		w.txRange = txRange{}
	}
	err := w.tx.Commit()
	w.tx = nil
	w.touched = touchedRows{}
	if err != nil {
		return fmt.Errorf("catalog commit: %w", err)
	}
	return nil
}

// appendLink appends the commit's link to the hash chain, over the
// transactions, messages and blobs it added.
func (w *Writer) appendLink() error {
	defer w.chain.reset()
	return w.chain.appendLink(w.ctx, w.tx)
}

// Rollback abandons the transaction and the rows waiting in memory.
func (w *Writer) Rollback() error {
	w.txRange = txRange{}
	w.chain.reset()
	w.touched = touchedRows{}
	w.keys = w.keys[:0]
	w.closeKeySources()
	if w.tx == nil {
		return nil
	}
	err := w.tx.Rollback()
	w.tx = nil
	return err
}

// insertPending inserts the rows waiting in memory.
func (w *Writer) insertPending() error {
	if err := w.open(); err != nil {
		return err
	}
	for _, b := range []*batchInsert{w.blobs, w.txs, w.truncates, w.messages} {
		if err := b.flush(w.ctx, w.tx); err != nil {
			return err
		}
	}
	err := writeKeys(w.ctx, w.tx, w.keys)
	w.keys = w.keys[:0]
	return err
}

// insertKeySources writes the row keys of the sources as runs of at most
// keysInMemory pairs.
func (w *Writer) insertKeySources() error {
	defer w.closeKeySources()
	buf := make([]RowKey, 4096)
	for _, ks := range w.keySource {
		for {
			n, err := ks.src.Next(buf)
			if err != nil {
				return fmt.Errorf("catalog row keys of transaction at %s: %w", FormatLSN(ks.commitLSN), err)
			}
			for _, k := range buf[:n] {
				w.keys = append(w.keys, keyEntry{k.TableID, k.Hash, ks.commitLSN})
			}
			if n == 0 || len(w.keys) >= keysInMemory {
				err := writeKeys(w.ctx, w.tx, w.keys)
				w.keys = w.keys[:0]
				if err != nil {
					return err
				}
			}
			if n == 0 {
				break
			}
		}
	}
	return nil
}

func (w *Writer) closeKeySources() {
	for _, ks := range w.keySource {
		ks.src.Close()
	}
	w.keySource = nil
}

// batchInsert collects rows for one table and inserts them many at a time.
// The rows wait in chunks of one statement each: a single slice of a
// second's rows would be copied over and over as it grows.
type batchInsert struct {
	table, cols, verb string
	ncols, perStmt    int
	full              [][]any // chunks of perStmt rows
	args              []any   // the chunk being filled
}

func newBatchInsert(table, cols string, ncols, perStmt int, conflict string) *batchInsert {
	verb := "INSERT"
	if conflict != "" {
		verb += " " + conflict
	}
	return &batchInsert{table: table, cols: cols, verb: verb, ncols: ncols, perStmt: perStmt}
}

func (b *batchInsert) sql(rows int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s INTO %s (%s) VALUES ", b.verb, b.table, b.cols)
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", b.ncols), ",") + ")"
	for i := 0; i < rows; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(row)
	}
	return sb.String()
}

func (b *batchInsert) add(vals ...any) {
	if b.args == nil {
		b.args = make([]any, 0, b.ncols*b.perStmt)
	}
	b.args = append(b.args, vals...)
	if len(b.args) == cap(b.args) {
		b.full = append(b.full, b.args)
		b.args = nil
	}
}

// flush inserts the collected rows, a statement per chunk.
func (b *batchInsert) flush(ctx context.Context, tx *sql.Tx) error {
	defer func() { b.full, b.args = nil, nil }()
	if len(b.full) > 0 {
		st, err := tx.PrepareContext(ctx, b.sql(b.perStmt))
		if err != nil {
			return fmt.Errorf("catalog insert into %s: %w", b.table, err)
		}
		defer st.Close()
		for _, chunk := range b.full {
			if _, err := st.ExecContext(ctx, chunk...); err != nil {
				return fmt.Errorf("catalog insert into %s: %w", b.table, err)
			}
		}
	}
	if len(b.args) > 0 {
		if _, err := tx.ExecContext(ctx, b.sql(len(b.args)/b.ncols), b.args...); err != nil {
			return fmt.Errorf("catalog insert into %s: %w", b.table, err)
		}
	}
	return nil
}
