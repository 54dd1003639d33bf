package basebackup

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"lbt/catalog"
	"lbt/schema"
	"lbt/source"
)

// notPublished explains why a table is not in the publication, with
// advice PostgreSQL accepts: ALTER PUBLICATION ... ADD TABLE is refused on
// a FOR ALL TABLES publication, which leaves out a partitioned table whose
// partitions it publishes, and a partition whose changes it publishes as
// its root's.
func notPublished(ctx context.Context, tx pgx.Tx, oid uint32, name, publication string) error {
	pub := schema.QuoteIdent(publication)
	p, err := source.TablePublishing(ctx, tx, oid, publication)
	if err != nil {
		return err
	}
	switch {
	case p.Partitioned && !p.ViaRoot:
		return fmt.Errorf("%w: %s is a partitioned table: publication %s publishes its partitions, each archived on its own; back up the partitions (lbt basebackup --table %s does, each under one snapshot)",
			ErrNotPublished, name, pub, name)
	case p.Root != "" && p.ViaRoot:
		return fmt.Errorf("%w: %s is a partition of %s, whose changes publication %s publishes as the root's (publish_via_partition_root): back up %s",
			ErrNotPublished, name, p.Root, pub, p.Root)
	case p.AllTables:
		return fmt.Errorf("%w: %s is not in publication %s FOR ALL TABLES (a temporary, unlogged or system table is never published)", ErrNotPublished, name, pub)
	}
	return fmt.Errorf("%w: %s is not in publication %s, so its changes are not archived; add it with ALTER PUBLICATION %s ADD TABLE %s",
		ErrNotPublished, name, pub, pub, name)
}

// ReasonPartitionTree is the reason of a basebackup of a partitioned table
// published via its root (publish_via_partition_root) after its tree
// changed: a partition attached with its rows, detached or dropped changes
// the root's rows without a change in the stream, so restores across the
// change are refused until the root has a basebackup after it.
const ReasonPartitionTree = "partition tree changed"

// treeChanges lists the roots of trees published via their root whose
// tree changed after their newest basebackup (by OID).
func treeChanges(ctx context.Context, cat *catalog.Catalog) (map[uint32]bool, error) {
	runs, err := cat.PartitionTrees(ctx)
	if err != nil {
		return nil, err
	}
	last := map[uint32]uint64{} // root -> first look that saw its latest change
	for i := 1; i < len(runs); i++ {
		prev, r := runs[i-1], runs[i]
		if prev.Root != r.Root || !r.ViaRoot {
			continue
		}
		if prev.ViaRoot != r.ViaRoot || !slices.EqualFunc(prev.Nodes, r.Nodes, func(a, b catalog.PartitionNode) bool {
			return a.OID == b.OID && a.Parent == b.Parent && a.Bound == b.Bound && a.Leaf == b.Leaf && a.Attach == b.Attach && a.Detaching == b.Detaching
		}) {
			last[r.Root] = r.FromLSN
		}
	}
	out := map[uint32]bool{}
	for root, lsn := range last {
		// A basebackup from the look on holds the changed tree.
		has, err := cat.HasBasebackupSince(ctx, root, lsn)
		if err != nil {
			return nil, err
		}
		out[root] = !has
	}
	return out, nil
}
