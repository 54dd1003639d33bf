package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"lbt/restore"
	"lbt/test/pgtest"
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

// A table whose columns use an enum (with a label added later in the
// middle), domains (with checks, NOT NULL and a default, one over another),
// a composite type of them, a range type and its multirange, arrays of
// each, and an extension's type: its --sql script, replayed by a bare psql into a new
// empty database, creates what is missing in dependency order and gives the
// source's rows; replayed where the types exist, it uses them. A restore
// into an empty database creates them too. The header names the source's
// version, encoding, locale and the extension.
func TestRestore_ScriptCreatesTypes(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `
		CREATE EXTENSION citext;
		CREATE SCHEMA ty;
		CREATE TYPE ty.mood AS ENUM ('sad', 'happy');
		ALTER TYPE ty.mood ADD VALUE 'ok' BEFORE 'happy';
		CREATE DOMAIN ty.posint AS integer NOT NULL DEFAULT 1 CONSTRAINT positive CHECK (VALUE > 0) CONSTRAINT small CHECK (VALUE < 1000000);
		CREATE DOMAIN ty.even AS ty.posint CHECK (VALUE % 2 = 0);
		CREATE TYPE ty.pair AS (n ty.even, m ty.mood, tags text[], name citext);
		CREATE TYPE ty.floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);
		CREATE TABLE ty.uses (id int PRIMARY KEY, m ty.mood, ms ty.mood[], p ty.posint, e ty.even, pr ty.pair, prs ty.pair[],
			r ty.floatrange, rs ty.floatrange[], ci citext, mr ty.floatmultirange);`)
	startBackup(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO ty.uses VALUES
		(1, 'ok', '{sad,happy}', 7, 8, ROW(2, 'happy', '{a,"b c"}', 'MiXed'), ARRAY[ROW(4, 'sad', '{}', 'x')::ty.pair], '[1.5,2.5)', '{"[1,2)","(3,4]"}', 'CaSe', '{[1,2), [3,4)}'),
		(2, NULL, NULL, 1, 2, NULL, NULL, 'empty', '{}', NULL, '{}')`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "ty.uses")
	c.Exec(t, dsn, `UPDATE ty.uses SET m = 'sad', pr = ROW(6, 'ok', NULL, 'Y') WHERE id = 2; INSERT INTO ty.uses (id, p, e) VALUES (3, 3, 4)`)
	want := recordCheckpoint(t, c, dsn, "end", map[string]string{"uses": "ty.uses"}).tables["uses"]
	waitArchived(t, c, dsn, dir)

	var buf bytes.Buffer
	o := restore.NewOptions()
	o.Table, o.SQL, o.Verify = "ty.uses", &buf, true
	if _, err := runRestore(t, dir, o); err != nil {
		t.Fatal(err)
	}
	script := buf.String()
	header := script[:strings.Index(script, `\set ON_ERROR_STOP`)]
	for _, s := range []string{"on PostgreSQL 15.", "encoding UTF8, LC_COLLATE ", "Extension citext ", "enum ty.mood", "domain ty.posint", "domain ty.even", "composite ty.pair", "range ty.floatrange"} {
		if !strings.Contains(header, s) {
			t.Errorf("the header lacks %q:\n%s", s, header)
		}
	}
	if strings.Contains(header, "must have these types") {
		t.Errorf("the header asks for types the script creates:\n%s", header)
	}
	file := filepath.Join(t.TempDir(), "uses.sql")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	// A new empty database: a bare psql, nothing created beforehand.
	empty := c.NewDatabase(t)
	runPsql(t, c, empty, file)
	checkRestored(t, c, empty, "ty.uses", want, "--sql into an empty database")
	if got := c.QueryString(t, empty, `SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'ty.mood'::regtype`); got != "sad,ok,happy" {
		t.Errorf("created enum has labels %s", got)
	}
	if got := c.QueryString(t, empty, `SELECT count(*) FROM pg_constraint WHERE contypid IN ('ty.posint'::regtype, 'ty.even'::regtype)`); got != "3" {
		t.Errorf("created domains have %s checks, want 3", got)
	}
	if got := c.QueryString(t, empty, `SELECT typnotnull::text || ' ' || typdefault FROM pg_type WHERE oid = 'ty.posint'::regtype`); got != "true 1" {
		t.Errorf("created domain ty.posint: NOT NULL and default %q", got)
	}
	// The check of a domain under a domain still applies.
	if err := execErr(c, empty, `INSERT INTO ty.uses (id, p, e) VALUES (99, 1, 3)`); err == nil || !strings.Contains(err.Error(), "even_check") {
		t.Errorf("odd value into ty.even: %v", err)
	}

	// Where the types exist (here with the table renamed out of the way),
	// the script uses them.
	c.Exec(t, empty, `ALTER TABLE ty.uses RENAME TO uses_first; ALTER INDEX ty.uses_pkey RENAME TO uses_first_pkey`)
	runPsql(t, c, empty, file)
	checkRestored(t, c, empty, "ty.uses", want, "--sql where the types exist")

	// A restore into an empty database creates them as well.
	other := c.NewDatabase(t)
	o = restore.NewOptions()
	o.Table, o.TargetConn, o.TargetTable, o.Verify = "ty.uses", connConfig(t, other), "ty.uses", true
	if _, err := runRestore(t, dir, o); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, c, other, "ty.uses", want, "restore into an empty database")
}

// execErr runs sql on dsn and returns its error.
func execErr(c *pgtest.Cluster, dsn, sql string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// What PostgreSQL's regression suite found, each as it does it there.

// identity.sql's itest14: a serial column made an identity column. The
// column still owns its serial sequence beside the identity's; the
// restored table has one identity column whose sequence continues past the
// restored ids, in a database and from a script.
func TestRestore_IdentityAddedToSerial(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `CREATE TABLE itest14 (id serial);
		ALTER TABLE itest14 ALTER id DROP DEFAULT;
		ALTER TABLE itest14 ALTER id ADD GENERATED BY DEFAULT AS IDENTITY`)
	startBackup(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO itest14 (id) VALUES (DEFAULT); INSERT INTO itest14 (id) VALUES (DEFAULT)`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "itest14")
	c.Exec(t, dsn, `INSERT INTO itest14 (id) VALUES (DEFAULT)`)
	want := recordCheckpoint(t, c, dsn, "end", map[string]string{"t": "itest14"}).tables["t"]
	waitArchived(t, c, dsn, dir)

	o := restore.NewOptions()
	o.Table, o.TargetConn, o.TargetTable, o.Verify = "itest14", connConfig(t, target), "itest14", true
	if _, err := runRestore(t, dir, o); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, c, target, "itest14", want, "restore")
	if got := c.QueryString(t, target, `SELECT attidentity FROM pg_attribute WHERE attrelid = 'itest14'::regclass AND attname = 'id'`); got != "d" {
		t.Errorf("restored id has attidentity %q, want d", got)
	}
	c.Exec(t, target, `INSERT INTO itest14 (id) VALUES (DEFAULT)`)
	if got := c.QueryString(t, target, `SELECT max(id) FROM itest14`); got != "4" {
		t.Errorf("the identity continues at %s, want 4", got)
	}

	empty := restoreScriptIntoEmpty(t, c, dir, "itest14")
	checkRestored(t, c, empty, "itest14", want, "--sql")
}

