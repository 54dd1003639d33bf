package catalog

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"lbt/crypt"
	"lbt/schema"
	"lbt/storage"
)

// SchemaVersion is a table's definition from the commit LSN of the
// transaction in which the stream first showed it.
type SchemaVersion struct {
	TableID int64
	Version int
	FromLSN uint64
	schema.Table
}

func (s SchemaVersion) columnsJSON() (string, error) {
	b, err := json.Marshal(s.Columns)
	if err != nil {
		return "", fmt.Errorf("encode columns of %s: %w", s.QualifiedName(), err)
	}
	return string(b), nil
}

func (s SchemaVersion) primaryKeyJSON() (string, error) {
	pk := s.PrimaryKey
	if pk == nil {
		pk = []string{}
	}
	b, err := json.Marshal(pk)
	if err != nil {
		return "", fmt.Errorf("encode primary key of %s: %w", s.QualifiedName(), err)
	}
	return string(b), nil
}

// Epoch is a stretch of the archive's history fed by one unbroken slot.
type Epoch struct {
	ID       int64
	StartLSN uint64
	Slot     string
	Reason   string
}

// Position returns how far the archive reaches; ok is false for an archive
// that holds no transaction yet.
func (c *Catalog) Position(ctx context.Context) (p Position, ok bool, err error) {
	var endLSN, commitLSN, commitTime int64
	err = c.db.QueryRowContext(ctx, `SELECT epoch, end_lsn, commit_lsn, commit_time FROM position WHERE id = 1`).
		Scan(&p.Epoch, &endLSN, &commitLSN, &commitTime)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("catalog position: %w", err)
	}
	p.EndLSN, p.CommitLSN, p.CommitTime = uint64(endLSN), uint64(commitLSN), FromMicros(commitTime)
	return p, true, nil
}

// PositionUpdatedAt returns when the daemon last recorded its position: at
// each flush, and when the stream tells it that nothing happened, so the
// archive is complete up to the later of this and the last commit.
func (c *Catalog) PositionUpdatedAt(ctx context.Context) (time.Time, error) {
	var us int64
	if err := c.db.QueryRowContext(ctx, `SELECT updated_at FROM position WHERE id = 1`).Scan(&us); err != nil {
		return time.Time{}, fmt.Errorf("catalog position: %w", err)
	}
	return FromMicros(us), nil
}

// TableLastChange returns the commit LSN and time of the table's last
// archived change; both are zero when none is recorded.
func (c *Catalog) TableLastChange(ctx context.Context, tableID int64) (lsn uint64, at time.Time, err error) {
	var l, t sql.NullInt64
	err = c.db.QueryRowContext(ctx, `SELECT last_change_lsn, last_change_time FROM table_state WHERE table_id = ?`, tableID).Scan(&l, &t)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, at, fmt.Errorf("catalog table state %d: %w", tableID, err)
	}
	return uint64(l.Int64), microsOrZero(t.Int64), nil
}

// PurgedBefore returns the LSN before which purge removed the table's
// deltas; 0 when it removed none.
func (c *Catalog) PurgedBefore(ctx context.Context, tableID int64) (uint64, error) {
	var lsn sql.NullInt64
	if err := c.db.QueryRowContext(ctx, `SELECT max(before_lsn) FROM purge_log WHERE table_id = ?`, tableID).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("catalog purge log: %w", err)
	}
	return uint64(lsn.Int64), nil
}

// Epochs lists the archive's epochs, oldest first.
func (c *Catalog) Epochs(ctx context.Context) ([]Epoch, error) {
	return queryRows(ctx, c.db, "epochs", func(row scanner) (Epoch, error) {
		var e Epoch
		var start int64
		err := row.Scan(&e.ID, &start, &e.Slot, &e.Reason)
		e.StartLSN = uint64(start)
		return e, err
	}, `SELECT id, start_lsn, slot, reason FROM epoch ORDER BY id`)
}

// TableRef is an archived table: the catalog's id and the source's OID.
type TableRef struct {
	ID  int64
	OID uint32
}

// Tables lists every table the archive has seen.
func (c *Catalog) Tables(ctx context.Context) ([]TableRef, error) {
	return queryRows(ctx, c.db, "tables", func(row scanner) (TableRef, error) {
		var t TableRef
		var oid int64
		err := row.Scan(&t.ID, &oid)
		t.OID = uint32(oid)
		return t, err
	}, `SELECT id, oid FROM rel ORDER BY id`)
}

// SchemaVersions returns every version of a table's definition, oldest first.
func (c *Catalog) SchemaVersions(ctx context.Context, tableID int64) ([]SchemaVersion, error) {
	return schemaVersions(ctx, c.db, tableID)
}

