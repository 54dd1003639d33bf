package catalog

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The sums a commit's link records as the Writer hashes its rows are the
// sums verify computes from the rows in the catalog: with tables out of id
// order, origins, messages and blobs added out of id order, and with rows
// added out of the canonical order (read back instead).
func TestCommitChain_SumsMatchRows(t *testing.T) {
	ctx := context.Background()
	c, err := Create(ctx, t.TempDir(), Source{SystemID: "1", Database: "app"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	at := time.Date(2026, 12, 2, 14, 0, 0, 123456000, time.UTC)
	tables := []TxTable{{TableID: 7, Counts: Counts{Updates: 2}}, {TableID: 3, Counts: Counts{Inserts: 1, Truncates: 1}}}
	commits := []struct {
		name  string
		txs   []uint64
		blobs []int64
	}{
		{"ordered", []uint64{1000, 1100, 1200}, []int64{5, 2}},
		{"one transaction", []uint64{1300}, []int64{6}},
		{"out of order", []uint64{1500, 1400}, []int64{7}},
	}
	for _, cm := range commits {
		w, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, lsn := range cm.txs {
			origin := ""
			if i == 1 {
				origin = "node_b"
			}
			w.AddTx(Tx{CommitLSN: lsn, EndLSN: lsn + 8, Xid: uint32(lsn / 10), CommitTime: at.Add(time.Duration(lsn)), Origin: origin, Tables: tables})
			w.AddMessage(lsn, 1, "lbt.actor", []byte(`{"role":"app"}`))
			w.AddMessage(lsn, 2, "lbt.ddl", []byte("ALTER TABLE"))
		}
		first := min(cm.txs[0], cm.txs[len(cm.txs)-1])
		for _, id := range cm.blobs {
			w.AddBlob(Blob{ID: id, TableID: 3, SegmentID: 1, Offset: id * 64, Length: 64, CRC: uint32(id), Schema: 1,
				FirstLSN: first, LastLSN: first, Changes: 3, RawLength: 90, Txs: 1, Counts: Counts{Inserts: 1, Updates: 2}, SHA256: [32]byte{byte(id)}})
		}
		if err := w.Commit(); err != nil {
			t.Fatalf("%s: %v", cm.name, err)
		}
	}
	rows, err := c.db.QueryContext(ctx, `SELECT `+linkColumns+` FROM chain ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var links []Link
	for rows.Next() {
		l, err := scanLink(rows)
		if err != nil {
			t.Fatal(err)
		}
		links = append(links, l)
	}
	rows.Close()
	if len(links) != len(commits) {
		t.Fatalf("%d links for %d commits", len(links), len(commits))
	}
	for i, l := range links {
		got, err := commitSums(ctx, c.db, l.FirstLSN, l.LastLSN)
		if err != nil {
			t.Fatal(err)
		}
		if !equalSums(got, l.sums) {
			t.Errorf("%s: the link records %+v, the rows give %+v", commits[i].name, l.sums, got)
		}
		if want := int64(len(commits[i].txs)); l.sums.txs != want || l.sums.rows != 2*want || l.sums.blobs != int64(len(commits[i].blobs)) {
			t.Errorf("%s: counts %+v", commits[i].name, l.sums)
		}
	}
	_, problems, err := c.verifyChain(ctx, nil)
	if err != nil || len(problems) > 0 {
		t.Errorf("verify chain: %v %v", err, problems)
	}
}

// A purge does not re-anchor, and so launder, a row changed outside lbt:
// it refuses, and a purge of untouched history re-anchors and verifies.
func TestPurge_RefusesBrokenLink(t *testing.T) {
	ctx := context.Background()
	for _, tamper := range []bool{false, true} {
		c, err := Create(ctx, t.TempDir(), Source{SystemID: "1", Database: "app"})
		if err != nil {
			t.Fatal(err)
		}
		id := int64(0)
		for _, lsn := range []uint64{1000, 2000} {
			w, _ := c.Begin(ctx)
			if id == 0 {
				if id, err = w.AddTable(16384, lsn); err != nil {
					t.Fatal(err)
				}
			}
			w.AddTx(Tx{CommitLSN: lsn, EndLSN: lsn + 8, Xid: uint32(lsn), CommitTime: time.Now(), Tables: []TxTable{{TableID: id, Counts: Counts{Inserts: 1}}}})
			w.AddBlob(Blob{ID: int64(lsn), TableID: id, SegmentID: 1, Offset: 16, Length: 40, Schema: 1, FirstLSN: lsn, LastLSN: lsn, Changes: 1, Txs: 1, Counts: Counts{Inserts: 1}})
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		if tamper {
			if _, err := c.db.ExecContext(ctx, `UPDATE tx SET xid = 7 WHERE commit_lsn = 1000`); err != nil {
				t.Fatal(err)
			}
		}
		_, err = c.PurgeTable(ctx, id, 1500, PurgeCounts{Blobs: 1})
		if tamper {
			if !errors.Is(err, ErrChainBroken) {
				t.Errorf("purge over a changed transaction row: %v, want the chain broken", err)
			}
		} else {
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.PurgeTransactions(ctx, 1500, 1500); err != nil {
				t.Fatal(err)
			}
			_, problems, err := c.verifyChain(ctx, nil)
			if err != nil || len(problems) > 0 {
				t.Errorf("verify after the purge: %v %v", err, problems)
			}
			var txs, anchors int
			c.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM tx), (SELECT count(*) FROM chain_anchor)`).Scan(&txs, &anchors)
			if txs != 1 || anchors != 2 {
				t.Errorf("after the purge: %d transactions, %d anchors; want 1 and 2", txs, anchors)
			}
		}
		c.Close()
	}
}
