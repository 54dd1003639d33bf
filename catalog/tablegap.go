package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"lbt/schema"
)

// TableGap is an inexact span of one table's history: the source changed
// the table's rows in a way the stream does not carry (a rewrite by ALTER
// TABLE, a column dropped and added again, ...), so no restore between the
// change and the table's next basebackup can be exact. The span is open
// (ToLSN 0) until a basebackup taken after the change closes it.
type TableGap struct {
	ID      int64
	TableID int64
	// FromLSN is the first position that is not exactly restorable: just
	// after the table's previous archived transaction, or the commit LSN of
	// the DDL transaction when the DDL was captured. FromTime is the commit
	// time of that previous transaction (or of the DDL); zero when unknown.
	FromLSN  uint64
	FromTime time.Time
	// SeenLSN is the commit LSN of the transaction at which the change was
	// seen: a basebackup whose consistent point is after it holds the
	// change.
	SeenLSN uint64
	// ToLSN and ToTime are the consistent point and finish time of the
	// basebackup that closed the span; zero while it is open.
	ToLSN  uint64
	ToTime time.Time
	Reason string
}

// Open reports whether no basebackup has closed the span yet.
func (g TableGap) Open() bool { return g.ToLSN == 0 }

// AddTableGap records an inexact span of a table's history.
func (w *Writer) AddTableGap(g TableGap) error {
	if err := w.open(); err != nil {
		return err
	}
	res, err := w.tx.ExecContext(w.ctx, `INSERT INTO table_gap (table_id, from_lsn, from_time, seen_lsn, reason) VALUES (?, ?, ?, ?, ?)`,
		g.TableID, int64(g.FromLSN), timeMicros(g.FromTime), int64(g.SeenLSN), g.Reason)
	var id int64
	if err == nil {
		id, err = res.LastInsertId()
	}
	if err != nil {
		return fmt.Errorf("catalog add inexact span of table %d: %w", g.TableID, err)
	}
	w.touched.add(&w.touched.gaps, id)
	return nil
}

// closeTableGaps closes the open spans of a table that a basebackup at lsn,
// finished at, holds: those seen before its consistent point.
func closeTableGaps(ctx context.Context, tx *sql.Tx, tableID int64, lsn uint64, at time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE table_gap SET to_lsn = ?, to_time = ? WHERE table_id = ? AND to_lsn IS NULL AND seen_lsn < ?`,
		int64(lsn), Micros(at), tableID, int64(lsn))
	if err != nil {
		return fmt.Errorf("catalog close inexact spans of table %d: %w", tableID, err)
	}
	return nil
}

// TableGaps lists a table's inexact spans, oldest first.
func (c *Catalog) TableGaps(ctx context.Context, tableID int64) ([]TableGap, error) {
	return queryRows(ctx, c.db, fmt.Sprintf("inexact spans of table %d", tableID), func(row scanner) (TableGap, error) {
		var g TableGap
		var from, fromTime, seen, to, toTime int64
		err := row.Scan(&g.ID, &g.TableID, &from, &fromTime, &seen, &to, &toTime, &g.Reason)
		g.FromLSN, g.SeenLSN, g.ToLSN = uint64(from), uint64(seen), uint64(to)
		if fromTime != 0 {
			g.FromTime = FromMicros(fromTime)
		}
		if toTime != 0 {
			g.ToTime = FromMicros(toTime)
		}
		return g, err
	}, `SELECT id, table_id, from_lsn, from_time, seen_lsn, coalesce(to_lsn, 0), coalesce(to_time, 0), reason
		FROM table_gap WHERE table_id = ? ORDER BY from_lsn, id`, tableID)
}

// TableDescription is a table as the daemon last read it on the source:
// its storage (pg_class.relfilenode) and its columns, against which the
// next description tells a change the stream does not carry.
type TableDescription struct {
	Relfilenode uint32
	Table       schema.Table
	Known       bool // a description was recorded
}

// SetDescription records the table as last read on the source.
func (w *Writer) SetDescription(tableID int64, d TableDescription) error {
	if err := w.open(); err != nil {
		return err
	}
	desc, err := json.Marshal(d.Table)
	if err != nil {
		return fmt.Errorf("encode description of table %d: %w", tableID, err)
	}
	_, err = w.tx.ExecContext(w.ctx, `INSERT INTO table_storage (table_id, relfilenode, description) VALUES (?, ?, ?)
		ON CONFLICT (table_id) DO UPDATE SET relfilenode = excluded.relfilenode, description = excluded.description`,
		tableID, int64(d.Relfilenode), string(desc))
	if err != nil {
		return fmt.Errorf("catalog description of table %d: %w", tableID, err)
	}
	w.touched.add(&w.touched.storage, tableID)
	return nil
}

// Description returns, inside the write transaction, the table as last
// recorded by SetDescription.
func (w *Writer) Description(tableID int64) (TableDescription, error) {
	if err := w.open(); err != nil {
		return TableDescription{}, err
	}
	var node int64
	var desc string
	err := w.tx.QueryRowContext(w.ctx, `SELECT relfilenode, description FROM table_storage WHERE table_id = ?`, tableID).Scan(&node, &desc)
	if errors.Is(err, sql.ErrNoRows) {
		return TableDescription{}, nil
	}
	if err != nil {
		return TableDescription{}, fmt.Errorf("catalog description of table %d: %w", tableID, err)
	}
	return decodeDescription(tableID, node, desc)
}

func decodeDescription(tableID, node int64, desc string) (TableDescription, error) {
	d := TableDescription{Relfilenode: uint32(node), Known: true}
	if err := json.Unmarshal([]byte(desc), &d.Table); err != nil {
		return d, fmt.Errorf("%w: description of table %d: %v", ErrCorrupt, tableID, err)
	}
	return d, nil
}

// TableMark is what the archiver resumes with for one table: its storage
// as last read, and its last archived transaction.
type TableMark struct {
	Description    TableDescription
	LastChangeLSN  uint64
	LastChangeTime time.Time
}

// TableMarks returns every table's mark, by table id.
func (c *Catalog) TableMarks(ctx context.Context) (map[int64]TableMark, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT r.id, s.relfilenode, s.description, coalesce(ts.last_change_lsn, 0), coalesce(ts.last_change_time, 0)
		FROM rel r LEFT JOIN table_storage s ON s.table_id = r.id LEFT JOIN table_state ts ON ts.table_id = r.id`)
	if err != nil {
		return nil, fmt.Errorf("catalog table marks: %w", err)
	}
	defer rows.Close()
	out := map[int64]TableMark{}
	for rows.Next() {
		var id, lsn, at int64
		var node sql.NullInt64
		var desc sql.NullString
		if err := rows.Scan(&id, &node, &desc, &lsn, &at); err != nil {
			return nil, fmt.Errorf("catalog table marks: %w", err)
		}
		m := TableMark{LastChangeLSN: uint64(lsn)}
		if node.Valid {
			if m.Description, err = decodeDescription(id, node.Int64, desc.String); err != nil {
				return nil, err
			}
		}
		if at != 0 {
			m.LastChangeTime = FromMicros(at)
		}
		out[id] = m
	}
	return out, rows.Err()
}

func timeMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return Micros(t)
}
