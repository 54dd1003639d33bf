package catalog_test

import (
	"fmt"
	"testing"

	"lbt/catalog"
)

// NextKey returns exactly the changes Next returns whose tuples hold the
// key, with the same content, and truncates; it only skips the others.
func TestRecordReader_NextKey(t *testing.T) {
	tv := func(s string) catalog.Value { return catalog.Value{Kind: catalog.ValueText, Data: []byte(s)} }
	null := catalog.Value{Kind: catalog.ValueNull}
	var raw []byte
	raw = catalog.AppendTx(raw, 100, 0, 7, 0)
	for i, c := range []catalog.Change{
		{Tag: catalog.TagInsert, New: catalog.Tuple{tv("1"), tv("a")}},
		{Tag: catalog.TagInsert, New: catalog.Tuple{tv("11"), tv("1")}},
		{Tag: catalog.TagUpdate, OldKind: catalog.OldNone, New: catalog.Tuple{tv("1"), {Kind: catalog.ValueUnchanged}}},
		{Tag: catalog.TagUpdate, OldKind: catalog.OldKey, Old: catalog.Tuple{tv("1"), null}, New: catalog.Tuple{tv("2"), tv("b")}},
		{Tag: catalog.TagDelete, OldKind: catalog.OldKey, Old: catalog.Tuple{tv("3"), null}},
		{Tag: catalog.TagTruncate, Truncate: 1},
		{Tag: catalog.TagDelete, OldKind: catalog.OldFull, Old: catalog.Tuple{tv("1"), tv("x")}},
	} {
		if i == 4 {
			raw = catalog.AppendTx(raw, 200, 100, 9, 7)
			raw = catalog.AppendSchema(raw, 2)
		}
		raw = append(raw, c.Tag)
		switch c.Tag {
		case catalog.TagInsert:
			raw = catalog.AppendTuple(raw, c.New)
		case catalog.TagUpdate, catalog.TagDelete:
			raw = append(raw, c.OldKind)
			if c.OldKind != catalog.OldNone {
				raw = catalog.AppendTuple(raw, c.Old)
			}
			if c.Tag == catalog.TagUpdate {
				raw = catalog.AppendTuple(raw, c.New)
			}
		default:
			raw = append(raw, c.Truncate)
		}
	}
	key := func(schema int) ([]int, []string) { return []int{0}, []string{"1"} }

	// want: per transaction, the changes Next returns that hold the key,
	// and the truncates.
	want := map[uint64][]string{}
	all := catalog.NewRecordReader(raw, 1)
	for {
		c, ok, err := all.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		keep := c.Tag == catalog.TagTruncate
		for _, tup := range []catalog.Tuple{c.Old, c.New} {
			if len(tup) > 0 && tup[0].Kind == catalog.ValueText && string(tup[0].Data) == "1" {
				keep = true
			}
		}
		if keep {
			want[c.CommitLSN] = append(want[c.CommitLSN], showNextKey(c))
			want[0] = append(want[0], showNextKey(c))
		}
	}
	if len(want[100]) != 3 || len(want[200]) != 2 {
		t.Fatalf("test data: %d and %d changes hold the key, want 3 and 2", len(want[100]), len(want[200]))
	}
	for _, lsn := range []uint64{0, 100, 200, 300} {
		r := catalog.NewRecordReader(raw, 1)
		var got []string
		last := 0
		for {
			c, ok, err := r.NextKey(lsn, key)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if r.Pos() <= last {
				t.Errorf("Pos went from %d to %d", last, r.Pos())
			}
			last = r.Pos()
			got = append(got, showNextKey(c))
		}
		if fmt.Sprint(got) != fmt.Sprint(want[lsn]) {
			t.Errorf("NextKey(%d) returned:\n%v\nwant:\n%v", lsn, got, want[lsn])
		}
	}

	r := catalog.NewRecordReader(raw[:len(raw)-3], 1)
	var err error
	for ok := true; ok && err == nil; {
		_, ok, err = r.NextKey(0, key)
	}
	if err == nil {
		t.Error("a truncated blob read without error")
	}
}

func showNextKey(c catalog.Change) string {
	s := fmt.Sprintf("%c@%d/%d/s%d", c.Tag, c.CommitLSN, c.Xid, c.Schema)
	for _, tup := range []catalog.Tuple{c.Old, c.New} {
		s += "["
		for _, v := range tup {
			s += fmt.Sprintf("%c%s,", v.Kind, v.Data)
		}
		s += "]"
	}
	return s
}

// BenchmarkRecordReader_NextKey scans 100,000 updates of (int, int, md5)
// rows for one key, as a history does within a large transaction.
func BenchmarkRecordReader_NextKey(b *testing.B) {
	var raw []byte
	raw = catalog.AppendTx(raw, 100, 0, 7, 0)
	for i := 0; i < 100_000; i++ {
		raw = append(raw, catalog.TagUpdate, catalog.OldNone)
		raw = catalog.AppendTuple(raw, catalog.Tuple{
			{Kind: catalog.ValueText, Data: []byte(fmt.Sprint(i))},
			{Kind: catalog.ValueText, Data: []byte("3")},
			{Kind: catalog.ValueText, Data: []byte("0123456789abcdef0123456789abcdef")}})
	}
	cols, vals := []int{0}, []string{"77777"}
	key := func(int) ([]int, []string) { return cols, vals }
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		r := catalog.NewRecordReader(raw, 1)
		n := 0
		for {
			_, ok, err := r.NextKey(100, key)
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			n++
		}
		if n != 1 {
			b.Fatalf("%d matches", n)
		}
	}
}