// TableByOID finds, inside the write transaction, the newest table with a
// source OID that is not known to be dropped, and its latest definition; ok
// is false when there is none.
func (w *Writer) TableByOID(oid uint32) (id int64, latest SchemaVersion, ok bool, err error) {
	var q interface {
		querier
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	} = w.db
	if w.tx != nil {
		q = w.tx // the one connection is inside the transaction
	}
	err = q.QueryRowContext(w.ctx, `SELECT id FROM rel WHERE oid = ?
		AND NOT EXISTS (SELECT 1 FROM rel_life l WHERE l.table_id = rel.id AND l.dropped_lsn IS NOT NULL)
		ORDER BY id DESC LIMIT 1`, int64(oid)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, latest, false, nil
	}
	if err != nil {
		return 0, latest, false, fmt.Errorf("catalog table by oid %d: %w", oid, err)
	}
	versions, err := schemaVersions(w.ctx, q, id)
	if err != nil || len(versions) == 0 {
		return id, latest, false, err
	}
	return id, versions[len(versions)-1], true, nil
}

// NewestTableID returns the id of the newest catalog table with the source
// OID, dropped or not; ok is false when there is none.
func (c *Catalog) NewestTableID(ctx context.Context, oid uint32) (id int64, ok bool, err error) {
	return newestTableID(ctx, c.db, oid)
}

// NewestTableID is Catalog.NewestTableID inside the write transaction.
func (w *Writer) NewestTableID(oid uint32) (id int64, ok bool, err error) {
	if err := w.open(); err != nil {
		return 0, false, err
	}
	return newestTableID(w.ctx, w.tx, oid)
}

func newestTableID(ctx context.Context, q rowQuerier, oid uint32) (id int64, ok bool, err error) {
	err = q.QueryRowContext(ctx, `SELECT id FROM rel WHERE oid = ? ORDER BY id DESC LIMIT 1`, int64(oid)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("catalog table by oid %d: %w", oid, err)
	}
	return id, true, nil
}

// SegmentChanges returns how many changes the blobs in a segment hold.
func (c *Catalog) SegmentChanges(ctx context.Context, segmentID int64) (int64, error) {
	var n int64
	if err := c.db.QueryRowContext(ctx, `SELECT coalesce(sum(changes), 0) FROM blob WHERE segment_id = ?`, segmentID).Scan(&n); err != nil {
		return 0, fmt.Errorf("catalog segment %d: %w", segmentID, err)
	}
	return n, nil
}

// SchemaVersions returns, inside the write transaction, every version of
// a table's definition, oldest first.
func (w *Writer) SchemaVersions(tableID int64) ([]SchemaVersion, error) {
	var q querier = w.db
	if w.tx != nil {
		q = w.tx
	}
	return schemaVersions(w.ctx, q, tableID)
}

// EpochRecords lists the archive's epochs with their start times, oldest
// first.
func (c *Catalog) EpochRecords(ctx context.Context) ([]EpochRecord, error) {
	return queryRows(ctx, c.db, "epochs", func(row scanner) (EpochRecord, error) {
		var e EpochRecord
		var start, at int64
		err := row.Scan(&e.ID, &start, &at, &e.Slot, &e.Reason)
		e.StartLSN, e.StartedAt = uint64(start), FromMicros(at)
		return e, err
	}, `SELECT id, start_lsn, started_at, slot, reason FROM epoch ORDER BY id`)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryRows runs query on q and returns what scan reads from each of its
// rows, in order. Its errors begin "catalog " + what.
func queryRows[T any](ctx context.Context, q querier, what string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("catalog %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog %s: %w", what, err)
	}
	return out, nil
}

func schemaVersions(ctx context.Context, q querier, tableID int64) ([]SchemaVersion, error) {
	return queryRows(ctx, q, fmt.Sprintf("schema of table %d", tableID), func(row scanner) (SchemaVersion, error) {
		var s SchemaVersion
		var from int64
		var ident, cols, pk string
		if err := row.Scan(&s.TableID, &s.Version, &from, &s.Schema, &s.Name, &ident, &cols, &pk); err != nil {
			return s, err
		}
		s.FromLSN = uint64(from)
		if ident != "" {
			s.ReplicaIdentity = ident[0]
		}
		if err := json.Unmarshal([]byte(cols), &s.Columns); err != nil {
			return s, fmt.Errorf("version %d: %w", s.Version, err)
		}
		if err := json.Unmarshal([]byte(pk), &s.PrimaryKey); err != nil {
			return s, fmt.Errorf("version %d: %w", s.Version, err)
		}
		if len(s.PrimaryKey) == 0 {
			s.PrimaryKey = nil
		}
		return s, nil
	}, `SELECT table_id, version, from_lsn, nspname, relname, replident, columns, primary_key
		FROM schema_version WHERE table_id = ? ORDER BY version`, tableID)
}

