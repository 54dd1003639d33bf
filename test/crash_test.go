package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"lbt/test/lbtrun"
)

// lbt killed with SIGKILL at random moments under a concurrent write load,
// and restarted each time, archives every committed transaction exactly
// once. The ledger table is the server's own record: each transaction
// writes its txid there, so the ledger lists exactly what committed.
func TestBackup_KillNineUnderLoadArchivesEachTransactionOnce(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, ledgerSQL)
	cfg := writeConfig(t, c, dsn, dir, "crash")
	// Only what commits after the slot exists can be archived: let the first
	// run create it before the load begins.
	p := lbtrun.Start(t, "backup", "--config", cfg)
	waitArchived(t, c, dsn, dir)

	stopLoad := runLoad(t, c, dsn, 3, func(i int) string {
		// Transactions of varied size, some of 5000 rows. Those too large
		// to hold in memory have their own test, TestBackup_StopDuringLargeTransaction.
		rows := 1 + rand.IntN(5)
		if i%200 == 0 {
			rows = 5000
		}
		return ledgerTx(rows, "")
	})

	for i := 0; i < 6; i++ {
		time.Sleep(time.Duration(300+rand.IntN(1500)) * time.Millisecond)
		p = killNineAndRestart(t, p, cfg)
	}
	time.Sleep(time.Second)
	stopLoad()
	waitArchived(t, c, dsn, dir)
	stopDaemon(t, p)

	// What committed, according to the server.
	conn := c.Connect(t, dsn)
	want := map[int64]int{} // ledger id -> 1
	rows, err := conn.Query(context.Background(), `SELECT id FROM ledger`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		want[id] = 1
	}
	var wantTxs int
	conn.QueryRow(context.Background(), `SELECT count(DISTINCT txid) FROM ledger`).Scan(&wantTxs)

	// What the archive holds.
	_, changes := readArchive(t, dir, "ledger")
	got := map[int64]int{}
	for _, ch := range changes {
		if ch.Op != "I" {
			t.Fatalf("unexpected %s in ledger", ch.Op)
		}
		var id int64
		fmt.Sscan(*ch.New[0], &id)
		got[id]++
	}
	var missing, twice []int64
	for id := range want {
		if got[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range got {
		if n > 1 || want[id] == 0 {
			twice = append(twice, id)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	if len(missing) > 0 || len(twice) > 0 {
		t.Fatalf("archive differs from the server's ledger: %d rows missing (first %v), %d archived twice or never committed (first %v)",
			len(missing), first(missing), len(twice), first(twice))
	}
	if n := len(archivedTxs(t, dir, "ledger")); n != wantTxs {
		t.Fatalf("catalog lists %d ledger transactions, the server committed %d", n, wantTxs)
	}
	t.Logf("%d transactions, %d ledger rows archived exactly once across 6 kills", wantTxs, len(want))
}

// ledgerSQL creates the tables of a ledger load: ledger, where each
// transaction writes its txid, and accounts.
const ledgerSQL = `
	CREATE TABLE ledger (id bigserial PRIMARY KEY, txid bigint NOT NULL, note text);
	CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
	INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100) g;`

// ledgerTx is one transaction of a ledger load: rows rows of ledger with
// its txid, a change to a random account, then the statements in extra.
func ledgerTx(rows int, extra string) string {
	return fmt.Sprintf(`BEGIN;
		INSERT INTO ledger (txid, note) SELECT txid_current(), repeat('x', 20) || g FROM generate_series(1, %d) g;
		UPDATE accounts SET balance = balance + 1 WHERE id = %d;
		%s
		COMMIT`, rows, 1+rand.IntN(100), extra)
}

func first(ids []int64) []int64 {
	if len(ids) > 5 {
		return ids[:5]
	}
	return ids
}
