package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
)

// rebuiltTableRows gathers the records of table_gap, table_storage,
// rel_life and partition_tree from the metadata blobs. Each record is its
// row's whole content after a commit; the segments are read in id order,
// which is not always the order the records were written in (a purge's
// rewritten segment, with a newer id, holds the rows as they were at the
// purge), so rows are merged the way they only ever change: a span is
// written once, a run of looks only grows, a life only learns more.
type rebuiltTableRows struct {
	gaps       map[int64]MetaGap
	storage    map[int64]MetaStorage
	lives      map[int64]MetaLife
	partitions map[int64]MetaPartition
	runEnds    map[int64]MetaRunEnd
	// blind is, for each table with blobs in a commit whose metadata does
	// not carry these rows, the last commit LSN of those blobs.
	blind map[int64]uint64
}

func (t *rebuiltTableRows) init() {
	if t.gaps == nil {
		t.gaps, t.storage, t.lives = map[int64]MetaGap{}, map[int64]MetaStorage{}, map[int64]MetaLife{}
		t.partitions, t.runEnds, t.blind = map[int64]MetaPartition{}, map[int64]MetaRunEnd{}, map[int64]uint64{}
	}
}

func (t *rebuiltTableRows) uncarried(tableID int64, lastLSN uint64) {
	t.init()
	t.blind[tableID] = max(t.blind[tableID], lastLSN)
}

// take merges the records of one metadata blob.
func (t *rebuiltTableRows) take(m *Metadata) {
	t.init()
	for _, g := range m.Gaps {
		if _, ok := t.gaps[g.ID]; !ok {
			t.gaps[g.ID] = g
		}
	}
	for _, s := range m.Storage {
		// The newest description read is the one that matters, and a
		// stale one only makes the daemon's next look record a span.
		t.storage[s.TableID] = s
	}
	for _, l := range m.Lives {
		t.lives[l.TableID] = mergeLife(t.lives[l.TableID], l)
	}
	for _, p := range m.Partitions {
		if old, ok := t.partitions[p.ID]; !ok || p.ToLSN >= old.ToLSN {
			t.partitions[p.ID] = p
		}
	}
	for _, e := range m.RunEnds {
		if old, ok := t.runEnds[e.ID]; !ok || e.ToLSN >= old.ToLSN {
			t.runEnds[e.ID] = e
		}
	}
}

// partition is a run as rebuilt: its record, extended to its furthest
// run end. A run end without its record (lost with a damaged segment)
// gives no run.
func (t *rebuiltTableRows) partition(id int64) MetaPartition {
	p := t.partitions[id]
	if e, ok := t.runEnds[id]; ok && e.ToLSN >= p.ToLSN {
		p.ToLSN, p.ToTime = e.ToLSN, e.ToTime
	}
	return p
}

// mergeLife adds what a later record of a rel_life row says, as
// SetTableCreated and SetTableDropped change the row: an exact creation
// is not replaced by an inexact one, a drop only by an exact drop.
func mergeLife(old, l MetaLife) MetaLife {
	if old.TableID == 0 {
		return l
	}
	if l.Created && !(old.Created && old.CreatedExact && !l.CreatedExact) {
		old.Created, old.CreatedLSN, old.CreatedAt, old.CreatedExact = true, l.CreatedLSN, l.CreatedAt, l.CreatedExact
	}
	if l.Dropped && (!old.Dropped || l.DropExact && !old.DropExact) {
		old.Dropped, old.DroppedLSN, old.DroppedAt, old.DropExact = true, l.DroppedLSN, l.DroppedAt, l.DropExact
		old.AliveLSN, old.AliveAt = l.AliveLSN, l.AliveAt
	}
	return old
}

// ReasonUnknownSpans is the reason of the span a rebuild gives a table
// whose history has commits whose metadata does not record inexact spans.
const ReasonUnknownSpans = "catalog rebuilt from metadata that does not record inexact spans"

