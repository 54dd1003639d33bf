package catalog

import (
	"context"
	"fmt"
	"slices"
)

// RewriteDescriber collects what the blobs a purge copies into a new
// segment need described, so that the new segment is as self-describing
// as the ones it replaces (docs/FORMAT.md, "Metadata blobs").
type RewriteDescriber struct {
	blobs  []MetaBlob
	tables map[int64]bool
	marks  map[uint64]uint32
}

// NewRewriteDescriber starts describing a rewritten segment.
func NewRewriteDescriber() *RewriteDescriber {
	return &RewriteDescriber{tables: map[int64]bool{}, marks: map[uint64]uint32{}}
}

// Add notes a blob copied to offset, with its decompressed records.
func (d *RewriteDescriber) Add(b Blob, offset int64, records []byte) error {
	d.blobs = append(d.blobs, MetaBlob{Offset: offset, ID: b.ID})
	d.tables[b.TableID] = true
	r := NewRecordReader(records, b.Schema)
	for {
		c, ok, err := r.Next()
		if err != nil {
			return fmt.Errorf("blob %d: %w", b.ID, err)
		}
		if !ok {
			return nil
		}
		d.marks[c.CommitLSN] = c.Xid
	}
}

// Metadata returns the records of the rewritten segment's metadata blob,
// from the catalog: every schema version of the tables, the transactions
// of the blobs (those whose rows were purged marked so) with their
// messages, the epochs and the source; and every row of table_gap,
// table_storage, rel_life and partition_tree, since the segments it
// replaces may have held the only records of some.
func (d *RewriteDescriber) Metadata(ctx context.Context, c *Catalog) (Metadata, error) {
	m := Metadata{Rewrite: true, Blobs: d.blobs, Archive: &ArchiveRecord{}}
	if err := c.AllTableRecords(ctx, &m); err != nil {
		return m, err
	}
	var err error
	for key, dst := range map[string]*string{"system_identifier": &m.Archive.SystemID, "database": &m.Archive.Database,
		"server_version": &m.Archive.ServerVersion, "created_at": &m.Archive.CreatedAt} {
		if *dst, err = c.Meta(ctx, key); err != nil {
			return m, err
		}
	}
	if m.Epochs, err = c.EpochRecords(ctx); err != nil {
		return m, err
	}
	ids := make([]int64, 0, len(d.tables))
	for id := range d.tables {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		var oid, first int64
		if err := c.db.QueryRowContext(ctx, `SELECT oid, first_lsn FROM rel WHERE id = ?`, id).Scan(&oid, &first); err != nil {
			return m, fmt.Errorf("catalog table %d: %w", id, err)
		}
		versions, err := c.SchemaVersions(ctx, id)
		if err != nil {
			return m, err
		}
		for _, v := range versions {
			m.Schemas = append(m.Schemas, MetaSchema{SchemaVersion: v, OID: uint32(oid), RelFirstLSN: uint64(first)})
		}
	}
	lsns := make([]uint64, 0, len(d.marks))
	for lsn := range d.marks {
		lsns = append(lsns, lsn)
	}
	slices.Sort(lsns)
	for _, lsn := range lsns {
		tx, ok, err := c.TxAt(ctx, lsn)
		if err != nil {
			return m, err
		}
		if !ok {
			m.Txs = append(m.Txs, MetaTx{CommitLSN: lsn, EndLSN: lsn, Xid: d.marks[lsn], CommitTime: FromMicros(0), Purged: true})
			continue
		}
		m.Txs = append(m.Txs, MetaTx{CommitLSN: lsn, EndLSN: tx.EndLSN, Xid: tx.Xid, CommitTime: tx.CommitTime, Origin: tx.Origin})
		rows, err := c.db.QueryContext(ctx, `SELECT seq, prefix, content FROM tx_message WHERE commit_lsn = ? ORDER BY seq`, int64(lsn))
		if err != nil {
			return m, fmt.Errorf("catalog messages at %s: %w", FormatLSN(lsn), err)
		}
		for rows.Next() {
			msg := MetaMessage{CommitLSN: lsn}
			if err := rows.Scan(&msg.Seq, &msg.Prefix, &msg.Content); err != nil {
				rows.Close()
				return m, fmt.Errorf("catalog messages at %s: %w", FormatLSN(lsn), err)
			}
			m.Messages = append(m.Messages, msg)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return m, err
		}
	}
	return m, nil
}