// FindTable returns the ids of the tables that were ever named schema.name,
// most recently seen first. A name can have been used by a table that was
// dropped and recreated.
func (c *Catalog) FindTable(ctx context.Context, schemaName, name string) ([]int64, error) {
	return queryRows(ctx, c.db, fmt.Sprintf("find table %s.%s", schemaName, name), scanInt64,
		`SELECT table_id FROM schema_version WHERE nspname = ? AND relname = ?
		GROUP BY table_id ORDER BY max(from_lsn) DESC, table_id DESC`, schemaName, name)
}

// Blobs returns a table's blobs that may hold transactions committed in
// [fromLSN, toLSN], in the order they were written, which is commit order.
func (c *Catalog) Blobs(ctx context.Context, tableID int64, fromLSN, toLSN uint64) ([]Blob, error) {
	return queryRows(ctx, c.db, fmt.Sprintf("blobs of table %d", tableID), scanBlob,
		`SELECT id, table_id, segment_id, offset, length, crc, schema, first_lsn, last_lsn, changes, raw_length
		FROM blob WHERE table_id = ? AND last_lsn >= ? AND first_lsn <= ? ORDER BY id`,
		tableID, int64(fromLSN), int64(toLSN))
}

// BlobByID returns one blob's record. Its query is prepared once: a history
// asks it for each transaction it reads.
func (c *Catalog) BlobByID(ctx context.Context, id int64) (Blob, error) {
	row := c.queryRow(ctx, `SELECT id, table_id, segment_id, offset, length, crc, schema, first_lsn, last_lsn, changes, raw_length
		FROM blob WHERE id = ?`, id)
	b, err := scanBlob(row)
	if err != nil {
		return b, fmt.Errorf("catalog blob %d: %w", id, err)
	}
	return b, nil
}

// TxBlob returns the id of the first of the table's blobs after blob after
// (0: from the first) whose LSN range ends at or after commitLSN, and its
// first LSN: when that is at most commitLSN, the blob holds changes of the
// transaction that committed at commitLSN, and a large one continues in the
// next such blobs. ok is false when there is none. Its queries are prepared
// once: a history asks them for each transaction it reads.
func (c *Catalog) TxBlob(ctx context.Context, tableID int64, commitLSN uint64, after int64) (id int64, firstLSN uint64, ok bool, err error) {
	var first int64
	if after == 0 {
		err = c.queryRow(ctx, `SELECT id, first_lsn FROM blob WHERE table_id = ? AND last_lsn >= ? ORDER BY last_lsn, id LIMIT 1`,
			tableID, clampLSN(commitLSN)).Scan(&id, &first)
	} else {
		err = c.queryRow(ctx, `SELECT id, first_lsn FROM blob WHERE table_id = ? AND last_lsn >= ? AND id > ? ORDER BY last_lsn, id LIMIT 1`,
			tableID, clampLSN(commitLSN), after).Scan(&id, &first)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("catalog blobs of table %d at %s: %w", tableID, FormatLSN(commitLSN), err)
	}
	return id, uint64(first), true, nil
}

type scanner interface{ Scan(...any) error }

func scanInt64(s scanner) (int64, error) {
	var v int64
	err := s.Scan(&v)
	return v, err
}

func scanBlob(s scanner) (Blob, error) {
	var b Blob
	var crc, first, last int64
	err := s.Scan(&b.ID, &b.TableID, &b.SegmentID, &b.Offset, &b.Length, &crc, &b.Schema, &first, &last, &b.Changes, &b.RawLength)
	b.CRC, b.FirstLSN, b.LastLSN = uint32(crc), uint64(first), uint64(last)
	return b, err
}

// OpenSegmentState is the segment that ingest appends to.
type OpenSegmentState struct {
	ID   int64
	Size int64 // bytes the catalog references
}

// ActiveSegment returns the newest unsealed segment, if any.
func (c *Catalog) ActiveSegment(ctx context.Context) (OpenSegmentState, bool, error) {
	var s OpenSegmentState
	err := c.db.QueryRowContext(ctx, `SELECT id, size FROM segment WHERE sealed = 0 ORDER BY id DESC LIMIT 1`).Scan(&s.ID, &s.Size)
	if errors.Is(err, sql.ErrNoRows) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("catalog active segment: %w", err)
	}
	return s, true, nil
}

