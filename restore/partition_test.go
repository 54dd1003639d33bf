package restore

import (
	"errors"
	"strings"
	"testing"

	"lbt/catalog"
)

func node(oid, parent uint32, name string, leaf bool) catalog.PartitionNode {
	return catalog.PartitionNode{OID: oid, Parent: parent, Schema: "public", Name: name, Leaf: leaf}
}

func TestPartTreeAt(t *testing.T) {
	two := []catalog.PartitionNode{node(1, 0, "m", false), node(2, 1, "m1", true), node(3, 1, "m2", true)}
	three := append(append([]catalog.PartitionNode{}, two...), node(4, 1, "m3", true))
	// Looks: the two-leaf tree from 100 to 200, the three-leaf one from 300 to 400.
	tree := partTree{
		{ID: 1, Root: 1, FromLSN: 100, ToLSN: 200, Nodes: two},
		{ID: 2, Root: 1, FromLSN: 300, ToLSN: 400, Nodes: three},
	}
	noPins := func(lo, hi uint64, objects map[string]bool) ([]uint64, error) { return nil, nil }
	pinAt := func(lsns ...uint64) pinFunc {
		return func(lo, hi uint64, objects map[string]bool) ([]uint64, error) {
			if !objects["public.m"] || !objects["public.m3"] {
				t.Errorf("pins asked for %v, want the tables of both trees", objects)
			}
			var out []uint64
			for _, l := range lsns {
				if l >= lo && l <= hi {
					out = append(out, l)
				}
			}
			return out, nil
		}
	}
	cases := []struct {
		name   string
		upto   uint64
		pins   pinFunc
		want   int64  // run id, 0 for a refusal
		refuse string // part of the refusal
	}{
		{"before the first look", 98, noPins, 0, "first looked"},
		{"at the first look", 99, noPins, 1, ""},
		{"inside the first run", 150, noPins, 1, ""},
		{"at the first run's last look", 199, noPins, 1, ""},
		{"just after it, no capture", 200, noPins, 0, "changed between LSN 0/C8 and 0/12B"},
		{"in the gap, no capture", 250, noPins, 0, "up to LSN 0/C7"},
		{"at the second run's first look", 299, noPins, 2, ""},
		{"inside the second run", 350, noPins, 2, ""},
		{"after the last look", 400, noPins, 0, "last looked"},
		{"before a captured ATTACH", 249, pinAt(250), 1, ""},
		{"at a captured ATTACH", 250, pinAt(250), 2, ""},
		{"after a captured ATTACH", 260, pinAt(250), 2, ""},
		{"between two captured DDLs", 255, pinAt(250, 260), 0, "changed between LSN 0/FA and 0/104"},
		{"before two captured DDLs", 240, pinAt(250, 260), 1, ""},
		{"after two captured DDLs", 270, pinAt(250, 260), 2, ""},
		{"a captured DDL outside the gap does not count", 250, pinAt(150), 0, "cannot tell when"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := tree.at(c.upto, c.pins)
			if c.want == 0 {
				if err == nil || !errors.Is(err, ErrNotRestorable) || !strings.Contains(err.Error(), c.refuse) {
					t.Fatalf("at %d: got run %d, %v; want a refusal with %q", c.upto, got.ID, err, c.refuse)
				}
				return
			}
			if err != nil || got.ID != c.want {
				t.Fatalf("at %d: got run %d, %v; want run %d", c.upto, got.ID, err, c.want)
			}
		})
	}
}

func TestLeavesOf(t *testing.T) {
	r := catalog.PartitionTree{Nodes: []catalog.PartitionNode{
		node(1, 0, "m", false), node(2, 1, "m_2025", false), node(3, 2, "m_2025_b", true), node(4, 2, "m_2025_a", true),
		node(5, 1, "m_2026", true), node(6, 0, "other", true),
		{OID: 7, Parent: 1, Schema: "public", Name: "m_2027", Leaf: true, Detaching: true},
	}}
	names := func(ns []catalog.PartitionNode) string {
		var s []string
		for _, n := range ns {
			s = append(s, n.Name)
		}
		return strings.Join(s, ",")
	}
	for _, c := range []struct {
		oid  uint32
		want string
	}{{1, "m_2025_a,m_2025_b,m_2026"}, {2, "m_2025_a,m_2025_b"}, {5, "m_2026"}} {
		if got := names(leavesOf(r, c.oid)); got != c.want {
			t.Errorf("leaves of %d: %s, want %s", c.oid, got, c.want)
		}
	}
}
