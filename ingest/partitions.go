package ingest

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/catalog"
	"lbt/schema"
)

// The stream carries no partition DDL: an ATTACH PARTITION, a DETACH, a
// CREATE TABLE ... PARTITION OF reach it at most as a Relation message at
// the partition's next change, and a table attached with rows brings none
// of them. So the archiver looks at the source's partition trees itself and
// records what it saw in the catalog (catalog.PartitionTree): at start, at
// a Relation message of a table in a tree or new to it, at an lbt.ddl
// message, and every StatusInterval while trees exist. Restore combines a
// partitioned table's leaves with the tree it had at the target, and
// refuses a target between two looks that saw different trees, unless a
// captured DDL pins the change.
//
// Each partition is recorded with the transaction that attached it (the
// xmin of its pg_inherits row), so that a partition detached and attached
// again between two looks makes them differ too.
//
// A look is exact at its LSN (source.LookPartitions says how); a look
// that cannot lock the trees now is retried.

// partitionWatch is the archiver's state of the looks.
type partitionWatch struct {
	started bool
	roots   map[uint32]bool // trees the catalog knows: alive at the last look
	members map[uint32]bool // every table of a tree at the last look
	due     bool
	last    time.Time // last look, or last failed attempt
	failed  int       // looks failed in a row
	noLook  bool      // the server cannot be looked at (older than 12): looks are off
	version int       // server_version_num
}

// noteRelation asks for a look when a Relation message comes for a table
// of a tree (an ATTACH or DETACH changes its definition), or for a table
// the archiver has not seen (a new partition).
func (w *partitionWatch) noteRelation(oid uint32, known bool) {
	if w.members[oid] || !known {
		w.due = true
	}
}

// noteMessage asks for a look after a captured DDL command.
func (w *partitionWatch) noteMessage(prefix string) {
	if prefix == ddlPrefix {
		w.due = true
	}
}

// lookDue says whether a look should run now.
func (w *partitionWatch) lookDue(now time.Time, interval time.Duration) bool {
	if w.noLook {
		return false
	}
	if w.failed > 0 {
		// Retried soon, not in a tight loop.
		return now.Sub(w.last) >= time.Second
	}
	if !w.started || w.due {
		return true
	}
	return len(w.members) > 0 && now.Sub(w.last) >= interval
}

// maybeLookPartitions looks at the trees when a look is due. It runs
// between transactions. A look that fails is logged and retried: the
// trees only matter to restores of partitioned tables, which refuse what
// the looks do not cover.
func (a *archiver) maybeLookPartitions() error {
	now := time.Now()
	if a.tx.active || !a.parts.lookDue(now, a.opts.StatusInterval) {
		return nil
	}
	a.parts.last = now
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	err := a.lookPartitions(ctx)
	if err == nil {
		a.parts.due, a.parts.failed, a.parts.started = false, 0, true
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		a.log.Warn("cannot look at the partition trees: restores of partitioned tables are refused; grant the role UPDATE on the partitioned tables, or run lbt backup as a superuser", "error", err)
		a.parts.noLook = true
		return nil
	}
	if a.ctx.Err() != nil {
		return a.ctx.Err()
	}
	a.parts.failed++
	if a.parts.failed == 30 {
		a.log.Warn("partition trees not looked at for 30 attempts; retrying", "error", err)
	} else {
		a.log.Debug("partition look failed; retrying", "error", err)
	}
	return nil
}

// lookPartitions reads every partition tree of the source under the lock
// described above and records it.
func (a *archiver) lookPartitions(ctx context.Context) error {
	if !a.parts.started {
		var err error
		if a.parts.version, err = a.lookup.ServerVersion(ctx); err != nil {
			return err
		}
		if a.parts.version < 120000 {
			a.log.Info("partition trees are not followed on PostgreSQL before 12 (no pg_partition_tree): restores of partitioned tables are refused")
			a.parts.noLook = true
			return nil
		}
		w, err := a.catalogTx()
		if err != nil {
			return err
		}
		if a.parts.roots, err = w.PartitionRoots(); err != nil {
			return err
		}
	}
	look, err := a.lookup.LookPartitions(ctx, a.parts.version, a.opts.Publication)
	if err != nil {
		return err
	}
	lsn, viaRoot := pglogrepl.LSN(look.LSN), look.ViaRoot
	trees := make(map[uint32][]catalog.PartitionNode, len(look.Trees))
	for root, nodes := range look.Trees {
		for _, n := range nodes {
			trees[root] = append(trees[root], catalog.PartitionNode(n))
		}
	}

	w, err := a.catalogTx()
	if err != nil {
		return err
	}
	at := time.Now()
	members := map[uint32]bool{}
	for root, nodes := range trees {
		if err := w.AddPartitionLook(root, uint64(lsn), at, viaRoot, nodes); err != nil {
			return err
		}
		if !a.parts.roots[root] {
			for _, n := range nodes {
				if n.OID != root {
					continue
				}
				name := schema.QuoteIdent(n.Schema) + "." + schema.QuoteIdent(n.Name)
				a.log.Info("following partition tree", "table", name, "partitions", len(nodes)-1, "lsn", lsn, "publish_via_partition_root", viaRoot)
				if viaRoot {
					// Measured on PostgreSQL 15: nothing at all reaches the
					// stream, not even an empty transaction.
					a.log.Warn("the publication publishes this tree via its root: PostgreSQL does not publish a TRUNCATE of one partition alone, and restores of the root cannot see one; publish the partitions (publish_via_partition_root = false) instead", "table", name, "publication", a.opts.Publication)
				}
			}
		}
		a.parts.roots[root] = true
		for _, n := range nodes {
			members[n.OID] = true
		}
	}
	for root, alive := range a.parts.roots {
		if _, ok := trees[root]; ok || !alive {
			continue
		}
		// Gone: the tree was dropped (or its root attached to another tree).
		if err := w.AddPartitionLook(root, uint64(lsn), at, viaRoot, nil); err != nil {
			return err
		}
		a.parts.roots[root] = false
	}
	a.parts.members = members
	// The rows commit with the next flush; make sure there is one.
	a.markPending(a.pending)
	return nil
}
