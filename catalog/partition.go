package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// PartitionNode is one table of a partition tree: the root, a partitioned
// table below it, or a leaf that holds rows.
type PartitionNode struct {
	OID    uint32 `json:"oid"`
	Parent uint32 `json:"parent,omitempty"` // 0 for the root
	Schema string `json:"schema"`
	Name   string `json:"name"`
	Bound  string `json:"bound,omitempty"` // pg_get_expr(relpartbound), "" for the root
	Leaf   bool   `json:"leaf,omitempty"`
	// Attach is the xmin of the partition's pg_inherits row: the
	// transaction that attached (or created) it. A partition detached and
	// attached again between two looks has another.
	Attach string `json:"attach,omitempty"`
	// Detaching marks a partition that DETACH PARTITION CONCURRENTLY has
	// begun to detach: queries of the parent no longer see it.
	Detaching bool `json:"detaching,omitempty"`
}

// PartitionTree is a run of looks at one tree that all found it the same:
// at every look from FromLSN to ToLSN (inclusive) the tree was Nodes. A
// tree that was dropped has a run without nodes. ViaRoot says that the
// publication published the tree's changes as the root's.
type PartitionTree struct {
	ID             int64
	Root           uint32
	FromLSN, ToLSN uint64
	FromAt, ToAt   time.Time
	ViaRoot        bool
	Nodes          []PartitionNode
}

// sameTree compares two looks at a tree. Nodes are kept sorted by OID.
func sameTree(a, b []PartitionNode) bool { return slices.Equal(a, b) }

// AddPartitionLook records one look at a tree, taken at lsn: it extends
// the tree's last run when the tree is the same, else begins a new run.
// Looks must be added in LSN order per tree.
func (w *Writer) AddPartitionLook(root uint32, lsn uint64, at time.Time, viaRoot bool, nodes []PartitionNode) error {
	if err := w.open(); err != nil {
		return err
	}
	nodes = slices.Clone(nodes)
	slices.SortFunc(nodes, func(a, b PartitionNode) int { return int(int64(a.OID) - int64(b.OID)) })
	var last PartitionTree
	var text string
	var fromLSN, toLSN int64
	var via bool
	err := w.tx.QueryRowContext(w.ctx, `SELECT id, from_lsn, to_lsn, via_root, nodes FROM partition_tree
		WHERE root_oid = ? ORDER BY from_lsn DESC, id DESC LIMIT 1`, int64(root)).Scan(&last.ID, &fromLSN, &toLSN, &via, &text)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("catalog partition tree %d: %w", root, err)
	default:
		if err := json.Unmarshal([]byte(text), &last.Nodes); err != nil {
			return fmt.Errorf("%w: partition tree %d: %v", ErrCorrupt, last.ID, err)
		}
		if uint64(toLSN) > lsn {
			return fmt.Errorf("catalog partition tree %d: look at %s is older than the last one at %s", root, FormatLSN(lsn), FormatLSN(uint64(toLSN)))
		}
		if via == viaRoot && sameTree(last.Nodes, nodes) {
			if _, err := w.tx.ExecContext(w.ctx, `UPDATE partition_tree SET to_lsn = ?, to_time = ? WHERE id = ?`,
				int64(lsn), Micros(at), last.ID); err != nil {
				return fmt.Errorf("catalog partition tree %d: %w", root, err)
			}
			w.touched.add(&w.touched.extended, last.ID)
			return nil
		}
	}
	if nodes == nil {
		nodes = []PartitionNode{}
	}
	b, err := json.Marshal(nodes)
	if err != nil {
		return fmt.Errorf("encode partition tree %d: %w", root, err)
	}
	res, err := w.tx.ExecContext(w.ctx, `INSERT INTO partition_tree (root_oid, from_lsn, to_lsn, from_time, to_time, via_root, nodes)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, int64(root), int64(lsn), int64(lsn), Micros(at), Micros(at), viaRoot, string(b))
	var id int64
	if err == nil {
		id, err = res.LastInsertId()
	}
	if err != nil {
		return fmt.Errorf("catalog partition tree %d: %w", root, err)
	}
	w.touched.add(&w.touched.partitions, id)
	return nil
}

// PartitionRoots lists the roots of the trees the archive has looked at,
// with whether the last look still found each.
func (w *Writer) PartitionRoots() (map[uint32]bool, error) {
	if err := w.open(); err != nil {
		return nil, err
	}
	rows, err := w.tx.QueryContext(w.ctx, `SELECT root_oid, nodes <> '[]' FROM partition_tree p
		WHERE id = (SELECT id FROM partition_tree q WHERE q.root_oid = p.root_oid ORDER BY from_lsn DESC, id DESC LIMIT 1)`)
	if err != nil {
		return nil, fmt.Errorf("catalog partition trees: %w", err)
	}
	defer rows.Close()
	out := map[uint32]bool{}
	for rows.Next() {
		var oid int64
		var alive bool
		if err := rows.Scan(&oid, &alive); err != nil {
			return nil, fmt.Errorf("catalog partition trees: %w", err)
		}
		out[uint32(oid)] = alive
	}
	return out, rows.Err()
}

// PartitionTrees returns every run of every tree, by root, oldest first.
func (c *Catalog) PartitionTrees(ctx context.Context) ([]PartitionTree, error) {
	return queryRows(ctx, c.db, "partition trees", func(row scanner) (PartitionTree, error) {
		var p PartitionTree
		var root, from, to, fromAt, toAt int64
		var text string
		if err := row.Scan(&p.ID, &root, &from, &to, &fromAt, &toAt, &p.ViaRoot, &text); err != nil {
			return p, err
		}
		if err := json.Unmarshal([]byte(text), &p.Nodes); err != nil {
			return p, fmt.Errorf("%w: partition tree %d: %v", ErrCorrupt, p.ID, err)
		}
		p.Root, p.FromLSN, p.ToLSN = uint32(root), uint64(from), uint64(to)
		p.FromAt, p.ToAt = FromMicros(fromAt), FromMicros(toAt)
		return p, nil
	}, `SELECT id, root_oid, from_lsn, to_lsn, from_time, to_time, via_root, nodes
		FROM partition_tree ORDER BY root_oid, from_lsn, id`)
}

// DDLMessageLSNs returns the commit LSNs in [lo, hi] of the transactions
// that carry an lbt.ddl message (lbt setup --capture-ddl) naming one of
// objects (qualified names as PostgreSQL's object identity writes them),
// or dropping anything: the capture records only what a DROP named, not
// what it dropped with CASCADE.
func (c *Catalog) DDLMessageLSNs(ctx context.Context, lo, hi uint64, objects map[string]bool) ([]uint64, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT commit_lsn, content FROM tx_message
		WHERE prefix = 'lbt.ddl' AND commit_lsn BETWEEN ? AND ? ORDER BY commit_lsn`, clampLSN(lo), clampLSN(hi))
	if err != nil {
		return nil, fmt.Errorf("catalog DDL messages: %w", err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var lsn int64
		var content []byte
		if err := rows.Scan(&lsn, &content); err != nil {
			return nil, fmt.Errorf("catalog DDL messages: %w", err)
		}
		var m struct {
			Tag    string `json:"tag"`
			Object string `json:"object"`
		}
		if json.Unmarshal(content, &m) != nil || !(objects[m.Object] || strings.HasPrefix(m.Tag, "DROP ")) {
			continue
		}
		if n := len(out); n == 0 || out[n-1] != uint64(lsn) {
			out = append(out, uint64(lsn))
		}
	}
	return out, rows.Err()
}
