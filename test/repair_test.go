package test

import (
	"fmt"
	"strings"
	"testing"
)

// repairTablesSQL is the shop the repair tests work on: orders, keyed,
// with a default replica identity (updates and deletes carry only the key).
const repairTablesSQL = `CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, status text, amount numeric(10,2), note text)`

// Somebody deletes most of orders among ordinary work. One inspect changes
// command with --op, --min-rows and --actor finds exactly that transaction;
// restore --before-xid and --before-lsn of it give the table as it was just
// before it, equal to the source then.
func TestRepair_FindTheMassDeleteAndRestoreBeforeIt(t *testing.T) {
	e := newInspectEnv(t, repairTablesSQL, true)
	alice, aliceDSN := e.role("alice", "shop", false, "orders")
	mallory, malloryDSN := e.role("mallory", "psql", false, "orders")
	target := e.c.NewDatabase(t)

	e.tx(aliceDSN, `INSERT INTO orders SELECT g, g % 17, 'new', g * 1.25, NULL FROM generate_series(1, 400) g`)
	waitArchived(t, e.c, e.dsn, e.dir)
	takeBasebackups(t, e.dsn, e.dir, "orders")
	e.tx(aliceDSN, `UPDATE orders SET status = 'paid' WHERE id % 3 = 0`)
	e.tx(malloryDSN, `DELETE FROM orders WHERE id = 7`) // small: not the one
	e.tx(aliceDSN, `DELETE FROM orders WHERE id BETWEEN 390 AND 400`)
	before := recordCheckpoint(t, e.c, e.dsn, "before", map[string]string{"orders": "orders"})
	bad := e.tx(malloryDSN, `DELETE FROM orders WHERE id > 50`, `UPDATE orders SET note = 'kept' WHERE id = 1`)
	e.tx(aliceDSN, `INSERT INTO orders VALUES (1000, 1, 'new', 1, NULL)`)
	waitArchived(t, e.c, e.dsn, e.dir)

	code, stdout, stderr := e.lbt("inspect", "changes", "--table", "orders", "--op", "delete", "--min-rows", "100", "--actor", mallory, "--format", "json")
	if code != 0 {
		t.Fatalf("lbt inspect changes: exit %d: %s", code, stderr)
	}
	lines := jsonLines(t, []byte(stdout))
	if len(lines) != 1 || lines[0]["xid"] != float64(bad.xid) {
		t.Fatalf("inspect changes --op delete --min-rows 100 --actor %s: %s; want the one line of transaction %d", mallory, stdout, bad.xid)
	}
	if lines[0]["deletes"] != float64(339) || lines[0]["updates"] != float64(1) {
		t.Errorf("the transaction's counts: %v", lines[0])
	}
	lsn := lines[0]["lsn"].(string)

	// Each filter alone keeps what it should.
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"--op", "delete"}, 3},
		{[]string{"--op", "insert,update"}, 4},
		{[]string{"--min-rows", "100"}, 3},
		{[]string{"--actor", mallory}, 2},
		{[]string{"--actor", alice, "--op", "delete"}, 1},
		{[]string{"--op", "truncate"}, 0},
	} {
		code, stdout, stderr := e.lbt(append([]string{"inspect", "changes", "--table", "orders", "--format", "json"}, c.args...)...)
		if got := len(jsonLines(t, []byte(stdout))); code != 0 || got != c.want {
			t.Errorf("inspect changes %s: exit %d, %d lines, want %d: %s%s", strings.Join(c.args, " "), code, got, c.want, stdout, stderr)
		}
	}
	if code, _, stderr := e.lbt("inspect", "changes", "--table", "orders", "--op", "drop"); code != 2 || !strings.Contains(stderr, `--op "drop": want insert, update, delete or truncate`) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("--op drop: exit %d, %q", code, stderr)
	}

	for _, flag := range [][]string{{"--before-xid", fmt.Sprint(bad.xid)}, {"--before-lsn", lsn}} {
		tbl := "orders_" + strings.TrimPrefix(flag[0], "--before-")
		args := append([]string{"restore", "--table", "orders", "--target-dsn", target, "--target-table", tbl}, flag...)
		if code, _, stderr := e.lbt(args...); code != 0 {
			t.Fatalf("lbt %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		checkRestored(t, e.c, target, tbl, before.tables["orders"], "restore "+strings.Join(flag, " "))
	}
	code, _, stderr = e.lbt("restore", "--table", "orders", "--target-dsn", target, "--before-xid", "4000000000")
	if code == 0 || !strings.Contains(stderr, "transaction 4000000000 is not in the archive") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("restore --before-xid of an unknown transaction: exit %d, %q", code, stderr)
	}
}
