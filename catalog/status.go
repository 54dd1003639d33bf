package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"lbt/schema"
)

// Summary is the archive's state as the catalog records it.
type Summary struct {
	Position           Position
	HasPosition        bool
	UpdatedAt          time.Time // when the daemon last committed a flush
	Epochs             []Epoch
	Tables             int
	TablesWithoutBase  int // archived tables that no basebackup covers yet
	Transactions       int64
	Changes            int64
	Segments           int
	SegmentBytes       int64
	Basebackups        int
	BasebackupBytes    int64
	OldestRestorableAt time.Time // commit time of the oldest basebackup's snapshot, roughly
}

// Summarize reads the archive's summary.
func (c *Catalog) Summarize(ctx context.Context) (Summary, error) {
	var s Summary
	var err error
	if s.Position, s.HasPosition, err = c.Position(ctx); err != nil {
		return s, err
	}
	if s.HasPosition {
		var us int64
		if err := c.db.QueryRowContext(ctx, `SELECT updated_at FROM position WHERE id = 1`).Scan(&us); err == nil {
			s.UpdatedAt = FromMicros(us)
		}
	}
	if s.Epochs, err = c.Epochs(ctx); err != nil {
		return s, err
	}
	var oldestBaseLSN *int64
	err = c.db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM rel),
		(SELECT count(*) FROM rel r WHERE NOT EXISTS (SELECT 1 FROM basebackup b WHERE b.table_id = r.id)),
		(SELECT count(*) FROM tx),
		(SELECT coalesce(sum(changes), 0) FROM blob),
		(SELECT count(*) FROM segment WHERE retired_at IS NULL),
		(SELECT coalesce(sum(size), 0) FROM segment WHERE retired_at IS NULL),
		(SELECT count(*) FROM basebackup),
		(SELECT coalesce(sum(bytes), 0) FROM basebackup),
		(SELECT min(lsn) FROM basebackup)`).
		Scan(&s.Tables, &s.TablesWithoutBase, &s.Transactions, &s.Changes, &s.Segments, &s.SegmentBytes,
			&s.Basebackups, &s.BasebackupBytes, &oldestBaseLSN)
	if err != nil {
		return s, fmt.Errorf("catalog summary: %w", err)
	}
	if oldestBaseLSN != nil {
		var us *int64
		// Commit times follow commit LSNs closely enough for a status line.
		c.db.QueryRowContext(ctx, `SELECT commit_time FROM tx WHERE commit_lsn >= ? ORDER BY commit_lsn LIMIT 1`, *oldestBaseLSN).Scan(&us)
		if us != nil {
			s.OldestRestorableAt = FromMicros(*us)
		}
	}
	return s, nil
}

// TableBasebackup is an archived table with its newest basebackup.
type TableBasebackup struct {
	TableID    int64
	Name       string    // schema.name as of its newest schema version, quoted as SQL needs
	FinishedAt time.Time // of the newest basebackup; zero when there is none
}

// NewestBasebackups lists every archived table with the end of its newest
// basebackup, by table id.
func (c *Catalog) NewestBasebackups(ctx context.Context) ([]TableBasebackup, error) {
	return queryRows(ctx, c.db, "basebackups", func(row scanner) (TableBasebackup, error) {
		var t TableBasebackup
		var nsp, rel *string
		var finished *int64
		err := row.Scan(&t.TableID, &nsp, &rel, &finished)
		if nsp != nil && rel != nil {
			t.Name = schema.QuoteIdent(*nsp) + "." + schema.QuoteIdent(*rel)
		}
		if finished != nil {
			t.FinishedAt = FromMicros(*finished)
		}
		return t, err
	}, `SELECT r.id,
			(SELECT v.nspname FROM schema_version v WHERE v.table_id = r.id ORDER BY v.version DESC LIMIT 1),
			(SELECT v.relname FROM schema_version v WHERE v.table_id = r.id ORDER BY v.version DESC LIMIT 1),
			(SELECT max(b.finished_at) FROM basebackup b WHERE b.table_id = r.id)
		FROM rel r ORDER BY r.id`)
}

// TableTotals is what a table's blobs and basebackups add up to.
type TableTotals struct {
	TableID int64

	Transactions int64 // that began in its blobs
	Counts
	FirstChange time.Time // commit time of its first change; zero without one
	LastChange  time.Time // of its last change
	Blobs       int64
	BlobBytes   int64 // as stored (compressed)

	Basebackups         int
	BasebackupBytes     int64     // as stored
	NewestBasebackupLSN uint64    // 0 without one
	NewestBasebackup    time.Time // when it finished; zero without one
}

// TableTotals adds up each table's blobs and basebackups, by table id. A
// table without either has no entry.
func (c *Catalog) TableTotals(ctx context.Context) (map[int64]*TableTotals, error) {
	out := make(map[int64]*TableTotals)
	of := func(id int64) *TableTotals {
		t := out[id]
		if t == nil {
			t = &TableTotals{TableID: id}
			out[id] = t
		}
		return t
	}
	err := c.eachIntRow(ctx, `SELECT t.table_id, t.n, t.ins, t.upd, t.del, t.trunc,
			(SELECT commit_time FROM tx WHERE commit_lsn >= t.lo ORDER BY commit_lsn LIMIT 1), (SELECT commit_time FROM tx WHERE commit_lsn = t.hi),
			t.blobs, t.bytes
		FROM (SELECT table_id, sum(txs) AS n, sum(inserts) AS ins, sum(updates) AS upd, sum(deletes) AS del, sum(truncates) AS trunc,
			min(first_lsn) AS lo, max(last_lsn) AS hi, count(*) AS blobs, sum(length) AS bytes FROM blob GROUP BY table_id) t`, 10,
		func(v []int64) {
			t := of(v[0])
			t.Transactions, t.Inserts, t.Updates, t.Deletes, t.Truncates = v[1], v[2], v[3], v[4], v[5]
			t.FirstChange, t.LastChange = microsOrZero(v[6]), microsOrZero(v[7])
			t.Blobs, t.BlobBytes = v[8], v[9]
		})
	if err != nil {
		return nil, err
	}
	err = c.eachIntRow(ctx, `SELECT table_id, count(*), coalesce(sum(bytes), 0), max(lsn),
			(SELECT finished_at FROM basebackup b2 WHERE b2.table_id = b.table_id ORDER BY lsn DESC LIMIT 1)
		FROM basebackup b GROUP BY table_id`, 5,
		func(v []int64) {
			t := of(v[0])
			t.Basebackups, t.BasebackupBytes, t.NewestBasebackupLSN = int(v[1]), v[2], uint64(v[3])
			t.NewestBasebackup = microsOrZero(v[4])
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachIntRow runs a query whose n columns are integers (NULL as 0).
func (c *Catalog) eachIntRow(ctx context.Context, q string, n int, fn func([]int64)) error {
	rows, err := c.db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	vals := make([]int64, n)
	ptrs := make([]any, n)
	nulls := make([]sql.NullInt64, n)
	for i := range ptrs {
		ptrs[i] = &nulls[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		for i := range vals {
			vals[i] = nulls[i].Int64
		}
		fn(vals)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// microsOrZero converts catalog time, with 0 (a NULL) the zero time.
func microsOrZero(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return FromMicros(us)
}
