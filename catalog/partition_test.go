package catalog_test

import (
	"context"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/catalog/catalogtest"
)

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