// domain.sql: a domain column holds a value that a later ALTER DOMAIN ...
// ADD CONSTRAINT ... NOT VALID rejects. PostgreSQL checks every constraint
// of a domain, valid or not, on every new value, so the rows load only
// where the domain does not have the check yet: the script (and a restore
// into a database without the domain) creates the domain, loads the rows,
// then adds the check NOT VALID. Into a database whose domain has the
// check, restore refuses with one line naming the domain, the check and the
// way out, and leaves nothing behind.
func TestRestore_DomainWithNotValidCheck(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE DOMAIN things AS int; CREATE TABLE thethings (stuff things)`)
	startBackup(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO thethings (stuff) VALUES (55)`)
	c.Exec(t, dsn, `ALTER DOMAIN things ADD CONSTRAINT meow CHECK (VALUE < 11) NOT VALID`)
	c.Exec(t, dsn, `INSERT INTO thethings (stuff) VALUES (5)`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "thethings")
	c.Exec(t, dsn, `INSERT INTO thethings (stuff) VALUES (7)`)
	want := recordCheckpoint(t, c, dsn, "end", map[string]string{"t": "thethings"}).tables["t"]
	waitArchived(t, c, dsn, dir)

	notValid := func(dsn string) string {
		return c.QueryString(t, dsn, `SELECT string_agg(conname || ' ' || convalidated, ',') FROM pg_constraint WHERE contypid = 'things'::regtype`)
	}
	empty := restoreScriptIntoEmpty(t, c, dir, "thethings")
	checkRestored(t, c, empty, "thethings", want, "--sql into an empty database")
	if got := notValid(empty); got != "meow false" {
		t.Errorf("the script's domain has checks %q, want meow NOT VALID", got)
	}

	other := c.NewDatabase(t)
	o := restore.NewOptions()
	o.Table, o.TargetConn, o.TargetTable, o.Verify = "thethings", connConfig(t, other), "thethings", true
	if _, err := runRestore(t, dir, o); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, c, other, "thethings", want, "restore into an empty database")
	if got := notValid(other); got != "meow false" {
		t.Errorf("the restored domain has checks %q, want meow NOT VALID", got)
	}

	// Into the source database, where things has meow.
	o = restore.NewOptions()
	o.Table, o.TargetConn, o.TargetTable = "thethings", connConfig(t, dsn), "thethings_restored"
	_, err := runRestore(t, dir, o)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "domain public.things violate its check meow") ||
		!strings.Contains(err.Error(), "--sql into an empty database") {
		t.Errorf("restore where the domain has the check: %v", err)
	}
	if got := c.QueryString(t, dsn, `SELECT to_regclass('thethings_restored') IS NULL`); got != "t" {
		t.Error("the refused restore left its table behind")
	}
	if got := notValid(dsn); got != "meow false" {
		t.Errorf("the source's domain changed: %q", got)
	}
}

