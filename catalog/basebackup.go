package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"lbt/schema"
)

// Basebackup is a complete, consistent dump of one table. Transactions that
// committed before LSN (commit LSN < LSN) are in it; those at or after LSN
// are in the deltas.
type Basebackup struct {
	ID         int64
	TableID    int64
	LSN        uint64 // the snapshot's consistent point
	Path       string // archive-relative; see BasebackupName
	Rows       int64
	Bytes      int64  // on disk (compressed)
	RawBytes   int64  // COPY text
	CRC        uint32 // CRC-32C of the file's bytes
	Definition schema.Definition
	Sequences  []schema.Sequence
	Reason     string // why it was taken: "new table", "threshold", "request", ...
	StartedAt  time.Time
	FinishedAt time.Time
	// Chunks, when the basebackup is more than one file (format 4), are its
	// files; Path is then the first chunk's, and Rows, Bytes and RawBytes
	// are the sums over the chunks. Nil for a basebackup of one file, which
	// Path, Rows, Bytes, RawBytes and CRC describe.
	Chunks []Chunk
}

// Chunk is one file of a basebackup: the table's rows in a range of its
// heap blocks (ctid), read under the basebackup's snapshot.
type Chunk struct {
	Path      string `json:"path"`
	Rows      int64  `json:"rows"`
	Bytes     int64  `json:"bytes"`
	RawBytes  int64  `json:"raw_bytes"`
	CRC       uint32 `json:"crc"`
	FromBlock uint64 `json:"from_block"`
	ToBlock   uint64 `json:"to_block,omitempty"` // 0: to the end of the table
}

// Files returns the basebackup's files in order: its chunks, or the one
// file the row describes.
func (b Basebackup) Files() []Chunk {
	if len(b.Chunks) > 0 {
		return b.Chunks
	}
	if b.Path == "" {
		return nil
	}
	return []Chunk{{Path: b.Path, Rows: b.Rows, Bytes: b.Bytes, RawBytes: b.RawBytes, CRC: b.CRC}}
}

// ChunkName is where chunk k of a table's basebackup at lsn lives: chunk 0
// is BasebackupName, chunk k > 0 is <LSN>.<k>.copy.lz4 beside it.
func ChunkName(tableID int64, lsn uint64, k int) string {
	if k == 0 {
		return BasebackupName(tableID, lsn)
	}
	return filepath.Join("base", fmt.Sprint(tableID), fmt.Sprintf("%016X.%d.copy.lz4", lsn, k))
}

// BasebackupOfChunk returns the basebackup file (chunk 0) that the chunk
// file at path belongs to, and whether path names a basebackup file at all.
func BasebackupOfChunk(path string) (string, bool) {
	stem, ok := strings.CutSuffix(path, ".copy.lz4")
	if !ok {
		return "", false
	}
	if i := strings.LastIndexByte(stem, '.'); i >= 0 && i > strings.LastIndexByte(stem, '/') {
		k := stem[i+1:]
		if k == "" || strings.Trim(k, "0123456789") != "" {
			return "", false
		}
		stem = stem[:i]
	}
	return stem + ".copy.lz4", true
}

// ReusedChunk reports whether path names a file of an older basebackup of
// the table than the one at lsn: a chunk that a basebackup built from the
// archive may reuse by reference (format 5). Chunk 0 of a basebackup is
// always its own file, so that its path, sidecar and pending row keep
// naming it alone.
func ReusedChunk(path string, tableID int64, lsn uint64) bool {
	first, ok := BasebackupOfChunk(path)
	if !ok {
		return false
	}
	dir, file := filepath.Split(first)
	if filepath.Clean(dir) != filepath.Join("base", fmt.Sprint(tableID)) {
		return false
	}
	hex, ok := strings.CutSuffix(file, ".copy.lz4")
	if !ok || len(hex) != 16 {
		return false
	}
	from, err := strconv.ParseUint(hex, 16, 64)
	return err == nil && from < lsn && BasebackupName(tableID, from) == first
}

// encodeChunks is the basebackup row's chunks column: empty for one file.
func encodeChunks(cs []Chunk) (string, error) {
	if len(cs) == 0 {
		return "", nil
	}
	out, err := json.Marshal(cs)
	if err != nil {
		return "", fmt.Errorf("encode chunks: %w", err)
	}
	return string(out), nil
}

