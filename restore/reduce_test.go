package restore

import (
	"slices"
	"strings"
	"testing"

	"lbt/catalog"
)

const unch = "\x00unchanged"

// tup builds a tuple: nil is NULL, unch an unchanged TOAST value.
func tup(vals ...any) catalog.Tuple {
	var t catalog.Tuple
	for _, v := range vals {
		switch v := v.(type) {
		case nil:
			t = append(t, catalog.Value{Kind: catalog.ValueNull})
		case string:
			if v == unch {
				t = append(t, catalog.Value{Kind: catalog.ValueUnchanged})
			} else {
				t = append(t, catalog.Value{Kind: catalog.ValueText, Data: []byte(v)})
			}
		}
	}
	return t
}

func ins(lsn uint64, vals ...any) catalog.Change {
	return catalog.Change{Tag: catalog.TagInsert, CommitLSN: lsn, Schema: 1, New: tup(vals...)}
}

func upd(lsn uint64, oldKind byte, old catalog.Tuple, vals ...any) catalog.Change {
	return catalog.Change{Tag: catalog.TagUpdate, CommitLSN: lsn, Schema: 1, OldKind: oldKind, Old: old, New: tup(vals...)}
}

func del(lsn uint64, oldKind byte, old catalog.Tuple) catalog.Change {
	return catalog.Change{Tag: catalog.TagDelete, CommitLSN: lsn, Schema: 1, OldKind: oldKind, Old: old}
}

func trunc(lsn uint64) catalog.Change {
	return catalog.Change{Tag: catalog.TagTruncate, CommitLSN: lsn, Schema: 1}
}

func identity(n int) versionMap {
	m := versionMap{cols: make([]int, n), key: make([]bool, n)}
	for i := range m.cols {
		m.cols[i] = i
	}
	return m
}

// restoreRows reduces changes over base rows (COPY text lines) and returns
// the resulting rows as "a|b|NULL" lines, sorted.
//
// It runs them through the reducer in memory and again with spilling
// forced (after every change, and with few hash values, so that keys
// collide), and fails the test when the two differ.
func restoreRows(t *testing.T, width int, keyCols []int, maps map[int]versionMap, base []string, changes []catalog.Change) ([]string, error) {
	t.Helper()
	want, wantNulls, err := reduceRows(t, width, keyCols, maps, base, changes, spillConfig{})
	for _, sc := range spillConfigs {
		got, nulls, serr := reduceRows(t, width, keyCols, maps, base, changes, sc)
		switch {
		case (err == nil) != (serr == nil):
			t.Errorf("spilling (%+v): error %v, in memory: %v", sc, serr, err)
		case err == nil && !slices.Equal(got, want):
			t.Errorf("spilling (%+v): rows\n%s\nin memory\n%s", sc, strings.Join(got, "\n"), strings.Join(want, "\n"))
		case err == nil && !slices.Equal(nulls, wantNulls):
			t.Errorf("spilling (%+v): NULL columns %v, in memory %v", sc, nulls, wantNulls)
		}
	}
	return want, err
}

// spillConfig forces the spill path: a memory budget in bytes (0: none)
// and a mask on the hashes (0: all bits).
type spillConfig struct {
	budget int64
	mask   uint64
}

var spillConfigs = []spillConfig{{budget: 1}, {budget: 1, mask: 3}, {budget: 4 << 10}, {budget: 4 << 10, mask: 1}}

// reduceRows is restoreRows with one configuration.
func reduceRows(t *testing.T, width int, keyCols []int, maps map[int]versionMap, base []string, changes []catalog.Change, sc spillConfig) ([]string, []bool, error) {
	t.Helper()
	r := newReducer(width, keyCols, maps, 0)
	defer r.close()
	if sc.mask != 0 {
		r.mask = sc.mask
		r.reset()
	}
	if sc.budget > 0 {
		r.limitMemory(sc.budget, t.TempDir())
	}
	for _, c := range changes {
		if err := r.apply(c); err != nil {
			return nil, nil, err
		}
	}
	nulls, err := r.nullColumns()
	if err != nil {
		return nil, nil, err
	}
	if sc.budget == 1 && len(changes) > 0 && changes[len(changes)-1].Tag != catalog.TagTruncate && r.sp == nil {
		t.Fatal("a budget of 1 byte did not spill")
	}
	var out []string
	render := func(vals []value) string {
		var parts []string
		for _, v := range vals {
			if v.kind == catalog.ValueNull {
				parts = append(parts, "NULL")
			} else {
				parts = append(parts, string(v.data))
			}
		}
		return strings.Join(parts, "|")
	}
	if !r.truncated {
		def := make([]int, width)
		for i := range def {
			def[i] = i
		}
		m, err := r.merger(def)
		if err != nil {
			return nil, nil, err
		}
		for _, line := range base {
			fields := splitFields(nil, []byte(line))
			keep, err := m.keep(fields)
			if err != nil {
				return nil, nil, err
			}
			if keep {
				var vals []value
				for _, f := range fields {
					if isNullField(f) {
						vals = append(vals, value{kind: catalog.ValueNull})
					} else {
						u, _ := unescapeField(nil, f)
						vals = append(vals, value{kind: catalog.ValueText, data: u})
					}
				}
				out = append(out, render(vals))
			}
		}
		if err := m.finish(); err != nil {
			return nil, nil, err
		}
	}
	err = r.each(func(row []value) error {
		if hasUnchanged(row) {
			t.Errorf("row with an unresolved value: %v", showRow(row))
		}
		out = append(out, render(row))
		return nil
	})
	slices.Sort(out)
	return out, nulls, err
}

