package test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"lbt/restore"
)

// ADD COLUMN status text NOT NULL DEFAULT 'new' changes no row on the
// source: older rows read 'new' from pg_attribute.attmissingval. Restores
// give them 'new' too, basebackup rows and tuples of the earlier schema
// version alike, in a keyed table and in a keyless REPLICA IDENTITY FULL
// one (whose later DELETE of an old row names it with 'new'); the restored
// column keeps NOT NULL and DEFAULT; and nothing is refused, since the
// change is followed exactly.
func TestRestore_FastDefaultIsExact(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `CREATE TABLE orders (id int PRIMARY KEY, amount int);
		INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 5) g;
		CREATE TABLE bag (tag text, n int);
		ALTER TABLE bag REPLICA IDENTITY FULL;
		INSERT INTO bag VALUES ('a', 1), ('a', 1), ('b', 2)`)
	tables := map[string]string{"orders": "orders", "bag": "bag"}
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "orders", "bag")

	var cps []checkpoint
	cp := func(name string) { cps = append(cps, recordCheckpoint(t, c, dsn, name, tables)) }
	// Tuples of the first schema version that nothing changes later.
	c.Exec(t, dsn, `INSERT INTO orders VALUES (6, 60); UPDATE orders SET amount = 21 WHERE id = 2; INSERT INTO bag VALUES ('c', 3)`)
	cp("before")
	c.Exec(t, dsn, `ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new'; UPDATE orders SET amount = amount + 1 WHERE id = 3`)
	c.Exec(t, dsn, `ALTER TABLE bag ADD COLUMN status text NOT NULL DEFAULT 'new';
		DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE tag = 'a' LIMIT 1); INSERT INTO bag VALUES ('d', 4, 'fresh')`)
	cp("after-ddl")
	c.Exec(t, dsn, `UPDATE orders SET status = 'done' WHERE id = 6; INSERT INTO orders (id, amount) VALUES (7, 70); DELETE FROM bag WHERE tag = 'b'`)
	cp("changed")
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "orders", "bag")
	cp("after-basebackup")
	c.Exec(t, dsn, `UPDATE orders SET amount = 0 WHERE id = 1; INSERT INTO bag (tag, n) VALUES ('e', 5)`)
	cp("later")
	waitArchived(t, c, dsn, dir)
	if n := countArchived(t, dir, `SELECT count(*) FROM table_gap`); n != 0 {
		t.Errorf("%d inexact spans recorded for a change that is followed exactly", n)
	}

	n := 0
	for _, cp := range cps {
		for _, logical := range sortedKeys(tables) {
			for _, byLSN := range []bool{false, true} {
				n++
				o := restore.NewOptions()
				o.Table, o.TargetConn, o.Verify = logical, connConfig(t, target), true
				o.TargetTable = fmt.Sprintf("r%d_%s_%s", n, logical, strings.ReplaceAll(cp.name, "-", "_"))
				what := fmt.Sprintf("%s at %s by time", logical, cp.name)
				if byLSN {
					lsn, err := pglogrepl.ParseLSN(cp.lsn)
					if err != nil {
						t.Fatal(err)
					}
					o.LSN, what = uint64(lsn), fmt.Sprintf("%s at %s by LSN", logical, cp.name)
				} else {
					o.Until = cp.at
				}
				if _, err := runRestore(t, dir, o); err != nil {
					t.Errorf("%s: %v", what, err)
					continue
				}
				checkRestored(t, c, target, o.TargetTable, cp.tables[logical], what)
				if cp.name == "before" {
					continue
				}
				if got := c.QueryString(t, target, fmt.Sprintf(`SELECT attnotnull::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
					FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
					WHERE a.attrelid = '%s'::regclass AND a.attname = 'status'`, o.TargetTable)); got != "true 'new'::text" {
					t.Errorf("%s: restored column status has NOT NULL and DEFAULT %q, want true 'new'::text", what, got)
				}
			}
		}
	}
}

// A column renamed after another was dropped shifts position: by name and
// position it looked like a new column (NULL in older rows); by the
// source's attnum, which lbt records, it is the same column, and restores
// after the change give the older rows its values.
func TestRestore_RenameAfterDropFollowsAttnum(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `CREATE TABLE shifted (id int PRIMARY KEY, x int, v text);
		INSERT INTO shifted SELECT g, g, 'v' || g FROM generate_series(1, 5) g`)
	tables := map[string]string{"shifted": "shifted"}
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "shifted")
	var cps []checkpoint
	c.Exec(t, dsn, `UPDATE shifted SET v = 'changed' WHERE id = 1`)
	cps = append(cps, recordCheckpoint(t, c, dsn, "before", tables))
	c.Exec(t, dsn, `ALTER TABLE shifted DROP COLUMN x; ALTER TABLE shifted RENAME COLUMN v TO w; UPDATE shifted SET w = 'two' WHERE id = 2`)
	cps = append(cps, recordCheckpoint(t, c, dsn, "after", tables))
	c.Exec(t, dsn, `INSERT INTO shifted VALUES (6, 'six')`)
	cps = append(cps, recordCheckpoint(t, c, dsn, "later", tables))
	waitArchived(t, c, dsn, dir)
	checkSpanRestores(t, c, dir, target, "shifted", cps, func(string) bool { return false }, "")
}
