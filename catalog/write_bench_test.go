package catalog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/catalog/catalogtest"
)

// BenchmarkWriter_Commit commits transactions of one update and one insert
// (two changes), each with the updated row's key, and a blob per table per
// commit: 60,000 a commit is what the daemon collects in a second of a busy
// pgbench stream; 1, 10 and 100 a commit are quieter sources, where what
// each commit costs on its own (its hash chain link, since format 4) weighs
// most. It reports time and catalog bytes per change.
func BenchmarkWriter_Commit(b *testing.B) {
	for _, txs := range []int{1, 10, 100, 60_000} {
		b.Run(fmt.Sprintf("txs=%d", txs), func(b *testing.B) { benchWriterCommit(b, txs) })
	}
}

func benchWriterCommit(b *testing.B, txs int) {
	ctx := context.Background()
	c := catalogtest.New(b, b.TempDir())
	tables := []catalog.TxTable{{TableID: 1, Counts: catalog.Counts{Updates: 1}}, {TableID: 2, Counts: catalog.Counts{Inserts: 1}}}
	at := time.Date(2026, 11, 21, 14, 0, 0, 0, time.UTC)
	lsn := uint64(1 << 32)
	blobID := int64(0)
	b.ReportAllocs()
	commits := 0
	for b.Loop() {
		w, err := c.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		first := lsn + 200
		for i := 0; i < txs; i++ {
			lsn += 200
			w.AddTx(catalog.Tx{CommitLSN: lsn, EndLSN: lsn + 8, Xid: uint32(lsn), CommitTime: at, Tables: tables})
			w.AddRowKey(1, int64(lsn*2654435761), lsn)
		}
		for table := int64(1); table <= 2; table++ {
			blobID++
			w.AddBlob(catalog.Blob{ID: blobID, TableID: table, SegmentID: 1, Offset: blobID * 100, Length: 100, CRC: uint32(blobID),
				Schema: 1, FirstLSN: first, LastLSN: lsn, Changes: txs, RawLength: 30 * txs, Txs: txs, Counts: catalog.Counts{Inserts: int64(txs)}})
		}
		if err := w.Commit(); err != nil {
			b.Fatal(err)
		}
		commits++
	}
	changes := float64(commits * txs * 2)
	var pages, pageSize int64
	c.DB().QueryRow(`PRAGMA page_count`).Scan(&pages)
	c.DB().QueryRow(`PRAGMA page_size`).Scan(&pageSize)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/changes, "ns/change")
	b.ReportMetric(float64(pages*pageSize)/changes, "catalog-B/change")
}
