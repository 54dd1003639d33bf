package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// TableLife is what the archive knows of when a source table existed: the
// rel_life row of docs/FORMAT.md. Zero LSNs mean "not known".
type TableLife struct {
	// CreatedLSN is the commit LSN of the transaction that created the
	// table, when lbt saw it (its lbt.ddl message): before it the table did
	// not exist.
	CreatedLSN uint64
	CreatedAt  time.Time
	// CreatedExact is false when CreatedLSN is the table's first change
	// rather than its creation: the table was created earlier, at a moment
	// lbt did not see, and was empty until then.
	CreatedExact bool
	// DroppedLSN: from this LSN on the table no longer existed. With
	// DropExact it is the commit LSN of the DROP (its lbt.ddl message);
	// otherwise the WAL position at which lbt found the table gone, and the
	// DROP lies somewhere after AliveLSN and before DroppedLSN.
	DroppedLSN uint64
	DroppedAt  time.Time
	// AliveLSN and AliveAt are the last position and moment at which the
	// table is known to have existed. For an exact drop they are those of
	// the transaction before the DROP.
	AliveLSN  uint64
	AliveAt   time.Time
	DropExact bool
}

// Dropped reports whether the table is known to be gone.
func (l TableLife) Dropped() bool { return l.DroppedLSN != 0 }

// TableLife returns what the archive knows of when a table existed.
func (c *Catalog) TableLife(ctx context.Context, tableID int64) (TableLife, error) {
	return tableLife(ctx, c.db, tableID)
}

// TableLife is Catalog.TableLife inside the write transaction.
func (w *Writer) TableLife(tableID int64) (TableLife, error) {
	if err := w.open(); err != nil {
		return TableLife{}, err
	}
	return tableLife(w.ctx, w.tx, tableID)
}

type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func tableLife(ctx context.Context, q rowQuerier, tableID int64) (TableLife, error) {
	var cl, ca, dl, da, al, aa sql.NullInt64
	var exact, createdExact int64
	err := q.QueryRowContext(ctx, `SELECT created_lsn, created_at, created_exact, dropped_lsn, dropped_at, alive_lsn, alive_at, drop_exact
		FROM rel_life WHERE table_id = ?`, tableID).Scan(&cl, &ca, &createdExact, &dl, &da, &al, &aa, &exact)
	if errors.Is(err, sql.ErrNoRows) {
		return TableLife{}, nil
	}
	if err != nil {
		return TableLife{}, fmt.Errorf("catalog life of table %d: %w", tableID, err)
	}
	l := TableLife{CreatedLSN: uint64(cl.Int64), CreatedExact: createdExact != 0, DroppedLSN: uint64(dl.Int64), AliveLSN: uint64(al.Int64), DropExact: exact != 0}
	if ca.Valid {
		l.CreatedAt = FromMicros(ca.Int64)
	}
	if da.Valid {
		l.DroppedAt = FromMicros(da.Int64)
	}
	if aa.Valid {
		l.AliveAt = FromMicros(aa.Int64)
	}
	return l, nil
}

// SetTableCreated records the commit of the transaction that created a
// table (exact), or that of its first change when it was created earlier,
// unseen, and empty until then.
func (w *Writer) SetTableCreated(tableID int64, lsn uint64, at time.Time, exact bool) error {
	if err := w.open(); err != nil {
		return err
	}
	ex := 0
	if exact {
		ex = 1
	}
	_, err := w.tx.ExecContext(w.ctx, `INSERT INTO rel_life (table_id, created_lsn, created_at, created_exact) VALUES (?, ?, ?, ?)
		ON CONFLICT (table_id) DO UPDATE SET created_lsn = excluded.created_lsn, created_at = excluded.created_at,
			created_exact = excluded.created_exact`,
		tableID, int64(lsn), Micros(at), ex)
	if err != nil {
		return fmt.Errorf("catalog creation of table %d: %w", tableID, err)
	}
	w.touched.add(&w.touched.lives, tableID)
	return nil
}

// SetTableDropped records that a table is gone. An exact drop (the DROP's
// own commit) replaces what is known; one found by the table's absence is
// recorded only when no drop is known yet.
func (w *Writer) SetTableDropped(tableID int64, l TableLife) error {
	if err := w.open(); err != nil {
		return err
	}
	exact := 0
	if l.DropExact {
		exact = 1
	}
	_, err := w.tx.ExecContext(w.ctx, `INSERT INTO rel_life (table_id, dropped_lsn, dropped_at, alive_lsn, alive_at, drop_exact)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (table_id) DO UPDATE SET dropped_lsn = excluded.dropped_lsn, dropped_at = excluded.dropped_at,
			alive_lsn = excluded.alive_lsn, alive_at = excluded.alive_at, drop_exact = excluded.drop_exact
		WHERE rel_life.dropped_lsn IS NULL OR (excluded.drop_exact = 1 AND rel_life.drop_exact = 0)`,
		tableID, int64(l.DroppedLSN), Micros(l.DroppedAt), int64(l.AliveLSN), Micros(l.AliveAt), exact)
	if err != nil {
		return fmt.Errorf("catalog drop of table %d: %w", tableID, err)
	}
	w.touched.add(&w.touched.lives, tableID)
	return nil
}

// LiveTable is an archived table not known to be dropped, with the last
// sign of its existence the archive holds.
type LiveTable struct {
	ID       int64
	OID      uint32
	Schema   string // its name in its newest schema version
	Name     string
	AliveLSN uint64 // its last change, or the consistent point of its newest basebackup
	AliveAt  time.Time
}

// LiveTables lists, as the write transaction sees it, the newest table of each
// source OID that is not known to be dropped; with foundGone also those
// whose drop lbt only found by their absence.
func (w *Writer) LiveTables(foundGone bool) ([]LiveTable, error) {
	// Read in the transaction when one is open; otherwise without one, so
	// that a look that finds nothing to record holds no write lock.
	var q querier = w.db
	if w.tx != nil {
		q = w.tx
	}
	return queryRows(w.ctx, q, "live tables", func(row scanner) (LiveTable, error) {
		var t LiveTable
		var oid, lsn, at int64
		err := row.Scan(&t.ID, &oid, &t.Schema, &t.Name, &lsn, &at)
		t.OID, t.AliveLSN = uint32(oid), uint64(lsn)
		if at > 0 {
			t.AliveAt = FromMicros(at)
		}
		return t, err
	}, `SELECT r.id, r.oid,
			coalesce((SELECT nspname FROM schema_version v WHERE v.table_id = r.id ORDER BY version DESC LIMIT 1), ''),
			coalesce((SELECT relname FROM schema_version v WHERE v.table_id = r.id ORDER BY version DESC LIMIT 1), ''),
			max(r.first_lsn, coalesce(ts.last_change_lsn, 0), coalesce((SELECT max(lsn) FROM basebackup b WHERE b.table_id = r.id), 0)),
			max(coalesce(ts.last_change_time, 0), coalesce((SELECT max(started_at) FROM basebackup b WHERE b.table_id = r.id), 0))
		FROM rel r LEFT JOIN table_state ts ON ts.table_id = r.id
		WHERE r.id = (SELECT max(r2.id) FROM rel r2 WHERE r2.oid = r.oid)
			AND NOT EXISTS (SELECT 1 FROM rel_life l WHERE l.table_id = r.id AND l.dropped_lsn IS NOT NULL
				AND (l.drop_exact = 1 OR NOT ?))
		ORDER BY r.id`, foundGone)
}