// NextIDs returns the ids the next segment and blob get. A blob id is
// never given twice, even once purge removed the blobs with the greatest
// ids: their ids stay in the metadata blobs of the segment the daemon
// appends to, and a catalog rebuilt from it would find two blobs of one id
// (meta next_blob_id, which purge keeps).
func (c *Catalog) NextIDs(ctx context.Context) (segment, blob int64, err error) {
	err = c.db.QueryRowContext(ctx, `SELECT (SELECT coalesce(max(id), 0) + 1 FROM segment),
		max((SELECT coalesce(max(id), 0) + 1 FROM blob), coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = '`+metaNextBlobID+`'), 0))`).
		Scan(&segment, &blob)
	if err != nil {
		return 0, 0, fmt.Errorf("catalog next ids: %w", err)
	}
	return segment, blob, nil
}

// BlobSource reads blobs from the archive's segment files through its
// Store, keeping the files open between reads. It is safe for concurrent
// use.
//
// A reader reads the catalog's rows first, in one transaction, then the
// files they name. Purge runs the other way (rows, then files), so a file
// a reader opens late may be gone: Read then reports an error for which
// errors.Is(err, fs.ErrNotExist) holds, and the reader reads the rows
// again (docs/FORMAT.md, "Readers while purge runs").
type BlobSource struct {
	ctx   context.Context
	store storage.Store
	keys  *crypt.Keys
	mu    sync.Mutex
	files map[int64]storage.ReaderAtCloser
	segs  map[int64]*SegmentReader
}

// NewBlobSource reads blobs from store; ctx bounds every read. keys is the
// archive's (Catalog.Keys), nil for a plaintext archive.
func NewBlobSource(ctx context.Context, store storage.Store, keys *crypt.Keys) *BlobSource {
	return &BlobSource{ctx: ctx, store: store, keys: keys, files: make(map[int64]storage.ReaderAtCloser), segs: make(map[int64]*SegmentReader)}
}

// Read returns a blob's decompressed records after checking them against the
// catalog's checksum and the blob's own. buf is reused when large enough.
func (s *BlobSource) Read(b Blob, buf []byte) ([]byte, error) {
	sr, err := s.segment(b.SegmentID)
	if err != nil {
		return nil, err
	}
	// A reader of its own: the SegmentReader's buffers are not shared.
	r := *sr
	r.record = nil
	h, frame, raw, err := r.ReadBlob(b.Offset, b.Length, nil, buf)
	if err != nil {
		return nil, fmt.Errorf("blob %d in %s at offset %d: %w", b.ID, SegmentName(b.SegmentID), b.Offset, err)
	}
	if h.CRC != b.CRC || h.TableID != b.TableID {
		return nil, fmt.Errorf("blob %d in %s at offset %d: %w: header does not match the catalog", b.ID, SegmentName(b.SegmentID), b.Offset, ErrCorrupt)
	}
	// The digest is read (and checked) by verify: the CRC finds damage,
	// the SHA-256 that the hash chain covers also finds a forgery.
	if b.SHA256 != ([32]byte{}) && sha256.Sum256(frame) != b.SHA256 {
		return nil, fmt.Errorf("blob %d in %s at offset %d: %w: its SHA-256 is not the one the catalog records", b.ID, SegmentName(b.SegmentID), b.Offset, ErrCorrupt)
	}
	return raw, nil
}

func (s *BlobSource) segment(id int64) (*SegmentReader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sr, ok := s.segs[id]; ok {
		return sr, nil
	}
	f, err := storage.OpenReaderAt(s.ctx, s.store, SegmentName(id))
	if err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	sr, err := OpenSegmentReader(f, id, s.keys)
	if err != nil {
		f.Close()
		if errors.Is(err, crypt.ErrNoKey) {
			return nil, err // one line: the file adds nothing
		}
		return nil, fmt.Errorf("%s: %w", SegmentName(id), err)
	}
	s.files[id], s.segs[id] = f, sr
	return sr, nil
}

// Open opens the segments ids now rather than at their first read, so
// that a purge removing one afterwards does not matter (an open file stays
// readable) and one that removed it already is seen at once.
func (s *BlobSource) Open(ids ...int64) error {
	for _, id := range ids {
		if _, err := s.segment(id); err != nil {
			return fmt.Errorf("segment %d: %w", id, err)
		}
	}
	return nil
}

// Close closes the segment files.
func (s *BlobSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, f := range s.files {
		f.Close()
		delete(s.files, id)
		delete(s.segs, id)
	}
	return nil
}
