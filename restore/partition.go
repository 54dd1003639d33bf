package restore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"lbt/catalog"
	"lbt/schema"
)

// Partitioned tables. With the publication lbt creates (FOR ALL TABLES,
// without publish_via_partition_root) only the leaves of a partition tree
// reach the stream: each leaf has its own exact history, restorable alone.
// A partitioned table is restored by restoring, at the same target, every
// leaf that belonged to it then, and loading them all into one new plain
// table. Which leaves belonged to it comes from the daemon's looks at the
// tree (catalog.PartitionTree; ingest/partitions.go): a target covered by a
// run of looks that saw the same tree has that tree; a target between two
// looks that saw different trees is refused, unless exactly one captured
// DDL command on the tree (lbt setup --capture-ddl) lies between them,
// which then is the moment of the change.
//
// With publish_via_partition_root the stream carries the root's changes
// as the root's own, and the root is archived as one table; what the stream
// does not carry then is a partition attached with its rows, detached, or
// dropped. Such a restore is refused when the tree changed between the
// basebackup and the target (checkPartitionHistory).

// partTree is the runs of one root's tree, oldest first.
type partTree []catalog.PartitionTree

// nameOf writes a node's qualified name.
func nameOf(n catalog.PartitionNode) string {
	return schema.QuoteIdent(n.Schema) + "." + schema.QuoteIdent(n.Name)
}

// pinFunc returns the commit LSNs in [lo, hi] of captured DDL commands on
// any of the named tables.
type pinFunc func(lo, hi uint64, objects map[string]bool) ([]uint64, error)

// treeAt returns the tree at upto: its state right after the transactions
// that committed at or before upto. A look at LSN L holds what committed
// before L, so a run of looks from F to T covers the targets F-1 to T-1.
func (t partTree) at(upto uint64, pins pinFunc) (catalog.PartitionTree, error) {
	first, last := t[0], t[len(t)-1]
	root := rootName(t)
	if upto+1 < first.FromLSN {
		return catalog.PartitionTree{}, fmt.Errorf("%w: lbt first looked at the partition tree of %s at %s (LSN %s) and cannot say which partitions it had before",
			ErrNotRestorable, root, formatTime(first.FromAt), catalog.FormatLSN(first.FromLSN))
	}
	if upto+1 > last.ToLSN {
		return catalog.PartitionTree{}, fmt.Errorf("%w: lbt last looked at the partition tree of %s at %s (LSN %s); lbt backup looks every status interval: try again in a moment, or give an earlier target",
			ErrNotRestorable, root, formatTime(last.ToAt), catalog.FormatLSN(last.ToLSN))
	}
	for i, r := range t {
		if upto+1 >= r.FromLSN && upto+1 <= r.ToLSN {
			return r, nil
		}
		if i+1 == len(t) {
			break
		}
		next := t[i+1]
		if upto+1 >= next.FromLSN {
			continue
		}
		// Between run i and the next: a change committed in [r.ToLSN, next.FromLSN).
		objects := map[string]bool{}
		for _, n := range slices.Concat(r.Nodes, next.Nodes) {
			objects[nameOf(n)] = true
		}
		lsns, err := pins(r.ToLSN, next.FromLSN-1, objects)
		if err != nil {
			return catalog.PartitionTree{}, err
		}
		switch {
		case len(lsns) > 0 && upto < lsns[0]:
			return r, nil
		case len(lsns) > 0 && upto >= lsns[len(lsns)-1]:
			return next, nil
		}
		// Not restorable: the targets lo to hi. The one before lo has run
		// i's tree, the one after hi the next run's.
		lo, hi := r.ToLSN, next.FromLSN-2
		if len(lsns) > 1 {
			lo, hi = lsns[0], lsns[len(lsns)-1]-1
		}
		return catalog.PartitionTree{}, fmt.Errorf("%w: the partition tree of %s changed between LSN %s and %s and the archive cannot tell when (lbt setup --capture-ddl records the moment); it can be restored up to LSN %s (lbt's look at %s) and from LSN %s (its look at %s)",
			ErrNotRestorable, root, catalog.FormatLSN(lo), catalog.FormatLSN(hi+1),
			catalog.FormatLSN(lo-1), formatTime(r.ToAt), catalog.FormatLSN(hi+1), formatTime(next.FromAt))
	}
	return catalog.PartitionTree{}, fmt.Errorf("%w: no look at the partition tree of %s covers LSN %s", ErrNotRestorable, root, catalog.FormatLSN(upto))
}

