package inspect

import (
	"testing"

	"lbt/catalog"
)

func TestChangeFilter(t *testing.T) {
	tx := catalog.TableTx{Counts: catalog.Counts{Inserts: 5, Updates: 500, Deletes: 100}}
	for _, c := range []struct {
		ops     []string
		minRows int64
		keep    bool
	}{
		{nil, 0, true},
		{nil, 605, true},
		{nil, 606, false},
		{[]string{"delete"}, 100, true},
		{[]string{"delete"}, 101, false},
		{[]string{"DELETE", " update"}, 600, true},
		{[]string{"truncate"}, 0, false},
		{[]string{"insert", "truncate"}, 5, true},
	} {
		f, err := ChangesOptions{Ops: c.ops, MinRows: c.minRows}.filter()
		if err != nil {
			t.Fatal(err)
		}
		n, ok := f.rows(tx)
		if keep := ok && n >= f.minRows; keep != c.keep {
			t.Errorf("ops %q min %d: keep %v, want %v", c.ops, c.minRows, keep, c.keep)
		}
	}
	for _, o := range []ChangesOptions{{Ops: []string{"drop"}}, {MinRows: -1}} {
		if _, err := o.filter(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
