package restore

import (
	"fmt"
	"testing"
	"time"

	"lbt/catalog"
)

// BenchmarkReduce folds a million changes like those of the restore
// benchmark (updates of 30% of the rows twice, deletes, inserts) and
// streams a million basebackup rows past them.
func BenchmarkReduce(b *testing.B) {
	const rows = 1_000_000
	var changes []catalog.Change
	k := func(id int) catalog.Tuple { return tup(fmt.Sprint(id), nil, nil) }
	for round := 0; round < 2; round++ {
		for id := 1; id <= rows*3/10; id++ {
			changes = append(changes, upd(uint64(10+round), catalog.OldNone, nil, fmt.Sprint(id), fmt.Sprint(id*2+round), fmt.Sprintf("customer %032x!", id)))
		}
	}
	for id := rows - rows/5 + 1; id <= rows; id++ {
		changes = append(changes, del(12, catalog.OldKey, k(id)))
	}
	for id := rows + 1; id <= rows+rows/5; id++ {
		changes = append(changes, ins(13, fmt.Sprint(id), "7", fmt.Sprintf("new %d", id)))
	}
	var base [][]byte
	for id := 1; id <= rows; id++ {
		base = append(base, []byte(fmt.Sprintf("%d\t%d\tcustomer %032x", id, id%1000, id)))
	}
	maps := map[int]versionMap{1: identity(3)}
	maps[1].key[0] = true
	b.ResetTimer()
	var tApply, tBase, tEach time.Duration
	for range b.N {
		t0 := time.Now()
		r := newReducer(3, []int{0}, maps, len(changes))
		for _, c := range changes {
			if err := r.apply(c); err != nil {
				b.Fatal(err)
			}
		}
		tApply += time.Since(t0)
		t0 = time.Now()
		m, _ := r.merger([]int{0, 1, 2})
		var fields [][]byte
		kept := 0
		for _, line := range base {
			fields = splitFields(fields, line)
			keep, err := m.keep(fields)
			if err != nil {
				b.Fatal(err)
			}
			if keep {
				kept++
			}
		}
		if err := m.finish(); err != nil {
			b.Fatal(err)
		}
		tBase += time.Since(t0)
		t0 = time.Now()
		n := 0
		r.each(func([]value) error { n++; return nil })
		tEach += time.Since(t0)
		if kept+n != rows {
			b.Fatalf("%d + %d rows", kept, n)
		}
	}
	b.ReportMetric(tApply.Seconds()/float64(b.N), "s/apply")
	b.ReportMetric(tBase.Seconds()/float64(b.N), "s/base")
	b.ReportMetric(tEach.Seconds()/float64(b.N), "s/each")
}
