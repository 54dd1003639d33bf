package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// touchedRows are the rows of table_gap, table_storage, rel_life and
// partition_tree that the writer's transaction added or changed, which its
// metadata blob must carry (docs/FORMAT.md, "Metadata blobs").
type touchedRows struct {
	gaps, storage, lives, partitions []int64 // row ids; table ids for storage and lives
	extended                         []int64 // partition runs only extended (to_lsn moved on)
}

func (t *touchedRows) add(list *[]int64, id int64) {
	if !slices.Contains(*list, id) {
		*list = append(*list, id)
	}
}

// TableRecords appends to m the rows of table_gap, table_storage, rel_life
// and partition_tree that the transaction added or changed, as they are
// now, and marks m as carrying them; except the partition runs that looks
// only extended, whose ids it returns: the caller records where they got
// to (RunEnds) now and then. The records are taken: the next call appends
// only what changes after this one.
func (w *Writer) TableRecords(m *Metadata) (extended []int64, err error) {
	m.Carries = true
	t := w.touched
	w.touched = touchedRows{}
	if w.tx == nil {
		return nil, nil
	}
	for _, id := range t.extended {
		if !slices.Contains(t.partitions, id) {
			extended = append(extended, id)
		}
	}
	return extended, w.tableRecords(m, t)
}

// RunEnds appends to m where the partition runs ids have got to.
func (w *Writer) RunEnds(ids []int64, m *Metadata) error {
	if len(ids) == 0 {
		return nil
	}
	var q querier = w.db
	if w.tx != nil {
		q = w.tx
	}
	rows, err := q.QueryContext(w.ctx, `SELECT id, to_lsn, to_time FROM partition_tree WHERE id IN `+idList(ids)+` ORDER BY id`)
	if err != nil {
		return fmt.Errorf("catalog partition trees: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e MetaRunEnd
		var to int64
		if err := rows.Scan(&e.ID, &to, &e.ToTime); err != nil {
			return fmt.Errorf("catalog partition trees: %w", err)
		}
		e.ToLSN = uint64(to)
		m.RunEnds = append(m.RunEnds, e)
	}
	return rows.Err()
}

func (w *Writer) tableRecords(m *Metadata, t touchedRows) error {
	var err error
	if len(t.gaps) > 0 {
		if m.Gaps, err = readGapRecords(w.ctx, w.tx, `WHERE id IN `+idList(t.gaps), m.Gaps); err != nil {
			return err
		}
	}
	if len(t.storage) > 0 {
		if m.Storage, err = readStorageRecords(w.ctx, w.tx, `WHERE table_id IN `+idList(t.storage), m.Storage); err != nil {
			return err
		}
	}
	if len(t.lives) > 0 {
		if m.Lives, err = readLifeRecords(w.ctx, w.tx, `WHERE table_id IN `+idList(t.lives), m.Lives); err != nil {
			return err
		}
	}
	if len(t.partitions) > 0 {
		m.Partitions, err = readPartitionRecords(w.ctx, w.tx, `WHERE id IN `+idList(t.partitions), m.Partitions)
	}
	return err
}

// AllTableRecords appends every row of the four tables: a purge's
// rewritten segment carries them all, in place of those of the segments it
// replaces.
func (c *Catalog) AllTableRecords(ctx context.Context, m *Metadata) error {
	m.Carries = true
	var err error
	if m.Gaps, err = readGapRecords(ctx, c.db, ``, m.Gaps); err != nil {
		return err
	}
	if m.Storage, err = readStorageRecords(ctx, c.db, ``, m.Storage); err != nil {
		return err
	}
	if m.Lives, err = readLifeRecords(ctx, c.db, ``, m.Lives); err != nil {
		return err
	}
	m.Partitions, err = readPartitionRecords(ctx, c.db, ``, m.Partitions)
	return err
}

// idList is an SQL list of ids: integers only, so safe to inline.
func idList(ids []int64) string {
	b := []byte("(")
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%d", id)
	}
	return string(append(b, ')'))
}

func readGapRecords(ctx context.Context, q querier, where string, out []MetaGap) ([]MetaGap, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, table_id, from_lsn, from_time, seen_lsn, reason FROM table_gap `+where+` ORDER BY id`)
	if err != nil {
		return out, fmt.Errorf("catalog inexact spans: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var g MetaGap
		var from, seen int64
		if err := rows.Scan(&g.ID, &g.TableID, &from, &g.FromTime, &seen, &g.Reason); err != nil {
			return out, fmt.Errorf("catalog inexact spans: %w", err)
		}
		g.FromLSN, g.SeenLSN = uint64(from), uint64(seen)
		out = append(out, g)
	}
	return out, rows.Err()
}

func readStorageRecords(ctx context.Context, q querier, where string, out []MetaStorage) ([]MetaStorage, error) {
	rows, err := q.QueryContext(ctx, `SELECT table_id, relfilenode, description FROM table_storage `+where+` ORDER BY table_id`)
	if err != nil {
		return out, fmt.Errorf("catalog table storage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s MetaStorage
		var node int64
		if err := rows.Scan(&s.TableID, &node, &s.Description); err != nil {
			return out, fmt.Errorf("catalog table storage: %w", err)
		}
		s.Relfilenode = uint32(node)
		out = append(out, s)
	}
	return out, rows.Err()
}

func readLifeRecords(ctx context.Context, q querier, where string, out []MetaLife) ([]MetaLife, error) {
	rows, err := q.QueryContext(ctx, `SELECT table_id, created_lsn, created_at, created_exact, dropped_lsn, dropped_at, alive_lsn, alive_at, drop_exact
		FROM rel_life `+where+` ORDER BY table_id`)
	if err != nil {
		return out, fmt.Errorf("catalog table lives: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var l MetaLife
		var cl, ca, dl, da, al, aa sql.NullInt64
		if err := rows.Scan(&l.TableID, &cl, &ca, &l.CreatedExact, &dl, &da, &al, &aa, &l.DropExact); err != nil {
			return out, fmt.Errorf("catalog table lives: %w", err)
		}
		// The columns are set in two groups (SetTableCreated,
		// SetTableDropped): a group is set when its LSN is.
		l.Created, l.CreatedLSN, l.CreatedAt = cl.Valid, uint64(cl.Int64), ca.Int64
		l.Dropped, l.DroppedLSN, l.DroppedAt = dl.Valid, uint64(dl.Int64), da.Int64
		l.AliveLSN, l.AliveAt = uint64(al.Int64), aa.Int64
		out = append(out, l)
	}
	return out, rows.Err()
}

func readPartitionRecords(ctx context.Context, q querier, where string, out []MetaPartition) ([]MetaPartition, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, root_oid, from_lsn, to_lsn, from_time, to_time, via_root, nodes FROM partition_tree `+where+` ORDER BY id`)
	if err != nil {
		return out, fmt.Errorf("catalog partition trees: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p MetaPartition
		var root, from, to int64
		if err := rows.Scan(&p.ID, &root, &from, &to, &p.FromTime, &p.ToTime, &p.ViaRoot, &p.Nodes); err != nil {
			return out, fmt.Errorf("catalog partition trees: %w", err)
		}
		p.Root, p.FromLSN, p.ToLSN = uint32(root), uint64(from), uint64(to)
		out = append(out, p)
	}
	return out, rows.Err()
}