func decodeChunks(s string) ([]Chunk, error) {
	if s == "" {
		return nil, nil
	}
	var cs []Chunk
	if err := json.Unmarshal([]byte(s), &cs); err != nil {
		return nil, fmt.Errorf("decode chunks: %w", err)
	}
	return cs, nil
}

// BasebackupName is where a table's basebackup at lsn lives in the archive.
func BasebackupName(tableID int64, lsn uint64) string {
	return filepath.Join("base", fmt.Sprint(tableID), fmt.Sprintf("%016X.copy.lz4", lsn))
}

// AddBasebackup records a basebackup whose file is already durable in the
// archive, and restarts the table's change counters from it.
func (c *Catalog) AddBasebackup(ctx context.Context, b Basebackup) (int64, error) {
	def, err := json.Marshal(b.Definition)
	if err != nil {
		return 0, fmt.Errorf("encode definition: %w", err)
	}
	seqs, err := json.Marshal(b.Sequences)
	if err != nil {
		return 0, fmt.Errorf("encode sequences: %w", err)
	}
	chunks, err := encodeChunks(b.Chunks)
	if err != nil {
		return 0, err
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("catalog add basebackup: %w", err)
	}
	defer tx.Rollback()
	if err := checkReused(ctx, tx, b); err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO basebackup (table_id, lsn, path, rows, bytes, raw_bytes, crc, definition, sequences, reason, started_at, finished_at, chunks)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		b.TableID, int64(b.LSN), b.Path, b.Rows, b.Bytes, b.RawBytes, int64(b.CRC), string(def), string(seqs), b.Reason,
		Micros(b.StartedAt), Micros(b.FinishedAt), chunks)
	if err != nil {
		return 0, fmt.Errorf("catalog add basebackup: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("catalog add basebackup: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM basebackup_pending WHERE path = ?`, b.Path); err != nil {
		return 0, fmt.Errorf("catalog add basebackup: %w", err)
	}
	// Count from the catalog what came after the snapshot, so that changes
	// archived while the dump ran are not forgotten: whole blobs from their
	// counts, and the transactions of a blob that straddles the snapshot
	// one by one. The write lock is held: no scan of other tables' rows. A
	// large transaction that continues from the straddling blob into the
	// next counts twice there; the figure only paces basebackups.
	var since, straddleEnd int64
	err = tx.QueryRowContext(ctx, `SELECT
		(SELECT coalesce(sum(changes), 0) FROM blob WHERE table_id = ?1 AND first_lsn >= ?2),
		(SELECT coalesce(max(last_lsn), -1) FROM blob WHERE table_id = ?1 AND first_lsn < ?2 AND last_lsn >= ?2)`,
		b.TableID, int64(b.LSN)).Scan(&since, &straddleEnd)
	if err == nil && straddleEnd >= 0 {
		err = eachTableTx(ctx, tx, b.TableID, b.LSN, uint64(straddleEnd), func(t TableTx) error {
			since += t.Total()
			return nil
		})
	}
	if err != nil {
		return 0, fmt.Errorf("catalog add basebackup: %w", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE table_state SET
		changes_since_base = ?3,
		blobs_since_base = (SELECT count(*) FROM blob WHERE table_id = ?1 AND last_lsn >= ?2)
		WHERE table_id = ?1`, b.TableID, int64(b.LSN), since)
	if err != nil {
		return 0, fmt.Errorf("catalog add basebackup: %w", err)
	}
	if err := closeTableGaps(ctx, tx, b.TableID, b.LSN, b.FinishedAt); err != nil {
		return 0, err
	}
	if err := appendBasebackupLink(ctx, tx, b.TableID, b.LSN); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("catalog add basebackup: %w", err)
	}
	return id, nil
}

// ErrChunkGone reports a basebackup built from the archive that reuses a
// chunk file no recorded basebackup holds any more: a purge took it while
// the basebackup was being built. Nothing is recorded; build it again.
var ErrChunkGone = errors.New("a reused chunk was purged while the basebackup was built")