// domain.sql's domnotnull: DROP DOMAIN ... CASCADE drops every column of
// the table, which keeps its rows. It restores as a table without columns
// with as many rows, from a basebackup taken before the drop (with
// columns) and from one taken after.
func TestRestore_TableWithoutColumns(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `CREATE DOMAIN dnotnulltest integer; CREATE TABLE domnotnull (col1 dnotnulltest, col2 dnotnulltest)`)
	startBackup(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO domnotnull DEFAULT VALUES; INSERT INTO domnotnull VALUES (1, 2)`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "domnotnull")
	// The next change shows the stream the table without columns.
	c.Exec(t, dsn, `DROP DOMAIN dnotnulltest CASCADE; INSERT INTO domnotnull DEFAULT VALUES`)
	dropped := recordCheckpoint(t, c, dsn, "dropped", map[string]string{"t": "domnotnull"})
	waitArchived(t, c, dsn, dir)
	if dropped.tables["t"].rows != "3" || dropped.tables["t"].shape != "" {
		t.Fatalf("source after the drop: %s rows, columns %q", dropped.tables["t"].rows, dropped.tables["t"].shape)
	}

	restoreAs := func(name string, want tableState, wantBaseRows int64) {
		t.Helper()
		// The latest state.
		o := restore.NewOptions()
		o.Table, o.TargetConn, o.TargetTable, o.Verify = "domnotnull", connConfig(t, target), name, true
		res, err := runRestore(t, dir, o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.BaseRows != wantBaseRows {
			t.Errorf("%s: restored from a basebackup of %d rows, want the one of %d", name, res.BaseRows, wantBaseRows)
		}
		if fmt.Sprint(res.Rows) != want.rows || res.Checksum != want.rowsum {
			t.Errorf("%s: %d rows, checksum %s; want %s, %s", name, res.Rows, res.Checksum, want.rows, want.rowsum)
		}
		checkRestored(t, c, target, name, want, name)
	}
	restoreAs("from_columns", dropped.tables["t"], 2)
	takeBasebackups(t, dsn, dir, "domnotnull")
	c.Exec(t, dsn, `INSERT INTO domnotnull DEFAULT VALUES`)
	later := recordCheckpoint(t, c, dsn, "later", map[string]string{"t": "domnotnull"})
	waitArchived(t, c, dsn, dir)
	restoreAs("from_none", later.tables["t"], 3)

	empty := restoreScriptIntoEmpty(t, c, dir, "domnotnull")
	checkRestored(t, c, empty, "domnotnull", later.tables["t"], "--sql")
}

// restoreScriptIntoEmpty writes the verified --sql script of table from the
// archive in dir, runs it with psql in a new empty database and returns
// that database.
func restoreScriptIntoEmpty(t *testing.T, c *pgtest.Cluster, dir, table string) string {
	t.Helper()
	var buf bytes.Buffer
	o := restore.NewOptions()
	o.Table, o.SQL, o.Verify = table, &buf, true
	if _, err := runRestore(t, dir, o); err != nil {
		t.Fatal(err)
	}
	empty := c.NewDatabase(t)
	runPsql(t, c, empty, writeScriptFile(t, buf.Bytes()))
	return empty
}

func writeScriptFile(t *testing.T, b []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "restore.sql")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
