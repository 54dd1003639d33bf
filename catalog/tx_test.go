package catalog_test

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/catalog/catalogtest"
)

func TestTxTables_RoundTrip(t *testing.T) {
	tests := [][]catalog.TxTable{
		nil,
		{{TableID: 1, Counts: catalog.Counts{Inserts: 1}}},
		{{TableID: 3, Counts: catalog.Counts{Updates: 1}}, {TableID: 200, Counts: catalog.Counts{Inserts: 1 << 40, Deletes: 300, Truncates: 1}}},
	}
	for _, tables := range tests {
		got, err := catalog.ParseTxTables(catalog.AppendTxTables(nil, tables))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tables) {
			t.Errorf("round trip of %v gave %v", tables, got)
		}
	}
	if _, err := catalog.ParseTxTables([]byte{1, 2, 0x80}); err == nil {
		t.Error("a truncated list parsed")
	}
}

// archivedTx is a transaction as the test writes it.
type archivedTx struct {
	lsn    uint64
	xid    uint32
	at     time.Time
	tables []catalog.TxTable
}

// TestCatalog_TxLookups writes transactions in three catalog commits, one
// of them with commit times out of LSN order, and looks them up by time,
// window, xid and table.
func TestCatalog_TxLookups(t *testing.T) {
	ctx := context.Background()
	c := catalogtest.New(t, t.TempDir())
	base := time.Date(2026, 11, 21, 14, 0, 0, 0, time.UTC)
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	a := []catalog.TxTable{{TableID: 1, Counts: catalog.Counts{Inserts: 2}}}
	b := []catalog.TxTable{{TableID: 2, Counts: catalog.Counts{Updates: 1}}}
	ab := []catalog.TxTable{{TableID: 2, Counts: catalog.Counts{Deletes: 1}}, {TableID: 1, Counts: catalog.Counts{Truncates: 1}}}
	commits := [][]archivedTx{
		{{100, 10, at(0), a}, {200, 11, at(1), b}},
		// Commit times need not follow commit LSNs.
		{{300, 13, at(3), ab}, {400, 12, at(2), a}, {500, 14, at(5), nil}},
		{{600, 10, at(9), b}}, // the xid counter wrapped around
	}
	for _, txs := range commits {
		w, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tx := range txs {
			w.AddTx(catalog.Tx{CommitLSN: tx.lsn, EndLSN: tx.lsn + 8, Xid: tx.xid, CommitTime: tx.at, Tables: tx.tables})
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}

	for _, tt := range []struct {
		at   time.Time
		want uint64 // 0: none
	}{
		{at(-1), 0},
		{at(0), 100},
		{at(2), 400}, // 300 committed later than 400
		{at(3), 400},
		{at(4), 400},
		{at(8), 500},
		{at(60), 600},
	} {
		lsn, ok, err := c.LastCommitBefore(ctx, tt.at)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			lsn = 0
		}
		if lsn != tt.want {
			t.Errorf("LastCommitBefore(%s) = %d, want %d", tt.at.Format(time.TimeOnly), lsn, tt.want)
		}
	}

	for _, tt := range []struct {
		since, until time.Time
		want         []uint64 // commit LSNs the window must include
		ok           bool
	}{
		{time.Time{}, time.Time{}, []uint64{100, 600}, true},
		{at(2), at(3), []uint64{400}, true},
		{at(3), at(4), []uint64{300}, true},
		{at(6), at(9), nil, false},
		{at(9), time.Time{}, []uint64{600}, true},
	} {
		lo, hi, ok, err := c.TxWindow(ctx, tt.since, tt.until)
		if err != nil {
			t.Fatal(err)
		}
		if ok != tt.ok {
			t.Errorf("TxWindow(%v, %v): ok %v, want %v", tt.since, tt.until, ok, tt.ok)
		}
		for _, lsn := range tt.want {
			if lsn < lo || lsn > hi {
				t.Errorf("TxWindow(%v, %v) = [%d, %d] leaves out %d", tt.since, tt.until, lo, hi, lsn)
			}
		}
	}

	txs, err := c.TxsByXid(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(txs) != 2 || txs[0].CommitLSN != 100 || txs[1].CommitLSN != 600 || !reflect.DeepEqual(txs[1].Tables, b) {
		t.Errorf("TxsByXid(10) = %+v, want the transactions at 100 and 600", txs)
	}
	if tx, ok, err := c.TxByXid(ctx, 12); err != nil || !ok || tx.CommitLSN != 400 || !tx.CommitTime.Equal(at(2)) {
		t.Errorf("TxByXid(12) = %+v, %v, %v; want the transaction at 400", tx, ok, err)
	}
	if _, ok, err := c.TxByXid(ctx, 99); err != nil || ok {
		t.Errorf("TxByXid(99) found %v, %v; want nothing", ok, err)
	}

	var got []uint64
	var sum catalog.Counts
	err = c.EachTableTx(ctx, 1, 0, math.MaxUint64, func(tx catalog.TableTx) error {
		got = append(got, tx.CommitLSN)
		sum.Add(tx.Counts)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{100, 300, 400}; !reflect.DeepEqual(got, want) || sum != (catalog.Counts{Inserts: 4, Truncates: 1}) {
		t.Errorf("transactions of table 1: %v with %+v, want %v with 4 inserts and a truncate", got, sum, want)
	}
	if has, err := c.HasTableTx(ctx, 2, 301, 599); err != nil || has {
		t.Errorf("HasTableTx(2, 301, 599) = %v, %v; want false", has, err)
	}
	truncs, err := c.TableTruncates(ctx, 1, 0, math.MaxUint64)
	if err != nil || !reflect.DeepEqual(truncs, []uint64{300}) {
		t.Errorf("truncates of table 1: %v, %v; want [300]", truncs, err)
	}
}

// TestCatalog_PurgeTransactions purges one table's history and checks that
// a transaction row goes only when no table's remaining history needs it.
func TestCatalog_PurgeTransactions(t *testing.T) {
	ctx := context.Background()
	c := catalogtest.New(t, t.TempDir())
	w, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	one, err := w.AddTable(1001, 10)
	if err != nil {
		t.Fatal(err)
	}
	two, err := w.AddTable(1002, 10)
	if err != nil {
		t.Fatal(err)
	}
	const unknown = 99 // a table whose rel row a concurrent writer has not committed yet
	ins := catalog.Counts{Inserts: 1}
	for _, tx := range []catalog.Tx{
		{CommitLSN: 100, Tables: []catalog.TxTable{{TableID: one, Counts: ins}}},
		{CommitLSN: 200, Tables: []catalog.TxTable{{TableID: one, Counts: ins}, {TableID: two, Counts: ins}}},
		{CommitLSN: 300, Tables: []catalog.TxTable{{TableID: unknown, Counts: ins}}},
		{CommitLSN: 400}, // logical messages only
		{CommitLSN: 500, Tables: []catalog.TxTable{{TableID: one, Counts: ins}}},
	} {
		tx.CommitTime = time.Now()
		w.AddTx(tx)
	}
	w.AddMessage(400, 0, "audit", []byte("kept until every table passed it"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PurgeTable(ctx, one, 450, catalog.PurgeCounts{}); err != nil {
		t.Fatal(err)
	}
	n, err := c.PurgeTransactions(ctx, 450, 350)
	if err != nil {
		t.Fatal(err)
	}
	var left []uint64
	for _, lsn := range []uint64{100, 200, 300, 400, 500} {
		if _, ok, err := c.TxAt(ctx, lsn); err != nil {
			t.Fatal(err)
		} else if ok {
			left = append(left, lsn)
		}
	}
	// 100: only table one, purged past it. 200: table two still needs it.
	// 300: an unknown table may need it. 400: its message is after 350.
	// 500: after the purge point.
	if want := []uint64{200, 300, 400, 500}; n != 1 || !reflect.DeepEqual(left, want) {
		t.Errorf("purged %d transactions, left %v; want 1 purged and %v left", n, left, want)
	}
}

func TestParseLSN(t *testing.T) {
	for in, want := range map[string]uint64{"0/16B3748": 0x16B3748, "1/0": 1 << 32, "FF/FFFFFFFF": 0xffffffffff, " 0/1 ": 1} {
		if got, err := catalog.ParseLSN(in); err != nil || got != want || catalog.FormatLSN(got) != strings.TrimSpace(in) {
			t.Errorf("ParseLSN(%q) = %x, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "16B3748", "0/", "/1", "0/1/2", "x/1", "0/100000000", "0/1x", "-1/0", "+1/0", "0x1/0"} {
		if _, err := catalog.ParseLSN(in); err == nil {
			t.Errorf("ParseLSN(%q) accepted", in)
		}
	}
}

// FuzzParseLSN: ParseLSN never panics, and what it accepts is written
// back by FormatLSN as a text that reads the same.
func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/16B3748", "FF/FFFFFFFF", "0/1/2", "", "/", "0/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lsn, err := catalog.ParseLSN(s)
		if err != nil {
			return
		}
		if again, err := catalog.ParseLSN(catalog.FormatLSN(lsn)); err != nil || again != lsn {
			t.Fatalf("ParseLSN(%q) = %x; FormatLSN writes %s, which reads %x, %v", s, lsn, catalog.FormatLSN(lsn), again, err)
		}
	})
}