// checkReused checks, in the transaction that records b, that every chunk
// b reuses from an older basebackup is still a file of a recorded
// basebackup of the table. Purge removes a file only once no recorded
// basebackup holds it, deciding in its own write transaction, so that
// after this commit no purge removes a file b holds.
func checkReused(ctx context.Context, tx *sql.Tx, b Basebackup) error {
	var reused []string
	for k, ch := range b.Chunks {
		switch {
		case ch.Path == ChunkName(b.TableID, b.LSN, k):
		case k > 0 && ReusedChunk(ch.Path, b.TableID, b.LSN):
			reused = append(reused, ch.Path)
		default:
			return fmt.Errorf("catalog add basebackup: %w: chunk %d of %s is %q", ErrCorrupt, k, b.Path, ch.Path)
		}
	}
	if len(reused) == 0 {
		return nil
	}
	held, err := tableFiles(ctx, tx, b.TableID, math.MinInt64)
	if err != nil {
		return fmt.Errorf("catalog add basebackup: %w", err)
	}
	for _, p := range reused {
		if !held[p] {
			return fmt.Errorf("catalog add basebackup %s: %w: %s", b.Path, ErrChunkGone, p)
		}
	}
	return nil
}

// tableFiles returns the files (every chunk) of a table's basebackups with
// lsn >= from.
func tableFiles(ctx context.Context, tx *sql.Tx, tableID, from int64) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT path, chunks FROM basebackup WHERE table_id = ? AND lsn >= ?`, tableID, from)
	if err != nil {
		return nil, err
	}
	return fileSet(rows)
}

// fileSet reads rows of (path, chunks) into the set of the basebackups'
// files, and closes them.
func fileSet(rows *sql.Rows) (map[string]bool, error) {
	defer rows.Close()
	files := map[string]bool{}
	for rows.Next() {
		var p, chunks string
		if err := rows.Scan(&p, &chunks); err != nil {
			return nil, err
		}
		for _, f := range basebackupFiles(p, chunks) {
			files[f] = true
		}
	}
	return files, rows.Err()
}

// Basebackups lists a table's basebackups, oldest first.
func (c *Catalog) Basebackups(ctx context.Context, tableID int64) ([]Basebackup, error) {
	return queryRows(ctx, c.db, fmt.Sprintf("basebackups of table %d", tableID), func(row scanner) (Basebackup, error) {
		var b Basebackup
		var lsn, crc, started, finished int64
		var def, seqs, chunks string
		err := row.Scan(&b.ID, &b.TableID, &lsn, &b.Path, &b.Rows, &b.Bytes, &b.RawBytes, &crc, &def, &seqs, &b.Reason, &started, &finished, &chunks)
		if err != nil {
			return b, err
		}
		if b.Chunks, err = decodeChunks(chunks); err != nil {
			return b, fmt.Errorf("basebackup %d: %w", b.ID, err)
		}
		b.LSN, b.CRC, b.StartedAt, b.FinishedAt = uint64(lsn), uint32(crc), FromMicros(started), FromMicros(finished)
		if err := json.Unmarshal([]byte(def), &b.Definition); err != nil {
			return b, fmt.Errorf("basebackup %d definition: %w", b.ID, err)
		}
		if err := json.Unmarshal([]byte(seqs), &b.Sequences); err != nil {
			return b, fmt.Errorf("basebackup %d sequences: %w", b.ID, err)
		}
		return b, nil
	}, `SELECT id, table_id, lsn, path, rows, bytes, raw_bytes, crc, definition, sequences, reason, started_at, finished_at, chunks
		FROM basebackup WHERE table_id = ? ORDER BY lsn`, tableID)
}

// AddPendingBasebackup records that a basebackup file is about to be moved
// to path (archive-relative). Until AddBasebackup records the file, the row
// proves it a leftover that may be removed (see ForgetPendingBasebackup);
// a file under base/ with neither row is never removed.
func (c *Catalog) AddPendingBasebackup(ctx context.Context, path string) error {
	_, err := c.db.ExecContext(ctx, `INSERT INTO basebackup_pending (path, started_at) VALUES (?, ?)
		ON CONFLICT (path) DO NOTHING`, path, Micros(time.Now()))
	if err != nil {
		return fmt.Errorf("catalog pending basebackup %s: %w", path, err)
	}
	return nil
}

// IsPendingBasebackup reports whether path is a pending basebackup's
// without a basebackup row: a leftover once no writer holds it.
func (c *Catalog) IsPendingBasebackup(ctx context.Context, path string) (bool, error) {
	var n int
	err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM basebackup_pending p
		WHERE p.path = ?1 AND NOT EXISTS (SELECT 1 FROM basebackup b WHERE b.path = ?1)`, path).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("catalog pending basebackup %s: %w", path, err)
	}
	return n > 0, nil
}

