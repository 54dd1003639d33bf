package source

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// PartitionNode is a table of a partition tree as a look saw it. It has
// catalog.PartitionNode's fields, which records it.
type PartitionNode struct {
	OID       uint32
	Parent    uint32 // 0 for the root
	Schema    string
	Name      string
	Bound     string // pg_get_expr(relpartbound), "" for the root
	Leaf      bool
	Attach    string // xmin of its pg_inherits row: the transaction that attached it
	Detaching bool   // DETACH PARTITION CONCURRENTLY has begun
}

// PartitionLook is every partition tree of the source at one WAL
// position.
type PartitionLook struct {
	LSN     uint64
	ViaRoot bool                       // the publication publishes via the root
	Trees   map[uint32][]PartitionNode // by the OID of the root
}

// LookPartitions reads every partition tree of the source exactly at one
// LSN: it holds SHARE UPDATE EXCLUSIVE on every partitioned table while it
// reads pg_current_wal_lsn() and the trees. ATTACH, DETACH, CREATE ...
// PARTITION OF and DROP of a partition all lock the parent at least that
// strongly until after they are visible, so none is half done during the
// look: every one that committed before the LSN is in the trees read, and
// none after it. The lock is taken with NOWAIT and does not conflict with writes: a
// look that cannot have it now fails, and is retried by the caller, as is
// one during which a partitioned table was created or dropped.
// serverVersion is server_version_num, 120000 or more
// (pg_partition_tree).
func LookPartitions(ctx context.Context, conn *pgx.Conn, serverVersion int, publication string) (PartitionLook, error) {
	look := PartitionLook{Trees: map[uint32][]PartitionNode{}}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return look, fmt.Errorf("partition look: %w", err)
	}
	defer tx.Rollback(context.Background())
	rows, err := tx.Query(ctx, `SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p' AND c.relpersistence = 'p' ORDER BY c.oid`)
	if err != nil {
		return look, fmt.Errorf("partition look: list partitioned tables: %w", err)
	}
	var locked []uint32
	var names []string
	for rows.Next() {
		var oid uint32
		var name string
		if err := rows.Scan(&oid, &name); err != nil {
			rows.Close()
			return look, fmt.Errorf("partition look: %w", err)
		}
		locked = append(locked, oid)
		names = append(names, "ONLY "+name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return look, fmt.Errorf("partition look: %w", err)
	}
	if len(names) > 0 {
		if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(names, ", ")+` IN SHARE UPDATE EXCLUSIVE MODE NOWAIT`); err != nil {
			return look, fmt.Errorf("partition look: lock the partitioned tables: %w", err)
		}
	}
	var lsnText string
	if err := tx.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsnText); err != nil {
		return look, fmt.Errorf("partition look: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(lsnText)
	if err != nil {
		return look, fmt.Errorf("partition look: %w", err)
	}
	look.LSN = uint64(lsn)
	if serverVersion >= 130000 { // publish_via_partition_root is new in 13
		err := tx.QueryRow(ctx, `SELECT coalesce((SELECT pubviaroot FROM pg_publication WHERE pubname = $1), false)`, publication).Scan(&look.ViaRoot)
		if err != nil {
			return look, fmt.Errorf("partition look: publication %s: %w", publication, err)
		}
	}
	detaching := "false" // inhdetachpending is new in 14
	if serverVersion >= 140000 {
		detaching = "coalesce((SELECT i.inhdetachpending FROM pg_inherits i WHERE i.inhrelid = t.relid AND i.inhparent = t.parentrelid), false)"
	}
	rows, err = tx.Query(ctx, `SELECT r.oid, t.relid::oid, coalesce(t.parentrelid::oid, 0), t.isleaf, c.relkind = 'p', n.nspname, c.relname,
			coalesce(pg_get_expr(c.relpartbound, c.oid), ''),
			coalesce((SELECT i.xmin::text FROM pg_inherits i WHERE i.inhrelid = t.relid AND i.inhparent = t.parentrelid), ''),
			`+detaching+`
		FROM pg_class r
		CROSS JOIN LATERAL pg_partition_tree(r.oid) t
		JOIN pg_class c ON c.oid = t.relid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE r.relkind = 'p' AND r.relpersistence = 'p' AND NOT r.relispartition
		ORDER BY r.oid, t.relid`)
	if err != nil {
		return look, fmt.Errorf("partition look: read the trees: %w", err)
	}
	var seen []uint32 // partitioned tables in the trees
	for rows.Next() {
		var root uint32
		var n PartitionNode
		var partitioned bool
		if err := rows.Scan(&root, &n.OID, &n.Parent, &n.Leaf, &partitioned, &n.Schema, &n.Name, &n.Bound, &n.Attach, &n.Detaching); err != nil {
			rows.Close()
			return look, fmt.Errorf("partition look: %w", err)
		}
		look.Trees[root] = append(look.Trees[root], n)
		if partitioned {
			seen = append(seen, n.OID)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return look, fmt.Errorf("partition look: %w", err)
	}
	slices.Sort(seen)
	if !slices.Equal(seen, locked) {
		// A partitioned table was created or dropped between the list and
		// the lock: this look may not be exact. The next one is.
		return look, errors.New("partition look: the partitioned tables changed during the look")
	}
	if err := tx.Commit(ctx); err != nil {
		return look, fmt.Errorf("partition look: %w", err)
	}
	return look, nil
}
