package catalog_test

import (
	"context"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/catalog/catalogtest"
	"lbt/schema"
)

// A commit's metadata carries the rows of inexact spans, table storage,
// table lives and partition trees that the commit added or changed, as
// they are after it, and only those.
func TestWriter_TableRecords(t *testing.T) {
	ctx := context.Background()
	c := catalogtest.New(t, t.TempDir())
	at := time.Unix(1_700_000_000, 0)
	nodes := []catalog.PartitionNode{{OID: 10, Schema: "public", Name: "m"}}

	w, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := w.AddTable(16384, 0x100)
	if err != nil {
		t.Fatal(err)
	}
	steps := []error{
		w.SetDescription(id, catalog.TableDescription{Relfilenode: 16390, Table: schema.Table{Schema: "public", Name: "t"}}),
		w.SetTableCreated(id, 0x100, at, false),
		w.SetTableCreated(id, 0x100, at, true),
		w.AddTableGap(catalog.TableGap{TableID: id, FromLSN: 0x180, SeenLSN: 0x200, Reason: "type change"}),
		w.AddPartitionLook(10, 0x200, at, false, nodes),
	}
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
	var m catalog.Metadata
	if ext, err := w.TableRecords(&m); err != nil || len(ext) != 0 {
		t.Fatalf("first commit: extended runs %v, error %v", ext, err)
	}
	if !m.Carries || len(m.Gaps) != 1 || len(m.Storage) != 1 || len(m.Lives) != 1 || len(m.Partitions) != 1 {
		t.Fatalf("first commit's records: %+v", m)
	}
	if g := m.Gaps[0]; g.TableID != id || g.FromLSN != 0x180 || g.SeenLSN != 0x200 || g.FromTime != 0 || g.Reason != "type change" {
		t.Errorf("span record %+v", g)
	}
	if s := m.Storage[0]; s.TableID != id || s.Relfilenode != 16390 {
		t.Errorf("storage record %+v", s)
	}
	if l := m.Lives[0]; !l.Created || !l.CreatedExact || l.CreatedLSN != 0x100 || l.CreatedAt != at.UnixMicro() || l.Dropped {
		t.Errorf("life record %+v", l)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	// The next commit: the same tree looked at again (its run grows) and
	// the table dropped. Nothing else is carried again.
	w, err = c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddPartitionLook(10, 0x300, at.Add(time.Minute), false, nodes); err != nil {
		t.Fatal(err)
	}
	if err := w.SetTableDropped(id, catalog.TableLife{DroppedLSN: 0x400, DroppedAt: at.Add(time.Hour), AliveLSN: 0x300, AliveAt: at.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	m = catalog.Metadata{}
	ext, err := w.TableRecords(&m)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Gaps) != 0 || len(m.Storage) != 0 || len(m.Lives) != 1 || len(m.Partitions) != 0 || len(ext) != 1 {
		t.Fatalf("second commit's records: %+v, extended runs %v", m, ext)
	}
	// The extended run is written as where it got to.
	if err := w.RunEnds(ext, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.RunEnds) != 1 || m.RunEnds[0].ToLSN != 0x300 || m.RunEnds[0].ToTime != at.Add(time.Minute).UnixMicro() {
		t.Errorf("run ends %+v", m.RunEnds)
	}
	if l := m.Lives[0]; !l.Created || !l.CreatedExact || !l.Dropped || l.DroppedLSN != 0x400 || l.AliveLSN != 0x300 || l.DropExact {
		t.Errorf("life record after the drop %+v", l)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	// A purge's rewritten segment carries them all.
	m = catalog.Metadata{}
	if err := c.AllTableRecords(ctx, &m); err != nil {
		t.Fatal(err)
	}
	if !m.Carries || len(m.Gaps) != 1 || len(m.Storage) != 1 || len(m.Lives) != 1 || len(m.Partitions) != 1 {
		t.Errorf("all records: %+v", m)
	}
}

// Looks that find the same tree extend its run; a changed tree, a change
// of publish_via_partition_root or a dropped tree begins a new one.
func TestCatalog_PartitionLooks(t *testing.T) {
	ctx := context.Background()
	c := catalogtest.New(t, t.TempDir())
	n := func(oid, parent uint32, name string) catalog.PartitionNode {
		return catalog.PartitionNode{OID: oid, Parent: parent, Schema: "public", Name: name, Leaf: parent != 0}
	}
	two := []catalog.PartitionNode{n(10, 0, "m"), n(12, 10, "m2"), n(11, 10, "m1")} // order does not matter
	three := append([]catalog.PartitionNode{n(13, 10, "m3")}, two...)
	at := time.Unix(1_700_000_000, 0)
	looks := []struct {
		lsn   uint64
		via   bool
		nodes []catalog.PartitionNode
	}{
		{100, false, two}, {150, false, []catalog.PartitionNode{n(11, 10, "m1"), n(10, 0, "m"), n(12, 10, "m2")}}, {200, false, two},
		{300, false, three}, {400, false, three},
		{500, true, three},
		{600, true, nil},
	}
	for i, l := range looks {
		w, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddPartitionLook(10, l.lsn, at.Add(time.Duration(i)*time.Second), l.via, l.nodes); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := c.Begin(ctx)
	if err := w.AddPartitionLook(10, 550, at, true, nil); err == nil {
		t.Error("a look older than the last one was accepted")
	}
	roots, err := w.PartitionRoots()
	if err != nil || len(roots) != 1 || roots[10] {
		t.Errorf("roots %v, %v: want root 10, gone", roots, err)
	}
	w.Rollback()

	runs, err := c.PartitionTrees(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		from, to uint64
		via      bool
		nodes    int
	}{{100, 200, false, 3}, {300, 400, false, 4}, {500, 500, true, 4}, {600, 600, true, 0}}
	if len(runs) != len(want) {
		t.Fatalf("%d runs, want %d: %+v", len(runs), len(want), runs)
	}
	for i, r := range runs {
		wr := want[i]
		if r.FromLSN != wr.from || r.ToLSN != wr.to || r.ViaRoot != wr.via || len(r.Nodes) != wr.nodes {
			t.Errorf("run %d: %d-%d via %t, %d nodes; want %d-%d via %t, %d nodes", i, r.FromLSN, r.ToLSN, r.ViaRoot, len(r.Nodes), wr.from, wr.to, wr.via, wr.nodes)
		}
	}
	if !runs[0].ToAt.Equal(at.Add(2 * time.Second)) {
		t.Errorf("first run ends at %v, want the third look's time", runs[0].ToAt)
	}
}