func TestReduce_Keyed(t *testing.T) {
	maps := map[int]versionMap{1: identity(3)}
	maps[1].key[0] = true
	key := func(id string) catalog.Tuple { return tup(id, nil, nil) }
	base := []string{"1\tone\tBIG1", "2\ttwo\tBIG2", "3\tthree\tBIG3", "4\tfour\t\\N", "5\tfive\tBIG5"}
	tests := []struct {
		name    string
		changes []catalog.Change
		want    []string
		err     string
	}{
		{"nothing", nil, []string{"1|one|BIG1", "2|two|BIG2", "3|three|BIG3", "4|four|NULL", "5|five|BIG5"}, ""},
		{
			name: "update, delete, insert",
			changes: []catalog.Change{
				upd(10, catalog.OldNone, nil, "1", "uno", unch),
				del(11, catalog.OldKey, key("2")),
				ins(12, "6", "six", nil),
				upd(13, catalog.OldNone, nil, "6", "seis", "x"),
			},
			want: []string{"1|uno|BIG1", "3|three|BIG3", "4|four|NULL", "5|five|BIG5", "6|seis|x"},
		},
		{
			name: "key change follows the row and its unchanged TOAST value",
			changes: []catalog.Change{
				upd(10, catalog.OldKey, key("3"), "30", "three", unch),
				upd(11, catalog.OldNone, nil, "30", "trente", unch),
				upd(12, catalog.OldKey, key("30"), "300", unch, unch),
			},
			want: []string{"1|one|BIG1", "2|two|BIG2", "300|trente|BIG3", "4|four|NULL", "5|five|BIG5"},
		},
		{
			name: "key swap through a free key",
			changes: []catalog.Change{
				upd(10, catalog.OldKey, key("1"), "9", "one", unch),
				upd(10, catalog.OldKey, key("2"), "1", "two", unch),
				upd(10, catalog.OldKey, key("9"), "2", "one", unch),
			},
			want: []string{"1|two|BIG2", "2|one|BIG1", "3|three|BIG3", "4|four|NULL", "5|five|BIG5"},
		},
		{
			name: "delete and insert again, key taken over",
			changes: []catalog.Change{
				del(10, catalog.OldKey, key("5")),
				upd(11, catalog.OldKey, key("4"), "5", "four", unch),
				ins(12, "4", "new four", "v"),
			},
			want: []string{"1|one|BIG1", "2|two|BIG2", "3|three|BIG3", "4|new four|v", "5|four|NULL"},
		},
		{
			name: "truncate drops the basebackup and what came before it",
			changes: []catalog.Change{
				upd(10, catalog.OldNone, nil, "1", "uno", unch),
				ins(10, "7", "seven", nil),
				trunc(11),
				ins(11, "8", "eight", nil),
				ins(12, "1", "one again", "z"),
			},
			want: []string{"1|one again|z", "8|eight|NULL"},
		},
		{
			name:    "delete of a row that is not there",
			changes: []catalog.Change{del(10, catalog.OldKey, key("99"))},
			err:     "not in the basebackup",
		},
		{
			name:    "update after the truncate of a row not there",
			changes: []catalog.Change{trunc(9), upd(10, catalog.OldNone, nil, "1", "x", unch)},
			err:     "not there after the TRUNCATE",
		},
		{
			name:    "unchanged TOAST value of a row not there",
			changes: []catalog.Change{upd(10, catalog.OldNone, nil, "99", "x", unch)},
			err:     "not in the basebackup",
		},
		{
			name:    "delete twice",
			changes: []catalog.Change{del(10, catalog.OldKey, key("1")), del(11, catalog.OldKey, key("1"))},
			err:     "already deleted",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := restoreRows(t, 3, []int{0}, maps, base, tt.changes)
			checkReduced(t, got, err, tt.want, tt.err)
		})
	}
}