// ForgetPendingBasebackup removes path's pending row once its file is gone.
func (c *Catalog) ForgetPendingBasebackup(ctx context.Context, path string) error {
	if _, err := c.db.ExecContext(ctx, `DELETE FROM basebackup_pending WHERE path = ?`, path); err != nil {
		return fmt.Errorf("catalog pending basebackup %s: %w", path, err)
	}
	return nil
}

// NewestBasebackupLSN returns the greatest consistent point of the
// basebackups of any table that finished at or before t; ok is false when
// none did.
func (c *Catalog) NewestBasebackupLSN(ctx context.Context, t time.Time) (lsn uint64, ok bool, err error) {
	var v sql.NullInt64
	if err := c.db.QueryRowContext(ctx, `SELECT max(lsn) FROM basebackup WHERE finished_at <= ?`, Micros(t)).Scan(&v); err != nil {
		return 0, false, fmt.Errorf("catalog basebackups: %w", err)
	}
	return uint64(v.Int64), v.Valid, nil
}

// BasebackupNeed is what the basebackup scheduler weighs of one source
// table: the newest catalog table of its OID.
type BasebackupNeed struct {
	TableID          int64
	OID              uint32
	Name             string // qualified SQL name, as of its newest schema version
	ChangesSinceBase int64
	BlobsSinceBase   int64
	LastChange       time.Time // commit time of its last change; zero when none is recorded
	Basebackups      int64
	// The newest of its basebackups at or after the current epoch's start:
	// when it finished; InEpoch is false when there is none.
	InEpoch         bool
	NewestInEpochAt time.Time
	Inexact         bool // an inexact span is open: only a basebackup ends it
}

// BasebackupNeeds lists, for each source OID, what its newest catalog table
// needs of a basebackup; epochStart is the current epoch's start LSN.
func (c *Catalog) BasebackupNeeds(ctx context.Context, epochStart uint64) ([]BasebackupNeed, error) {
	return queryRows(ctx, c.db, "tables", func(row scanner) (BasebackupNeed, error) {
		var n BasebackupNeed
		var oid, lastChange int64
		var lastBase sql.NullInt64
		var nsp, rel string
		err := row.Scan(&n.TableID, &oid, &n.ChangesSinceBase, &n.BlobsSinceBase, &lastChange, &n.Basebackups, &lastBase, &nsp, &rel, &n.Inexact)
		n.OID = uint32(oid)
		n.Name = schema.Table{Schema: nsp, Name: rel}.QualifiedName()
		n.LastChange = microsOrZero(lastChange)
		if lastBase.Valid {
			n.InEpoch, n.NewestInEpochAt = true, FromMicros(lastBase.Int64)
		}
		return n, err
	}, `SELECT r.id, r.oid,
			coalesce(ts.changes_since_base, 0), coalesce(ts.blobs_since_base, 0), coalesce(ts.last_change_time, 0),
			(SELECT count(*) FROM basebackup b WHERE b.table_id = r.id),
			(SELECT max(b.finished_at) FROM basebackup b WHERE b.table_id = r.id AND b.lsn >= ?),
			coalesce((SELECT nspname FROM schema_version v WHERE v.table_id = r.id ORDER BY version DESC LIMIT 1), ''),
			coalesce((SELECT relname FROM schema_version v WHERE v.table_id = r.id ORDER BY version DESC LIMIT 1), ''),
			EXISTS (SELECT 1 FROM table_gap g WHERE g.table_id = r.id AND g.to_lsn IS NULL)
		FROM rel r LEFT JOIN table_state ts ON ts.table_id = r.id
		WHERE r.id = (SELECT max(r2.id) FROM rel r2 WHERE r2.oid = r.oid)`, clampLSN(epochStart))
}

// HasBasebackupSince reports whether a table with the source OID has a
// basebackup whose consistent point is at or after lsn.
func (c *Catalog) HasBasebackupSince(ctx context.Context, oid uint32, lsn uint64) (bool, error) {
	var n int
	if err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM basebackup b JOIN rel r ON r.id = b.table_id
		WHERE r.oid = ? AND b.lsn >= ?`, int64(oid), clampLSN(lsn)).Scan(&n); err != nil {
		return false, fmt.Errorf("catalog basebackups: %w", err)
	}
	return n > 0, nil
}