// rootName is the root's name at its last look that found it.
func rootName(t partTree) string {
	for i := len(t) - 1; i >= 0; i-- {
		for _, n := range t[i].Nodes {
			if n.OID == t[i].Root {
				return nameOf(n)
			}
		}
	}
	return fmt.Sprintf("(OID %d)", t[0].Root)
}

// node finds a partitioned table (not a leaf) by name in a tree.
func findNode(r catalog.PartitionTree, nsp, rel string) (catalog.PartitionNode, bool) {
	for _, n := range r.Nodes {
		if !n.Leaf && n.Schema == nsp && n.Name == rel {
			return n, true
		}
	}
	return catalog.PartitionNode{}, false
}

// leavesOf lists the leaves below a node, ordered by name.
func leavesOf(r catalog.PartitionTree, oid uint32) []catalog.PartitionNode {
	below := map[uint32]bool{oid: true}
	for changed := true; changed; {
		changed = false
		for _, n := range r.Nodes {
			// A partition being detached concurrently is no longer the parent's.
			if !below[n.OID] && below[n.Parent] && n.Parent != 0 && !n.Detaching {
				below[n.OID], changed = true, true
			}
		}
	}
	var out []catalog.PartitionNode
	for _, n := range r.Nodes {
		if n.Leaf && below[n.OID] {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b catalog.PartitionNode) int { return strings.Compare(nameOf(a), nameOf(b)) })
	return out
}

// partTarget is a partitioned table resolved at the target.
type partTarget struct {
	tree     catalog.PartitionTree
	node     catalog.PartitionNode
	upto     uint64
	at       time.Time
	target   string
	warnings []string
}

// trees groups the catalog's runs by root.
func trees(ctx context.Context, cat *catalog.Catalog) (map[uint32]partTree, error) {
	runs, err := cat.PartitionTrees(ctx)
	if err != nil {
		return nil, err
	}
	out := map[uint32]partTree{}
	for _, r := range runs {
		out[r.Root] = append(out[r.Root], r)
	}
	return out, nil
}

