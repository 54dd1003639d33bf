package catalog_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"lbt/catalog"
)

// BenchmarkRowKeyIndex writes LBT_BENCH_KEYS row keys (10 million by
// default) through the Writer as ingest does, in commits of 200
// transactions of 100 keys each, over a table of a tenth as many rows (each
// changed ten times, at random), then looks up the transactions of single
// rows on the catalog opened read-only, as inspect history does. It reports
// the write cost per key and the median lookup.
func BenchmarkRowKeyIndex(b *testing.B) {
	keys := 10_000_000
	if v, err := strconv.Atoi(os.Getenv("LBT_BENCH_KEYS")); err == nil && v > 0 {
		keys = v
	}
	rows := int64(max(keys/10, 1))
	const perTx, txsPerCommit = 100, 200
	ctx := context.Background()
	dir := b.TempDir()
	c, err := catalog.Create(ctx, dir, catalog.Source{SystemID: "1", Database: "app"})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 10))
	hash := func(row int64) int64 { return catalog.KeyHash([][]byte{[]byte(strconv.FormatInt(row, 10))}) }
	at := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	lsn := uint64(1 << 32)
	start, cpu0 := time.Now(), cpuTime()
	for written := 0; written < keys; {
		w, err := c.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for t := 0; t < txsPerCommit && written < keys; t++ {
			lsn += 4096
			w.AddTx(catalog.Tx{CommitLSN: lsn, EndLSN: lsn + 8, Xid: uint32(lsn >> 12), CommitTime: at,
				Tables: []catalog.TxTable{{TableID: 1, Counts: catalog.Counts{Updates: perTx}}}})
			for k := 0; k < perTx; k++ {
				w.AddRowKey(1, hash(r.Int64N(rows)), lsn)
			}
			written += perTx
		}
		if err := w.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	write, writeCPU := time.Since(start), cpuTime()-cpu0
	var runs, pages, levels int64
	c.DB().QueryRow(`SELECT count(*), max(level) FROM key_run`).Scan(&runs, &levels)
	c.DB().QueryRow(`SELECT count(*) FROM key_run_page`).Scan(&pages)
	var pageCount, pageSize int64
	c.DB().QueryRow(`PRAGMA page_count`).Scan(&pageCount)
	c.DB().QueryRow(`PRAGMA page_size`).Scan(&pageSize)
	c.Close()

	ro, err := catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer ro.Close()
	var times []time.Duration
	found := 0
	b.ResetTimer()
	for i := 0; i < 51; i++ {
		t0 := time.Now()
		txs, err := ro.RowKeyTxs(ctx, 1, []int64{hash(r.Int64N(rows))}, 0, time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(t0))
		found += len(txs)
	}
	b.StopTimer()
	slices.Sort(times)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Printf("row-key index: %d keys written in %v (%.2f µs/key, whole commits; CPU %.2f µs/key); %d runs (highest level %d), %d pages; catalog %.1f bytes/key; RowKeyTxs of one row: median %.2f ms (min %.2f, max %.2f) over %d rows, %.1f transactions each\n",
		keys, write.Round(time.Millisecond), float64(write.Nanoseconds())/1000/float64(keys), float64(writeCPU.Nanoseconds())/1000/float64(keys), runs, levels, pages,
		float64(pageCount*pageSize)/float64(keys), ms(times[len(times)/2]), ms(times[0]), ms(times[len(times)-1]), len(times), float64(found)/float64(len(times)))
	b.ReportMetric(ms(times[len(times)/2]), "ms/lookup")
}

// cpuTime is the CPU the process has used, user and system: on a shared
// machine a steadier measure than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