// writeTableRows writes the gathered rows into the new catalog. firsts are
// the tables' first LSNs; paths the basebackups, by table and LSN.
func (r *rebuilder) writeTableRows(ctx context.Context, firsts map[int64]uint64, paths []string) error {
	t := &r.tableRows
	t.init()
	// A table with history whose spans were not recorded may have had one
	// anywhere: every moment from its first LSN up to its first
	// basebackup after that history is refused rather than restored
	// perhaps wrongly.
	nextID := int64(0)
	for id := range t.gaps {
		nextID = max(nextID, id)
	}
	blind := make([]int64, 0, len(t.blind))
	for id := range t.blind {
		blind = append(blind, id)
	}
	slices.Sort(blind)
	for _, id := range blind {
		nextID++
		t.gaps[nextID] = MetaGap{ID: nextID, TableID: id, FromLSN: firsts[id], SeenLSN: t.blind[id], Reason: ReasonUnknownSpans}
		r.warn("table %d: its history up to %s was written without a record of inexact spans: restores up to its next basebackup after it are refused",
			id, FormatLSN(t.blind[id]))
	}

	gapIDs := make([]int64, 0, len(t.gaps))
	for id := range t.gaps {
		gapIDs = append(gapIDs, id)
	}
	slices.Sort(gapIDs)
	ins := newBatchInsert("table_gap", "id, table_id, from_lsn, from_time, seen_lsn, to_lsn, to_time, reason", 8, 64, "")
	for _, id := range gapIDs {
		g := t.gaps[id]
		// closeTableGaps closed a span with the first basebackup
		// registered after it whose consistent point is after the change;
		// the sidecars give the earliest such one. A span whose closing
		// basebackup is gone stays open, or closes later: more is refused,
		// never less.
		var to, toTime any
		for _, p := range paths {
			if b := r.bases[p]; b.TableID == g.TableID && b.LSN > g.SeenLSN {
				to, toTime = int64(b.LSN), Micros(b.FinishedAt)
				break
			}
		}
		ins.add(g.ID, g.TableID, int64(g.FromLSN), g.FromTime, int64(g.SeenLSN), to, toTime, g.Reason)
	}
	if err := ins.flush(ctx, r.tx); err != nil {
		return err
	}

	// table_storage: a table registered by a basebackup has its row from
	// the basebackup's sidecar, as registerTable wrote it.
	for _, p := range paths {
		b, tbl := r.bases[p], r.baseTables[p]
		if _, ok := t.storage[b.TableID]; ok || tbl.Relfilenode == 0 {
			continue
		}
		desc, err := json.Marshal(b.Definition.Table)
		if err != nil {
			return fmt.Errorf("encode description of table %d: %w", b.TableID, err)
		}
		t.storage[b.TableID] = MetaStorage{TableID: b.TableID, Relfilenode: tbl.Relfilenode, Description: string(desc)}
	}
	ins = newBatchInsert("table_storage", "table_id, relfilenode, description", 3, 64, "")
	for _, id := range sortedKeys(t.storage) {
		s := t.storage[id]
		ins.add(s.TableID, int64(s.Relfilenode), s.Description)
	}
	if err := ins.flush(ctx, r.tx); err != nil {
		return err
	}

	ins = newBatchInsert("rel_life", "table_id, created_lsn, created_at, created_exact, dropped_lsn, dropped_at, alive_lsn, alive_at, drop_exact", 9, 64, "")
	for _, id := range sortedKeys(t.lives) {
		l := t.lives[id]
		var cl, ca, dl, da, al, aa any
		if l.Created {
			cl, ca = int64(l.CreatedLSN), l.CreatedAt
		}
		if l.Dropped {
			dl, da, al, aa = int64(l.DroppedLSN), l.DroppedAt, int64(l.AliveLSN), l.AliveAt
		}
		ins.add(l.TableID, cl, ca, l.CreatedExact, dl, da, al, aa, l.DropExact)
	}
	if err := ins.flush(ctx, r.tx); err != nil {
		return err
	}

	ins = newBatchInsert("partition_tree", "id, root_oid, from_lsn, to_lsn, from_time, to_time, via_root, nodes", 8, 64, "")
	for _, id := range sortedKeys(t.partitions) {
		p := t.partition(id)
		ins.add(p.ID, int64(p.Root), int64(p.FromLSN), int64(p.ToLSN), p.FromTime, p.ToTime, p.ViaRoot, p.Nodes)
	}
	return ins.flush(ctx, r.tx)
}

func sortedKeys[V any](m map[int64]V) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
