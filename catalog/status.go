package catalog

import (
	"context"
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
	rows, err := c.db.QueryContext(ctx, `SELECT r.id,
			(SELECT v.nspname FROM schema_version v WHERE v.table_id = r.id ORDER BY v.version DESC LIMIT 1),
			(SELECT v.relname FROM schema_version v WHERE v.table_id = r.id ORDER BY v.version DESC LIMIT 1),
			(SELECT max(b.finished_at) FROM basebackup b WHERE b.table_id = r.id)
		FROM rel r ORDER BY r.id`)
	if err != nil {
		return nil, fmt.Errorf("catalog basebackups: %w", err)
	}
	defer rows.Close()
	var out []TableBasebackup
	for rows.Next() {
		var t TableBasebackup
		var nsp, rel *string
		var finished *int64
		if err := rows.Scan(&t.TableID, &nsp, &rel, &finished); err != nil {
			return nil, fmt.Errorf("catalog basebackups: %w", err)
		}
		if nsp != nil && rel != nil {
			t.Name = schema.QuoteIdent(*nsp) + "." + schema.QuoteIdent(*rel)
		}
		if finished != nil {
			t.FinishedAt = FromMicros(*finished)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
