package catalog_test

import (
	"context"
	"testing"
	"time"

	"lbt/catalog"
)

// BenchmarkWriter_Commit commits what the daemon collects in a second of a
// busy pgbench stream: 60,000 transactions of one update and one insert,
// each with the updated row's key.
func BenchmarkWriter_Commit(b *testing.B) {
	ctx := context.Background()
	c, err := catalog.Create(ctx, b.TempDir(), catalog.Source{SystemID: "1", Database: "app"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const txs = 60_000
	tables := []catalog.TxTable{{TableID: 1, Counts: catalog.Counts{Updates: 1}}, {TableID: 2, Counts: catalog.Counts{Inserts: 1}}}
	at := time.Date(2026, 11, 21, 14, 0, 0, 0, time.UTC)
	lsn := uint64(1 << 32)
	b.ReportAllocs()
	for b.Loop() {
		w, err := c.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < txs; i++ {
			lsn += 200
			w.AddTx(catalog.Tx{CommitLSN: lsn, EndLSN: lsn + 8, Xid: uint32(lsn), CommitTime: at, Tables: tables})
			w.AddRowKey(1, int64(lsn*2654435761), lsn)
		}
		if err := w.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*txs), "ns/tx")
}