// checkReduced checks what restoreRows returned: an error that contains
// wantErr when wantErr is set, else exactly the rows want.
func checkReduced(t *testing.T, got []string, err error, want []string, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error %v, want one with %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestReduce_FullIdentityWithKey(t *testing.T) {
	// REPLICA IDENTITY FULL with a primary key: old rows are whole, and
	// unchanged TOAST values come from them.
	maps := map[int]versionMap{1: identity(2)}
	got, err := restoreRows(t, 2, []int{0}, maps, []string{"1\tBIG"}, []catalog.Change{
		upd(10, catalog.OldFull, tup("1", "BIG"), "2", unch),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"2|BIG"}) {
		t.Errorf("rows %q", got)
	}
}

func TestReduce_Multiset(t *testing.T) {
	maps := map[int]versionMap{1: identity(2)}
	base := []string{"a\t1", "a\t1", "b\t2", "\\N\t3"}
	tests := []struct {
		name    string
		changes []catalog.Change
		want    []string
		err     string
	}{
		{
			name: "one of two duplicates deleted",
			changes: []catalog.Change{
				del(10, catalog.OldFull, tup("a", "1")),
				upd(11, catalog.OldFull, tup("b", "2"), "b", "5"),
				ins(12, "c", "3"), ins(12, "c", "3"),
				upd(13, catalog.OldFull, tup(nil, "3"), nil, "4"),
			},
			want: []string{"NULL|4", "a|1", "b|5", "c|3", "c|3"},
		},
		{
			name: "insert then delete leaves nothing",
			changes: []catalog.Change{
				ins(10, "d", "1"), del(11, catalog.OldFull, tup("d", "1")),
				del(12, catalog.OldFull, tup("a", "1")), del(12, catalog.OldFull, tup("a", "1")),
			},
			want: []string{"NULL|3", "b|2"},
		},
		{
			name:    "truncate",
			changes: []catalog.Change{ins(9, "x", "1"), trunc(10), ins(11, "y", "1"), ins(11, "y", "1")},
			want:    []string{"y|1", "y|1"},
		},
		{
			name:    "delete of a row not there",
			changes: []catalog.Change{del(10, catalog.OldFull, tup("zz", "1"))},
			err:     "not in the basebackup",
		},
		{
			name:    "old row without its values",
			changes: []catalog.Change{del(10, catalog.OldKey, tup("a", nil))},
			err:     "REPLICA IDENTITY FULL",
		},
		{
			name:    "more deletes than copies",
			changes: []catalog.Change{del(10, catalog.OldFull, tup("b", "2")), del(11, catalog.OldFull, tup("b", "2"))},
			err:     "not in the basebackup",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := restoreRows(t, 2, nil, maps, base, tt.changes)
			checkReduced(t, got, err, tt.want, tt.err)
		})
	}
}

func TestReduce_SchemaVersions(t *testing.T) {
	// Version 1 has (id, a); version 2 added b. Restored shape: version 2.
	maps := map[int]versionMap{
		1: {cols: []int{0, 1, -1}, key: []bool{true, false}},
		2: {cols: []int{0, 1, 2}, key: []bool{true, false, false}},
	}
	c1 := ins(10, "1", "x")
	c2 := upd(11, catalog.OldNone, nil, "1", unch, "b")
	c2.Schema = 2
	c3 := upd(12, catalog.OldNone, nil, "2", "y")
	c4 := catalog.Change{Tag: catalog.TagDelete, CommitLSN: 13, Schema: 2, OldKind: catalog.OldKey, Old: tup("3", nil, nil)}
	got, err := restoreRows(t, 3, []int{0}, maps, []string{"2\tbase\t\\N", "3\tthree\t\\N"}, []catalog.Change{c1, c2, c3, c4})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1|x|b", "2|y|NULL"}
	if !slices.Equal(got, want) {
		t.Errorf("rows %q, want %q", got, want)
	}
	c5 := c1
	c5.Schema = 7
	if _, err := restoreRows(t, 3, []int{0}, maps, nil, []catalog.Change{c5}); err == nil || !strings.Contains(err.Error(), "schema version 7") {
		t.Errorf("unknown schema version: %v", err)
	}
}

func TestReduce_Counts(t *testing.T) {
	r := newReducer(1, nil, map[int]versionMap{1: identity(1)}, 0)
	for _, c := range []catalog.Change{ins(1, "a"), ins(2, "b"), trunc(3), ins(3, "c"), ins(3, "d"), del(3, catalog.OldFull, tup("c")), ins(4, "e")} {
		if err := r.apply(c); err != nil {
			t.Fatal(err)
		}
	}
	if want := (counts{Inserts: 5, Deletes: 1, Truncates: 1}); r.total != want {
		t.Errorf("counts %+v, want %+v", r.total, want)
	}
	if r.truncLSN != 3 || r.truncIns != 2 || r.truncDel != 1 {
		t.Errorf("after the truncate: lsn %d, %d inserts, %d deletes", r.truncLSN, r.truncIns, r.truncDel)
	}
	n := 0
	r.each(func([]value) error { n++; return nil })
	if n != 2 {
		t.Errorf("rows added %d, want 2", n)
	}
}
