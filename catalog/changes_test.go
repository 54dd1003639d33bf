package catalog_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"lbt/catalog"
)

// Changes yields what RecordReader.Next returns, narrowed by its Filter,
// with each record's end, and names the blob in its error.
func TestChanges(t *testing.T) {
	tv := func(s string) catalog.Value { return catalog.Value{Kind: catalog.ValueText, Data: []byte(s)} }
	var raw []byte
	raw = catalog.AppendTx(raw, 100, 0, 7, 0)
	raw = append(raw, catalog.TagInsert)
	raw = catalog.AppendTuple(raw, catalog.Tuple{tv("1"), tv("a")})
	raw = append(raw, catalog.TagInsert)
	raw = catalog.AppendTuple(raw, catalog.Tuple{tv("2"), tv("b")})
	raw = catalog.AppendTx(raw, 200, 100, 8, 7)
	raw = append(raw, catalog.TagDelete, catalog.OldKey)
	raw = catalog.AppendTuple(raw, catalog.Tuple{tv("1"), {Kind: catalog.ValueNull}})
	raw = append(raw, catalog.TagTruncate, 0)
	raw = catalog.AppendTx(raw, 300, 200, 9, 8)
	raw = append(raw, catalog.TagInsert)
	raw = catalog.AppendTuple(raw, catalog.Tuple{tv("1"), tv("c")})
	b := catalog.Blob{ID: 42, SegmentID: 3, Schema: 1}
	key1 := func(int) ([]int, []string) { return []int{0}, []string{"1"} }

	for _, tt := range []struct {
		name string
		f    catalog.Filter
		want string
	}{
		{"every change", catalog.Filter{}, "I100 I100 D200 X200 I300"},
		{"one transaction", catalog.Filter{CommitLSN: 200}, "D200 X200"},
		{"a transaction with none", catalog.Filter{CommitLSN: 150}, ""},
		{"one row", catalog.Filter{Keys: key1}, "I100 D200 X200 I300"},
		{"one row in one transaction", catalog.Filter{CommitLSN: 100, Keys: key1}, "I100"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			last := 0
			for c, err := range catalog.Changes(b, raw, tt.f) {
				if err != nil {
					t.Fatal(err)
				}
				if c.End <= last || c.End > len(raw) {
					t.Errorf("End went from %d to %d", last, c.End)
				}
				last = c.End
				got = append(got, string(c.Tag)+strconv.FormatUint(c.CommitLSN, 10))
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("got %q, want %q", s, tt.want)
			}
		})
	}

	n := 0
	for range catalog.Changes(b, raw, catalog.Filter{}) {
		if n++; n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("break after 2 changes read %d", n)
	}

	var err error
	for _, e := range catalog.Changes(b, raw[:len(raw)-2], catalog.Filter{}) {
		err = e
	}
	if err == nil || !strings.Contains(err.Error(), "blob 42 in "+catalog.SegmentName(3)) {
		t.Errorf("a truncated blob: error %v, want one naming blob 42 and its segment", err)
	}
}

// BenchmarkChanges reads 100,000 updates of (int, int, md5) rows through
// Changes and, as the reference in the same run, through RecordReader.Next
// in a plain loop: the iterator must cost no allocation per record and
// little time.
func BenchmarkChanges(b *testing.B) {
	var raw []byte
	raw = catalog.AppendTx(raw, 100, 0, 7, 0)
	const n = 100_000
	for i := 0; i < n; i++ {
		raw = append(raw, catalog.TagUpdate, catalog.OldNone)
		raw = catalog.AppendTuple(raw, catalog.Tuple{
			{Kind: catalog.ValueText, Data: []byte(strconv.Itoa(i))},
			{Kind: catalog.ValueText, Data: []byte("3")},
			{Kind: catalog.ValueText, Data: []byte("0123456789abcdef0123456789abcdef")}})
	}
	blob := catalog.Blob{ID: 1, Schema: 1}
	b.ReportAllocs()
	b.ResetTimer()
	var tIter, tLoop time.Duration
	for range b.N {
		t0 := time.Now()
		got := 0
		for _, err := range catalog.Changes(blob, raw, catalog.Filter{}) {
			if err != nil {
				b.Fatal(err)
			}
			got++
		}
		tIter += time.Since(t0)
		t0 = time.Now()
		r := catalog.NewRecordReader(raw, 1)
		for {
			_, ok, err := r.Next()
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			got--
		}
		tLoop += time.Since(t0)
		if got != 0 {
			b.Fatalf("the iterator and the loop read %d records apart", got)
		}
	}
	b.ReportMetric(float64(tIter.Nanoseconds())/float64(b.N*n), "ns/change")
	b.ReportMetric(float64(tIter)/float64(tLoop), "iter/loop")
}