// resolvePartitioned finds the partitioned table the options name, at
// their target. It returns nil when no look ever saw a partitioned table
// of that name: then the name is an ordinary table's.
func resolvePartitioned(ctx context.Context, cat *catalog.Catalog, o *Options) (*partTarget, error) {
	nsp, rel, err := schema.ParseName(o.Table)
	if err != nil {
		return nil, err
	}
	all, err := trees(ctx, cat)
	if err != nil {
		return nil, err
	}
	var named []partTree // trees that had a partitioned table of that name at some look
	for _, t := range all {
		for _, r := range t {
			if _, ok := findNode(r, nsp, rel); ok {
				named = append(named, t)
				break
			}
		}
	}
	if len(named) == 0 {
		return nil, nil
	}
	p, err := newPlanner(ctx, cat)
	if err != nil {
		return nil, err
	}
	pt := &partTarget{}
	if pt.upto, pt.at, pt.target, err = p.resolveTarget(ctx, o); err != nil {
		return nil, err
	}
	latest := o.Until.IsZero() && o.LSN == 0 && o.Xid == 0
	if !o.Until.IsZero() {
		// As for one table (makePlan): what committed before a basebackup's
		// snapshot, or a look, committed before either finished.
		lsn, ok, err := p.cat.NewestBasebackupLSN(ctx, o.Until)
		if err != nil {
			return nil, err
		}
		if ok && lsn-1 > pt.upto && lsn-1 <= p.pos.EndLSN {
			pt.upto = lsn - 1
		}
		for _, t := range named {
			for _, r := range t {
				if !r.ToAt.After(o.Until) && r.ToLSN-1 > pt.upto && r.ToLSN-1 <= p.pos.EndLSN {
					pt.upto = r.ToLSN - 1
				}
			}
		}
	}
	pins := func(lo, hi uint64, objects map[string]bool) ([]uint64, error) {
		return cat.DDLMessageLSNs(ctx, lo, hi, objects)
	}
	var firstErr error
	for _, t := range named {
		if latest {
			// The latest state is the one the last look covers.
			if last := t[len(t)-1]; last.ToLSN > 0 && last.ToLSN-1 < pt.upto {
				if _, ok := findNode(last, nsp, rel); ok {
					pt.upto = last.ToLSN - 1
					pt.at = last.ToAt
					pt.target = "the latest state lbt looked at"
					pt.warnings = append(pt.warnings, fmt.Sprintf("restored as of lbt's last look at the partition tree, at %s (LSN %s)", formatTime(last.ToAt), catalog.FormatLSN(last.ToLSN)))
				}
			}
		}
		r, err := t.at(pt.upto, pins)
		if err != nil {
			firstErr = cmpOr(firstErr, err)
			continue
		}
		if n, ok := findNode(r, nsp, rel); ok {
			pt.tree, pt.node = r, n
			return pt, nil
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	var spans []string
	for _, t := range named {
		for _, r := range t {
			if _, ok := findNode(r, nsp, rel); ok {
				spans = append(spans, fmt.Sprintf("from %s to %s (LSN %s to %s)", formatTime(r.FromAt), formatTime(r.ToAt), catalog.FormatLSN(r.FromLSN-1), catalog.FormatLSN(r.ToLSN-1)))
			}
		}
	}
	return nil, fmt.Errorf("%w %s: no partitioned table was named %s then; lbt saw one of that name %s",
		ErrNotRestorable, pt.target, schema.QuoteIdent(nsp)+"."+schema.QuoteIdent(rel), strings.Join(spans, "; "))
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// leafTable finds the archive's table for a leaf at upto: the newest
// table with its OID that the archive knew by then.
func leafTable(ctx context.Context, cat *catalog.Catalog, refs []catalog.TableRef, oid uint32, upto uint64) (int64, []catalog.SchemaVersion, bool, error) {
	var id int64
	var versions []catalog.SchemaVersion
	for _, r := range refs {
		if r.OID != oid {
			continue
		}
		v, err := cat.SchemaVersions(ctx, r.ID)
		if err != nil {
			return 0, nil, false, err
		}
		if len(v) == 0 {
			continue
		}
		if id == 0 || v[0].FromLSN <= upto+1 {
			id, versions = r.ID, v
		}
	}
	return id, versions, id != 0, nil
}

// checkPartitionHistory refuses a restore of an archived table whose
// history the stream could not carry whole because of its partition tree:
//
//   - the root of a tree published via its root, when the tree changed
//     between the basebackup and the target (a partition attached with its
//     rows, detached or dropped: no change in the stream says so), or was
//     not published via its root for part of that time;
//   - a leaf, when its changes were published as its root's for part of
//     that time (its own history stops there).
func checkPartitionHistory(ctx context.Context, cat *catalog.Catalog, pl *plan) error {
	all, err := trees(ctx, cat)
	if err != nil || len(all) == 0 {
		return err
	}
	refs, err := cat.Tables(ctx)
	if err != nil {
		return err
	}
	var oid uint32
	for _, r := range refs {
		if r.ID == pl.tableID {
			oid = r.OID
		}
	}
	// The restore relies on the history from the basebackup to the target
	// (or, for a basebackup after the target, from the target to it).
	lo, hi := min(pl.bb.LSN, pl.upto+1), max(pl.bb.LSN, pl.upto+1)-1
	name := pl.source.QualifiedName()
	advice := fmt.Sprintf("take a basebackup (lbt basebackup --table %s) for later targets", name)
	for _, t := range all {
		isRoot, isMember := t[0].Root == oid, false
		for _, r := range t {
			for _, n := range r.Nodes {
				if n.OID == oid {
					isMember = true
				}
			}
		}
		if !isMember {
			continue
		}
		via := 0
		for _, r := range t {
			if r.ViaRoot {
				via++
			}
		}
		switch {
		case isRoot && via > 0:
			if hi+1 > t[len(t)-1].ToLSN || lo+1 < t[0].FromLSN {
				return fmt.Errorf("%w %s: %s is published via its partition root, and lbt's looks at its partition tree (LSN %s to %s) do not cover the history from its basebackup at %s to the target; %s",
					ErrNotRestorable, pl.target, name, catalog.FormatLSN(t[0].FromLSN), catalog.FormatLSN(t[len(t)-1].ToLSN), catalog.FormatLSN(pl.bb.LSN), advice)
			}
			for i, r := range t {
				if !r.ViaRoot && r.ToLSN >= lo && r.FromLSN <= hi+1 {
					return fmt.Errorf("%w %s: from LSN %s to %s the publication published the partitions of %s on their own, not via the root; %s",
						ErrNotRestorable, pl.target, catalog.FormatLSN(r.FromLSN), catalog.FormatLSN(r.ToLSN), name, advice)
				}
				if i+1 < len(t) && r.ToLSN <= hi && t[i+1].FromLSN > lo && (!sameNodes(r.Nodes, t[i+1].Nodes) || !t[i+1].ViaRoot) {
					return fmt.Errorf("%w %s: the partitions of %s changed between LSN %s and %s (at %s), after its basebackup at %s: a partition attached with its rows, detached or dropped changes it without a change in the stream; %s",
						ErrNotRestorable, pl.target, name, catalog.FormatLSN(r.ToLSN), catalog.FormatLSN(t[i+1].FromLSN), formatTime(t[i+1].FromAt), catalog.FormatLSN(pl.bb.LSN), advice)
				}
			}
		case !isRoot && via > 0:
			for i, r := range t {
				if !r.ViaRoot {
					continue
				}
				// The switch happened after the look before this run.
				from := r.FromLSN
				if i > 0 {
					from = t[i-1].ToLSN
				}
				to := r.ToLSN
				if i+1 < len(t) {
					to = t[i+1].FromLSN
				}
				if to >= lo && from <= hi+1 {
					return fmt.Errorf("%w %s: from about LSN %s to %s the publication published the changes of %s as its partition root's (publish_via_partition_root), so its own history has a gap there; restore the root %s",
						ErrNotRestorable, pl.target, catalog.FormatLSN(from), catalog.FormatLSN(to), name, rootName(t))
				}
			}
		}
	}
	return nil
}

// sameNodes compares two trees' tables and bounds (names aside: a rename
// changes no rows).
func sameNodes(a, b []catalog.PartitionNode) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].OID != b[i].OID || a[i].Parent != b[i].Parent || a[i].Bound != b[i].Bound || a[i].Leaf != b[i].Leaf || a[i].Attach != b[i].Attach || a[i].Detaching != b[i].Detaching {
			return false
		}
	}
	return true
}

// viaRootWarning goes with every restore of a root published via itself:
// PostgreSQL does not publish a TRUNCATE of one of its partitions alone
// (measured on 15), so neither the stream nor lbt knows of one.
const viaRootWarning = "the publication publishes this table's partitions via the root (publish_via_partition_root): PostgreSQL does not publish a TRUNCATE of one partition alone, so rows of one truncated since the basebackup would still be here"

// partitionedOptions checks what a partitioned table's restore can be, and
// for the root of a tree published via its root (archived as one table)
// turns the latest state into the one lbt's last look covers.
func partitionedOptions(pt *partTarget, o Options) (Options, error) {
	if pt.tree.ViaRoot && pt.node.OID != pt.tree.Root {
		return o, fmt.Errorf("%w %s: %s is a partitioned table inside the tree of %s, whose changes the publication publishes as the root's (publish_via_partition_root): restore the root",
			ErrNotRestorable, pt.target, nameOf(pt.node), rootName(partTree{pt.tree}))
	}
	if pt.tree.ViaRoot && o.Until.IsZero() && o.LSN == 0 && o.Xid == 0 {
		o.LSN = pt.upto
	}
	return o, nil
}
