package test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"lbt/catalog"
	"lbt/inspect"
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
	in := e.inspector()
	for _, c := range []struct {
		opts inspect.ChangesOptions
		want int
	}{
		{inspect.ChangesOptions{Ops: []string{"delete"}}, 3},
		{inspect.ChangesOptions{Ops: []string{"insert", "update"}}, 4},
		{inspect.ChangesOptions{MinRows: 100}, 3},
		{inspect.ChangesOptions{Actor: mallory}, 2},
		{inspect.ChangesOptions{Actor: alice, Ops: []string{"delete"}}, 1},
		{inspect.ChangesOptions{Ops: []string{"truncate"}}, 0},
	} {
		c.opts.Table = "orders"
		r, err := in.Changes(context.Background(), c.opts)
		if err != nil || len(r.Txs) != c.want {
			t.Errorf("inspect changes %+v: %v, %d transactions, want %d", c.opts, err, len(r.Txs), c.want)
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

// The acceptance scenario of lbt undo. A bad transaction updates 500 rows
// of orders and deletes 100, among unrelated changes before and after it;
// two rows it touched are changed again later (one updated, one of the
// deleted keys inserted again). lbt undo --xid writes a script that, run by
// psql, leaves orders equal to the source without the bad transaction
// (an oracle database that ran every other statement), except the two
// conflicting rows, which are reported with who changed them and left
// alone. --apply on a copy applies nothing while those conflicts are
// there; --skip-conflicts gives the same table as the script.
func TestRepair_UndoBadTransaction(t *testing.T) {
	e := newInspectEnv(t, repairTablesSQL, true)
	_, aliceDSN := e.role("alice", "shop", false, "orders")
	mallory, malloryDSN := e.role("mallory", "psql", false, "orders")
	bob, bobDSN := e.role("bob", "support", false, "orders")
	oracle, both := e.withOracle(repairTablesSQL)

	first := both(aliceDSN, `INSERT INTO orders SELECT g, g % 17, 'new', g * 1.25, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 1000) g`)
	waitArchived(t, e.c, e.dsn, e.dir)
	takeBasebackups(t, e.dsn, e.dir, "orders")
	both(aliceDSN, `UPDATE orders SET note = 'early' WHERE id % 10 = 0`)
	bad := e.tx(malloryDSN, `UPDATE orders SET status = 'lost', amount = 0, note = NULL WHERE id BETWEEN 1 AND 500`,
		`DELETE FROM orders WHERE id > 900`)
	both(aliceDSN, `INSERT INTO orders SELECT g, 1, 'new', 9.99, NULL FROM generate_series(1001, 1010) g`,
		`UPDATE orders SET status = 'shipped' WHERE id BETWEEN 600 AND 650`,
		`DELETE FROM orders WHERE id BETWEEN 700 AND 705`)
	later := both(bobDSN, `UPDATE orders SET note = 'after' WHERE id = 5`,
		`INSERT INTO orders VALUES (950, 2, 'again', 1.00, 'bob') ON CONFLICT (id) DO UPDATE SET customer = 2, status = 'again', amount = 1.00, note = 'bob'`)
	waitArchived(t, e.c, e.dsn, e.dir)

	// Copies of orders as it is now, to replay the script into and to
	// apply the undo to.
	copyA, copyB := e.c.NewDatabase(t), e.c.NewDatabase(t)
	for _, db := range []string{copyA, copyB} {
		if code, _, stderr := e.lbt("restore", "--table", "orders", "--target-dsn", db, "--target-table", "orders", "-q"); code != 0 {
			t.Fatalf("restore a copy: exit %d: %s", code, stderr)
		}
	}
	row5 := e.c.QueryString(t, e.dsn, `SELECT t::text FROM orders t WHERE id = 5`)
	unchangedB := e.c.QueryString(t, copyB, checksumSQL("orders"))

	script := t.TempDir() + "/undo.sql"
	code, stdout, stderr := e.lbt("undo", "--xid", fmt.Sprint(bad.xid), "--sql", script)
	if code != 4 {
		t.Fatalf("lbt undo --xid %d: exit %d, want 4 (done, conflicts left alone): %s%s", bad.xid, code, stdout, stderr)
	}
	t.Logf("lbt undo:\n%s%s", stdout, stderr)
	for _, want := range []string{
		fmt.Sprintf("conflict: public.orders id=5: changed again after transaction %d by UPDATE at ", bad.xid),
		fmt.Sprintf("conflict: public.orders id=950: changed again after transaction %d by INSERT at ", bad.xid),
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not report %q", want)
		}
	}
	if strings.Count(stderr, "conflict:") != 2 || strings.Count(stderr, "by "+bob+" (support") != 2 || !strings.Contains(stderr, fmt.Sprintf("xid %d", later.xid)) {
		t.Errorf("want exactly the two conflicts, by %s in transaction %d: %s", bob, later.xid, stderr)
	}
	text := readFile(t, script)
	for _, want := range []string{"Sequences are not touched", "left alone (conflict): public.orders id=5", "left alone (conflict): public.orders id=950", "by " + mallory, "BEGIN;", "COMMIT;"} {
		if !strings.Contains(text, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	if n := strings.Count(text, "\nUPDATE "); n != 499 {
		t.Errorf("script has %d UPDATEs, want 499 (500 less the conflict)", n)
	}
	if n := strings.Count(text, "\nINSERT "); n != 99 {
		t.Errorf("script has %d INSERTs, want 99 (100 less the conflict)", n)
	}
	// --lsn names the same transaction by its commit LSN.
	var badLSN uint64
	for _, tx := range archivedTxs(t, e.dir, "orders") {
		if tx.Xid == bad.xid {
			badLSN = tx.CommitLSN
		}
	}
	byLSN := t.TempDir() + "/undo-lsn.sql"
	if code, _, stderr := e.lbt("undo", "--lsn", catalog.FormatLSN(badLSN), "--sql", byLSN, "-q"); code != 4 {
		t.Errorf("lbt undo --lsn %s: exit %d: %s", catalog.FormatLSN(badLSN), code, stderr)
	}
	_, body, _ := strings.Cut(text, "BEGIN;")
	if _, got, _ := strings.Cut(readFile(t, byLSN), "BEGIN;"); got != body {
		t.Errorf("undo --lsn writes other statements than undo --xid")
	}

	// --apply: with conflicts, nothing; with --skip-conflicts, the script's
	// result. (On copies, before the source is repaired: the repair is
	// archived too, and would be later changes of every row.)
	runPsql(t, e.c, copyA, script)
	code, _, stderr = e.lbt("undo", "--xid", fmt.Sprint(bad.xid), "--apply", "--target-dsn", copyB)
	if code != 5 || !strings.Contains(stderr, "nothing applied: 2 row(s) conflict") {
		t.Errorf("undo --apply with conflicts: exit %d, want 5: %s", code, stderr)
	}
	if got := e.c.QueryString(t, copyB, checksumSQL("orders")); got != unchangedB {
		t.Errorf("undo --apply with conflicts changed the target")
	}
	code, stdout, stderr = e.lbt("undo", "--xid", fmt.Sprint(bad.xid), "--apply", "--target-dsn", copyB, "--skip-conflicts")
	if code != 4 {
		t.Errorf("undo --apply --skip-conflicts: exit %d, want 4: %s%s", code, stdout, stderr)
	}
	if got, want := e.c.QueryString(t, copyB, checksumSQL("orders")), e.c.QueryString(t, copyA, checksumSQL("orders")); got != want {
		t.Errorf("undo --apply --skip-conflicts gives another table than the script")
	}

	// Replayed on the source: orders is the oracle, but for the two
	// conflicting rows, which are as they were.
	others := checksumSQL("(SELECT * FROM orders WHERE id <> 5)")
	if e.c.QueryString(t, e.dsn, others) == e.c.QueryString(t, oracle, others) {
		t.Fatal("before the undo, orders is already as without the bad transaction: the test checks nothing")
	}
	runPsql(t, e.c, e.dsn, script)
	if got, want := e.c.QueryString(t, e.dsn, others), e.c.QueryString(t, oracle, others); got != want {
		t.Errorf("after the undo, orders differs from the source without the bad transaction:\n%s", diffTables(t, e, oracle))
	}
	if got := e.c.QueryString(t, e.dsn, `SELECT t::text FROM orders t WHERE id = 5`); got != row5 {
		t.Errorf("conflicting row 5 is %s after the undo, want it left alone: %s", got, row5)
	}

	// Bad input: one line each.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--xid", "4000000000"}, "transaction 4000000000 is not in the archive"},
		{[]string{"--actor", "nobody", "--since=-1h"}, "no archived transaction by role nobody committed from"},
		{[]string{"--xid", fmt.Sprint(bad.xid), "--table", "nosuch"}, "table public.nosuch is not in the archive"},
	} {
		code, _, stderr := e.lbt(append([]string{"undo"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("lbt undo %s: exit %d, stderr %q; want 2 and one line saying %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
	// The first transaction is before the table's first basebackup: there
	// is no old image to put back.
	code, _, stderr = e.lbt("undo", "--xid", fmt.Sprint(first.xid))
	if code != 6 || !strings.Contains(stderr, fmt.Sprintf("undo of transaction %d needs public.orders as it was just before it: cannot restore to that moment", first.xid)) ||
		!strings.Contains(stderr, "before the table's first basebackup") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("undo of a transaction before the first basebackup: exit %d, stderr %q", code, stderr)
	}
}

// withOracle makes a database with the tables of tablesSQL, the oracle,
// and a function that runs a transaction on dsn as e.tx does and runs its
// statements on the oracle too: the oracle holds what the source would
// without the transactions run on the source alone.
func (e *inspectEnv) withOracle(tablesSQL string) (oracle string, both func(dsn string, stmts ...string) inspectTx) {
	e.t.Helper()
	oracle = e.c.NewDatabase(e.t)
	e.c.Exec(e.t, oracle, tablesSQL)
	return oracle, func(dsn string, stmts ...string) inspectTx {
		e.t.Helper()
		e.c.Exec(e.t, oracle, strings.Join(stmts, ";\n"))
		return e.tx(dsn, stmts...)
	}
}

// diffTables lists the rows of orders that differ between the source and
// another database, for a failure message.
func diffTables(t *testing.T, e *inspectEnv, other string) string {
	t.Helper()
	q := `SELECT coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '') FROM orders t`
	return diffRows(strings.Split(e.c.QueryString(t, e.dsn, q), "\n"), strings.Split(e.c.QueryString(t, other, q), "\n"))
}

// lbt undo --actor over a window undoes exactly that actor's transactions
// in it, newest first: two that changed the same rows one after the other,
// a TRUNCATE, and changes to a table without a key; a transaction of the
// actor before the window and everybody else's changes stay. On a copy
// where a row was changed behind the archive's back, --apply applies
// nothing and names the row; --force overwrites it.
func TestRepair_UndoActorWindow(t *testing.T) {
	const tables = repairTablesSQL + `;
		CREATE TABLE bag (tag text, n int);
		ALTER TABLE bag REPLICA IDENTITY FULL;
		CREATE TABLE log (id int PRIMARY KEY, msg text)`
	e := newInspectEnv(t, tables, true)
	_, aliceDSN := e.role("alice", "shop", false, "orders", "bag", "log")
	mallory, malloryDSN := e.role("mallory", "psql", false, "orders", "bag", "log")
	oracle, both := e.withOracle(tables)

	both(aliceDSN, `INSERT INTO orders SELECT g, g % 7, 'new', g, NULL FROM generate_series(1, 100) g`,
		`INSERT INTO bag VALUES ('a', 1), ('a', 1), ('b', 2)`,
		`INSERT INTO log SELECT g, 'line ' || g FROM generate_series(1, 20) g`)
	waitArchived(t, e.c, e.dsn, e.dir)
	takeBasebackups(t, e.dsn, e.dir, "orders", "bag", "log")
	both(malloryDSN, `UPDATE orders SET note = 'm0' WHERE id = 20`) // before the window: stays
	since := serverClock(t, e.c, e.dsn)
	m1 := e.tx(malloryDSN, `UPDATE orders SET amount = amount + 100 WHERE id <= 10`, `INSERT INTO bag VALUES ('m', 9)`,
		`DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE tag = 'a' LIMIT 1)`)
	both(aliceDSN, `UPDATE orders SET status = 'x' WHERE id BETWEEN 50 AND 60`, `INSERT INTO bag VALUES ('c', 3)`)
	m2 := e.tx(malloryDSN, `UPDATE orders SET amount = amount * 2 WHERE id <= 5`, `DELETE FROM orders WHERE id = 99`)
	m3 := e.tx(malloryDSN, `TRUNCATE log`)
	both(aliceDSN, `INSERT INTO log VALUES (1000, 'after')`)
	waitArchived(t, e.c, e.dsn, e.dir)

	copyC := e.c.NewDatabase(t)
	if code, _, stderr := e.lbt("restore", "--table", "orders", "--target-dsn", copyC, "--target-table", "orders", "-q"); code != 0 {
		t.Fatalf("restore a copy: exit %d: %s", code, stderr)
	}
	e.c.Exec(t, copyC, `UPDATE orders SET note = 'not archived' WHERE id = 3`)

	window := []string{"undo", "--actor", mallory, "--since", since.UTC().Format("2006-01-02T15:04:05.999999Z")}
	code, stdout, stderr := e.lbt(append(window, "--table", "orders", "--apply", "--target-dsn", copyC)...)
	if code != 5 || !strings.Contains(stderr, "conflict: public.orders id=3: on the target it is not as transaction") || strings.Contains(stderr, "id=4") {
		t.Errorf("undo --apply with a row changed on the target: exit %d, want 5 naming id=3 alone: %s%s", code, stdout, stderr)
	}
	code, stdout, stderr = e.lbt(append(window, "--table", "orders", "--apply", "--target-dsn", copyC, "--force")...)
	if code != 0 {
		t.Errorf("undo --apply --force: exit %d: %s%s", code, stdout, stderr)
	}
	if got, want := e.c.QueryString(t, copyC, checksumSQL("orders")), e.c.QueryString(t, oracle, checksumSQL("orders")); got != want {
		t.Errorf("undo --apply --force: the copy differs from the source without mallory's transactions")
	}

	script := t.TempDir() + "/undo.sql"
	code, stdout, stderr = e.lbt(append(window, "--sql", script)...)
	if code != 0 {
		t.Fatalf("lbt %s: exit %d: %s%s", strings.Join(window, " "), code, stdout, stderr)
	}
	text := readFile(t, script)
	var undone []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "--   transaction ") {
			undone = append(undone, strings.Fields(line)[2])
		}
	}
	if want := []string{fmt.Sprint(m3.xid), fmt.Sprint(m2.xid), fmt.Sprint(m1.xid)}; strings.Join(undone, ",") != strings.Join(want, ",") {
		t.Errorf("the script undoes transactions %v, want mallory's in the window, newest first: %v", undone, want)
	}
	for _, tbl := range []string{"orders", "bag", "log"} {
		if e.c.QueryString(t, e.dsn, checksumSQL(tbl)) == e.c.QueryString(t, oracle, checksumSQL(tbl)) {
			t.Fatalf("before the undo, %s is already as without mallory's transactions: the test checks nothing", tbl)
		}
	}
	runPsql(t, e.c, e.dsn, script)
	for _, tbl := range []string{"orders", "bag", "log"} {
		if got, want := e.c.QueryString(t, e.dsn, checksumSQL(tbl)), e.c.QueryString(t, oracle, checksumSQL(tbl)); got != want {
			t.Errorf("after the undo, %s differs from the source without mallory's transactions", tbl)
		}
	}
}

// lbt diff between a recorded moment and now lists exactly the rows that
// differ, checked against the source's rows at both moments, for a keyed
// table across a key change, a keyed table across a TRUNCATE and a table
// without a key; its --sql, run on the source, gives back the first state.
func TestRepair_DiffAndRewind(t *testing.T) {
	const tables = `CREATE TABLE items (id int PRIMARY KEY, v text, n int);
		CREATE TABLE ev (id int PRIMARY KEY, v text, n int);
		CREATE TABLE bag (id int, v text, n int);
		ALTER TABLE bag REPLICA IDENTITY FULL`
	e := newInspectEnv(t, tables, false)
	e.c.Exec(t, e.dsn, `INSERT INTO items SELECT g, 'v' || g, g FROM generate_series(1, 10) g;
		INSERT INTO ev SELECT g, 'e' || g, NULL FROM generate_series(1, 5) g;
		INSERT INTO bag VALUES (1, 'a', 1), (1, 'a', 1), (2, 'b', NULL), (3, 'c', 3)`)
	waitArchived(t, e.c, e.dsn, e.dir)
	takeBasebackups(t, e.dsn, e.dir, "items", "ev", "bag")
	e.c.Exec(t, e.dsn, `UPDATE items SET n = n * 10 WHERE id = 10`)
	waitArchived(t, e.c, e.dsn, e.dir)
	names := map[string]string{"items": "items", "ev": "ev", "bag": "bag"}
	t1 := recordCheckpoint(t, e.c, e.dsn, "t1", names)
	rows1 := map[string][]string{}
	for tbl := range names {
		rows1[tbl] = diffSourceRows(t, e, tbl)
	}
	for _, s := range []string{
		`UPDATE items SET v = 'x' WHERE id <= 3`,
		`UPDATE items SET id = 100 WHERE id = 4`,
		`DELETE FROM items WHERE id = 5`,
		`INSERT INTO items VALUES (11, NULL, 11)`,
		`UPDATE items SET v = 'v6' WHERE id = 6`, // no net change
		`TRUNCATE ev`,
		`INSERT INTO ev VALUES (3, 'e3', NULL), (4, 'e4', 4), (6, 'e6', NULL)`,
		`DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE id = 1 LIMIT 1)`,
		`TRUNCATE bag`,
		`INSERT INTO bag VALUES (2, 'b', NULL), (3, 'c', 30), (4, 'd', 4), (4, 'd', 4)`,
	} {
		e.c.Exec(t, e.dsn, s)
	}
	waitArchived(t, e.c, e.dsn, e.dir)
	from := t1.at.UTC().Format("2006-01-02T15:04:05.999999Z")

	for _, tbl := range sortedKeys(names) {
		want := expectedDiff(rows1[tbl], diffSourceRows(t, e, tbl), tbl != "bag")
		code, stdout, stderr := e.lbt("diff", "--table", tbl, "--from", from, "--format", "json")
		if code != 0 {
			t.Fatalf("lbt diff --table %s: exit %d: %s", tbl, code, stderr)
		}
		var got []string
		for _, l := range jsonLines(t, []byte(stdout)) {
			got = append(got, fmt.Sprintf("%s %v -> %v x%v", l["change"], diffJSONRow(l["from"]), diffJSONRow(l["to"]), l["copies"]))
		}
		slices.Sort(got)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("lbt diff --table %s:\n%s\nwant:\n%s", tbl, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if code, stdout, stderr := e.lbt("diff", "--table", "items", "--from", from); code != 0 || !strings.Contains(stdout, "items from ") {
		t.Errorf("lbt diff as a table: exit %d: %s%s", code, stdout, stderr)
	}
	code, stdout, stderr := e.lbt("diff", "--table", "items", "--from", from, "--format", "csv")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	wantItems := expectedDiff(rows1["items"], diffSourceRows(t, e, "items"), true)
	if code != 0 || lines[0] != "change,key,copies,column,changed,from_kind,from,to_kind,to" || len(lines) != 1+3*len(wantItems) ||
		!slices.Contains(lines, "changed,id=1,1,v,true,value,v1,value,x") || !slices.Contains(lines, "added,id=11,1,v,false,,,null,") {
		t.Errorf("lbt diff --format csv: exit %d, want a header and 3 lines for each of %d rows:\n%s%s", code, len(wantItems), stdout, stderr)
	}

	// Rewind in place: each --sql run on the source gives the first state.
	for _, tbl := range sortedKeys(names) {
		script := t.TempDir() + "/rewind.sql"
		if code, _, stderr := e.lbt("diff", "--table", tbl, "--from", from, "--sql", script); code != 0 {
			t.Fatalf("lbt diff --table %s --sql: exit %d: %s", tbl, code, stderr)
		}
		runPsql(t, e.c, e.dsn, script)
		checkRestored(t, e.c, e.dsn, tbl, t1.tables[tbl], "rewind of "+tbl)
	}
}

// diffSourceRows lists a table's rows as id|v|n, NULL as ∅, sorted.
func diffSourceRows(t *testing.T, e *inspectEnv, table string) []string {
	t.Helper()
	s := e.c.QueryString(t, e.dsn, `SELECT coalesce(string_agg(concat_ws('|', coalesce(id::text, '∅'), coalesce(v, '∅'), coalesce(n::text, '∅')), E'\n' ORDER BY 1), '') FROM `+table)
	if s == "" {
		return nil
	}
	rows := strings.Split(s, "\n")
	slices.Sort(rows)
	return rows
}

// expectedDiff compares two row lists as lbt diff must: by id when keyed,
// as multisets otherwise.
func expectedDiff(from, to []string, keyed bool) []string {
	var out []string
	if keyed {
		byID := func(rows []string) map[string]string {
			m := map[string]string{}
			for _, r := range rows {
				m[strings.SplitN(r, "|", 2)[0]] = r
			}
			return m
		}
		f, tt := byID(from), byID(to)
		for id, r := range f {
			switch o, ok := tt[id]; {
			case !ok:
				out = append(out, fmt.Sprintf("removed %s -> <nil> x1", r))
			case o != r:
				out = append(out, fmt.Sprintf("changed %s -> %s x1", r, o))
			}
		}
		for id, r := range tt {
			if _, ok := f[id]; !ok {
				out = append(out, fmt.Sprintf("added <nil> -> %s x1", r))
			}
		}
	} else {
		count := map[string]int{}
		for _, r := range from {
			count[r]++
		}
		for _, r := range to {
			count[r]--
		}
		for r, n := range count {
			switch {
			case n > 0:
				out = append(out, fmt.Sprintf("removed %s -> <nil> x%d", r, n))
			case n < 0:
				out = append(out, fmt.Sprintf("added <nil> -> %s x%d", r, -n))
			}
		}
	}
	slices.Sort(out)
	return out
}

// diffJSONRow writes a row of lbt diff's JSON as diffSourceRows does.
func diffJSONRow(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return "<nil>"
	}
	var parts []string
	for _, c := range []string{"id", "v", "n"} {
		s, ok := m[c].(string)
		if !ok {
			s = "∅"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "|")
}

// An undo puts back every kind of value and row exactly: a TOASTed value
// the bad UPDATE did not touch (REPLICA IDENTITY DEFAULT: the old image is
// the basebackup's), json, arrays, points, times, rows deleted from a table
// whose key is an identity column GENERATED ALWAYS, a row inserted, and
// rows whose key the transaction changed.
func TestRepair_UndoValuesAndKeyChanges(t *testing.T) {
	const tables = `CREATE TABLE docs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text, j json, tags text[], pt point, ts timestamptz);
		ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
		CREATE TABLE k2 (id int PRIMARY KEY, v text)`
	e := newInspectEnv(t, tables, false)
	oracle, both := e.withOracle(tables)
	both(e.dsn, `INSERT INTO docs (body, j, tags, pt, ts) SELECT repeat(md5(g::text), 200), '{"a": [1, 2.50], "b": "x y"}', ARRAY['a,b', NULL, 'c"d'], point(g, -g), '2026-11-21 12:00:00+05:30'::timestamptz + g * interval '1 minute' FROM generate_series(1, 20) g`,
		`INSERT INTO k2 SELECT g, 'k' || g FROM generate_series(1, 10) g`)
	waitArchived(t, e.c, e.dsn, e.dir)
	takeBasebackups(t, e.dsn, e.dir, "docs", "k2")
	both(e.dsn, `UPDATE docs SET tags = tags || 'early'::text WHERE id = 2`)
	bad := e.tx(e.dsn, `UPDATE docs SET ts = ts + interval '1 day', j = '{"bad": true}', pt = NULL WHERE id <= 5`,
		`DELETE FROM docs WHERE id > 15`,
		`INSERT INTO docs (body) VALUES ('inserted by the bad transaction')`,
		`UPDATE k2 SET id = id + 100 WHERE id <= 3`,
		`UPDATE k2 SET v = 'moved' WHERE id = 101`)
	both(e.dsn, `UPDATE docs SET tags = '{}' WHERE id = 10`, `UPDATE k2 SET v = 'later' WHERE id = 9`)
	waitArchived(t, e.c, e.dsn, e.dir)

	script := t.TempDir() + "/undo.sql"
	if code, stdout, stderr := e.lbt("undo", "--xid", fmt.Sprint(bad.xid), "--sql", script); code != 0 {
		t.Fatalf("lbt undo: exit %d: %s%s", code, stdout, stderr)
	}
	runPsql(t, e.c, e.dsn, script)
	for _, tbl := range []string{"docs", "k2"} {
		if got, want := e.c.QueryString(t, e.dsn, checksumSQL(tbl)), e.c.QueryString(t, oracle, checksumSQL(tbl)); got != want {
			t.Errorf("after the undo, %s differs from the source without the bad transaction", tbl)
		}
	}
}
