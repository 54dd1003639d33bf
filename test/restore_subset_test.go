package test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// A subset restore equals the SELECT on the source at that moment. orders
// gets a basebackup, then updates, a key change, deletes, a column rename
// and a TRUNCATE followed by new rows; at three moments, recorded on the
// source as the rows a SELECT with the same predicate and columns returns,
// lbt restore --where and --columns (into a database, and as a script run
// by psql) gives exactly those rows, under exactly those columns.
func TestRestore_WhereAndColumnsEqualTheSelect(t *testing.T) {
	e := newInspectEnv(t, `CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, status text, amount numeric(10,2), note text)`, false)
	target := e.c.NewDatabase(t)

	e.tx(e.dsn, `INSERT INTO orders SELECT g, g % 7, 'new', g * 1.25, CASE WHEN g % 5 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 2000) g`)
	waitArchived(t, e.c, e.dsn, e.dir)
	takeBasebackups(t, e.dsn, e.dir, "orders")

	type moment struct {
		name    string
		lsn     string
		where   string
		columns []string
		want    []string
	}
	var moments []moment
	record := func(name, where string, columns ...string) {
		t.Helper()
		waitArchived(t, e.c, e.dsn, e.dir)
		moments = append(moments, moment{name: name, lsn: archivedLSN(t, e), where: where, columns: columns,
			want: sourceRows(t, e.dsn, "orders WHERE "+where, columns)})
	}

	e.tx(e.dsn, `UPDATE orders SET status = 'paid', amount = amount + 1 WHERE id % 3 = 0`,
		`UPDATE orders SET id = id + 10000 WHERE id BETWEEN 100 AND 120`, // key change
		`DELETE FROM orders WHERE customer = 4 AND id < 500`)
	record("after updates, a key change and deletes", "customer = 3 AND status = 'paid'", "id", "amount", "note")

	e.tx(e.dsn, `ALTER TABLE orders RENAME COLUMN note TO remark`)
	e.tx(e.dsn, `UPDATE orders SET remark = 'changed' WHERE id % 11 = 0`)
	record("after a rename", "remark = 'changed' OR id > 10000", "id", "customer", "remark")

	e.tx(e.dsn, `TRUNCATE orders`)
	e.tx(e.dsn, `INSERT INTO orders SELECT g, g % 3, 'again', g, NULL FROM generate_series(1, 300) g`,
		`UPDATE orders SET status = 'late' WHERE id % 4 = 0`)
	record("after a TRUNCATE", "status <> 'late' AND amount BETWEEN 50 AND 250", "customer", "status")
	// Every column, some rows; and some columns, every row.
	record("all columns", "id % 10 = 1", "id", "customer", "status", "amount", "remark")
	record("no predicate", "true", "amount")
	moments[len(moments)-1].where = ""

	for i, m := range moments {
		// The restored columns keep the table's order, whatever the order
		// asked: reversed here, the result must not change.
		asked := slices.Clone(m.columns)
		slices.Reverse(asked)
		args := []string{"--lsn", m.lsn, "--columns", strings.Join(asked, ",")}
		if m.where != "" {
			args = append(args, "--where", m.where)
		}
		into := fmt.Sprintf("subset_%d", i)
		code, stdout, stderr := e.lbt(append([]string{"restore", "--table", "orders", "--target-dsn", target, "--target-table", into, "--verify"}, args...)...)
		if code != 0 {
			t.Fatalf("%s: lbt restore: exit %d: %s%s", m.name, code, stdout, stderr)
		}
		if !strings.Contains(stdout, fmt.Sprintf(": %d rows, md5-sum64 ", len(m.want))) {
			t.Errorf("%s: the summary does not count %d rows: %s", m.name, len(m.want), stdout)
		}
		checkSubset(t, e, target, into, m.columns, m.want, m.name)

		script := t.TempDir() + "/subset.sql"
		scriptTable := fmt.Sprintf("script_%d", i)
		if code, _, stderr := e.lbt(append([]string{"restore", "--table", "orders", "--sql", script, "--target-table", scriptTable}, args...)...); code != 0 {
			t.Fatalf("%s: lbt restore --sql: exit %d: %s", m.name, code, stderr)
		}
		runPsql(t, e.c, target, script)
		checkSubset(t, e, target, scriptTable, m.columns, m.want, m.name+" (script)")
	}

	// Bad input: one line each, non-zero, nothing created.
	last := moments[0]
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--where", "customer = = 3"}, `--where "customer = = 3": ERROR: syntax error`},
		{[]string{"--where", "nosuch = 3"}, `--where "nosuch = 3": ERROR: column "nosuch" does not exist`},
		{[]string{"--where", "true; DROP TABLE orders"}, `--where "true; DROP TABLE orders": ERROR: `},
		{[]string{"--columns", "id,nosuch"}, `--columns: public.orders had no column nosuch at the target moment; its columns were id, customer, status, amount, note`},
	} {
		args := append([]string{"restore", "--table", "orders", "--lsn", last.lsn, "--target-dsn", target, "--target-table", "orders_bad"}, c.args...)
		code, _, stderr := e.lbt(args...)
		if code == 0 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("lbt %s: exit %d, %q; want one line with %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
	if got := e.c.QueryString(t, target, `SELECT count(*) FROM pg_class WHERE relname = 'orders_bad'`); got != "0" {
		t.Errorf("a refused subset restore left orders_bad behind")
	}
	if got := e.c.QueryString(t, e.dsn, `SELECT count(*) FROM orders`); got != "300" {
		t.Errorf("the source's orders has %s rows after the bad --where, want 300", got)
	}
}

// checkSubset compares a restored subset with the rows the source's
// SELECT returned, and its columns with those asked for.
func checkSubset(t *testing.T, e *inspectEnv, dsn, table string, columns, want []string, what string) {
	t.Helper()
	got := e.c.QueryString(t, dsn, `SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = '`+table+`'::regclass AND attnum > 0 AND NOT attisdropped`)
	if got != strings.Join(columns, ",") {
		t.Errorf("%s: columns %s, want %s", what, got, strings.Join(columns, ","))
	}
	rows := sourceRows(t, dsn, table, columns)
	if !slices.Equal(rows, want) {
		t.Errorf("%s: %d rows differ from the source's SELECT (%d rows):\n%s", what, len(rows), len(want), diffRows(rows, want))
	}
	if len(want) == 0 {
		t.Errorf("%s: the source's SELECT is empty: the moment tests nothing", what)
	}
}

// archivedLSN is the archive's position, as restore's --lsn reads it.
func archivedLSN(t *testing.T, e *inspectEnv) string {
	t.Helper()
	lsn := archivePosition(t, e.dir)
	return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn))
}
