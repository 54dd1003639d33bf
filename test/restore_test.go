package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"lbt/catalog"
	"lbt/ingest"
	"lbt/restore"
	"lbt/retention"
	"lbt/setup"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// The types the tables use; a target database needs them too.
const restoreTypesSQL = `
	CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
	CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
	CREATE TYPE pair AS (x int, label text);`

const restoreTablesSQL = restoreTypesSQL + `
	CREATE TABLE typed (
		id serial PRIMARY KEY,
		num numeric, num2 numeric(10,2), f8 float8, f4 real,
		tstz timestamptz, ts timestamp, d date, tm time, iv interval,
		ints int[], texts text[], j json, jb jsonb, by bytea, bits bit(8), vbits varbit,
		m mood, p posint, pr pair, u uuid, ip inet, t text, b boolean, pt point,
		g bigint GENERATED ALWAYS AS (big % 7 + sm) STORED, big bigint, sm smallint);
	CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
	ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
	CREATE SCHEMA "Sch ema";
	CREATE TABLE "Sch ema"."Odd ""Name"" é" ("Key Col" int PRIMARY KEY, "Val""ue" text, "ÜBER" text, "select" int);
	CREATE TABLE bag (tag text, n int, big text);
	ALTER TABLE bag REPLICA IDENTITY FULL;
	ALTER TABLE bag ALTER COLUMN big SET STORAGE EXTERNAL;
	CREATE TABLE evolving (id int PRIMARY KEY, a text NOT NULL, b int CHECK (b > 0), c int);
	CREATE INDEX evolving_a ON evolving (a);
	CREATE TABLE keys (id int PRIMARY KEY, v text);`

// A workload with checkpoints, restored to each: every restore equals the
// source at that moment exactly (same columns and types, same rows), for
// every value case pgoutput produces, across two basebackups, schema
// changes and a TRUNCATE; the --sql script run by psql gives the same; and
// after a purge, what is still in the window restores the same while what
// is not is refused with the window named.
func TestRestore_CheckpointsAcrossBasebackupsAndPurge(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, restoreTablesSQL)
	c.Exec(t, target, restoreTypesSQL)
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)

	tables := map[string]string{
		"typed": "typed",
		"docs":  "docs",
		"odd":   `"Sch ema"."Odd ""Name"" é"`,
		"bag":   "bag",
		"evo":   "evolving",
		"keys":  "keys",
	}
	var cps []checkpoint
	checkpointNow := func(name string) {
		cps = append(cps, recordCheckpoint(t, c, dsn, name, tables))
	}
	run := func(txs ...string) {
		for _, tx := range txs {
			c.Exec(t, dsn, tx)
		}
	}
	all := func() []string {
		var out []string
		for _, k := range sortedKeys(tables) {
			out = append(out, tables[k])
		}
		return out
	}

	run(
		`INSERT INTO typed (num, num2, f8, f4, tstz, ts, d, tm, iv, ints, texts, j, jb, by, bits, vbits, m, p, pr, u, ip, t, b, pt, big, sm) VALUES
			(12345678901234567890.123456789, 12.5, 3.141592653589793, 1.5, '2026-11-21 12:34:56.789012+05:30', '2026-11-21 12:34:56', '2026-11-21',
			 '23:59:59.999999', '1 year 2 mons -3 days 04:05:06.789', '{1,NULL,3}', '{"a b","c\"d",NULL,"e,f","{}"}',
			 '{"a": [1, 2.50, "x"],  "b": null}', '{"b": [1, 2.50], "a": "é"}', '\x00ff5c0a', B'10101010', B'101', 'happy', 7,
			 ROW(1, 'a,b "c"'), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', E'tab\there\nnew line \\ back\r', true, '(1.5,-2)',
			 9223372036854775807, -32768),
			('Infinity', 'NaN', 'NaN', '-Infinity', 'infinity', '-infinity', 'infinity', '00:00', '-178000000 years', '{}', '{NULL}',
			 'null', '[]', '\x', B'00000000', B'', 'sad', 1, ROW(NULL, NULL), NULL, '::1', '', false, NULL, 0, 0);
		 INSERT INTO typed DEFAULT VALUES`,
		`INSERT INTO docs VALUES (1, 'one', repeat(md5('1'), 100)), (2, 'two', repeat(md5('2'), 100)), (3, 'three', NULL), (4, 'four', 'short')`,
		`INSERT INTO "Sch ema"."Odd ""Name"" é" VALUES (1, 'it''s "one"', 'über', 1), (2, NULL, E'back\\slash', 2)`,
		`INSERT INTO bag VALUES ('a', 1, NULL), ('a', 1, NULL), ('b', 2, repeat('x', 3000)), ('c', 3, NULL)`,
		`INSERT INTO evolving VALUES (1, 'one', 1, 1), (2, 'two', 2, 2), (3, 'three', 3, 3)`,
		`INSERT INTO keys SELECT g, 'v' || g FROM generate_series(1, 5) g`,
	)
	checkpointNow("before-basebackup")
	run(`INSERT INTO keys VALUES (6, 'six')`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, all()...)
	checkpointNow("basebackup-1")

	run(
		`UPDATE typed SET t = E'new\ttab', num = num + 1, jb = jb || '{"c": true}' WHERE id = 1`,
		`UPDATE docs SET title = 'uno' WHERE id = 1`,               // body: unchanged TOAST value
		`UPDATE docs SET id = 10, title = 'two->ten' WHERE id = 2`, // key change, body unchanged
		`DELETE FROM docs WHERE id = 3`,
		`UPDATE "Sch ema"."Odd ""Name"" é" SET "Val""ue" = 'changed "quoted"' WHERE "Key Col" = 1`,
		`INSERT INTO "Sch ema"."Odd ""Name"" é" VALUES (3, E'tab\there', 'ÄÖÜ', NULL)`,
		`DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE tag = 'a' LIMIT 1)`, // one of two equal rows
		`UPDATE bag SET n = 20 WHERE tag = 'b'`,                                       // big: unchanged TOAST value
		`INSERT INTO bag VALUES ('d', 4, NULL), ('d', 4, NULL)`,
		`UPDATE keys SET id = id + 100 WHERE id <= 2`,
		`UPDATE keys SET v = 'x' WHERE id = 3`,
	)
	checkpointNow("changes-1")
	run(
		`UPDATE docs SET title = 'ten again' WHERE id = 10`, // the body still comes from basebackup row 2
		`BEGIN; INSERT INTO keys VALUES (50, 'pre'); TRUNCATE keys; INSERT INTO keys VALUES (1, 'post'), (2, 'post2'); COMMIT`,
		`INSERT INTO typed (t, m, p) VALUES ('four', 'ok', 4)`,
		`DELETE FROM typed WHERE id = 3`,
	)
	checkpointNow("truncate")

	// Schema changes, each with a change in the same transaction, so that
	// the stream shows the new shape where it happened.
	run(`ALTER TABLE evolving ADD COLUMN d text; UPDATE evolving SET d = 'dee' WHERE id = 1`)
	checkpointNow("add-column")
	run(`ALTER TABLE evolving RENAME COLUMN a TO "A renamed"; UPDATE evolving SET "A renamed" = 'two!' WHERE id = 2`)
	checkpointNow("rename-column")
	run(`ALTER TABLE evolving DROP COLUMN b; INSERT INTO evolving (id, "A renamed", c, d) VALUES (10, 'ten', 10, 'd10')`)
	checkpointNow("drop-column")
	run(`ALTER TABLE evolving ALTER COLUMN c TYPE numeric(12,2); UPDATE evolving SET c = c + 0.5 WHERE id = 1`)
	checkpointNow("alter-type")
	run(`ALTER TABLE evolving RENAME TO evolved; UPDATE evolved SET d = 'renamed' WHERE id = 3`)
	tables["evo"] = "evolved"
	checkpointNow("rename-table")

	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, all()...)
	checkpointNow("basebackup-2")
	run(
		`UPDATE docs SET title = 'one, again' WHERE id = 1`,
		`UPDATE evolved SET "A renamed" = 'three!' WHERE id = 3`,
		`INSERT INTO evolved VALUES (11, 'eleven', 11.25, NULL)`,
		`UPDATE keys SET id = -id`,
		`UPDATE bag SET n = 5 WHERE ctid = (SELECT ctid FROM bag WHERE tag = 'd' LIMIT 1)`,
		`DELETE FROM bag WHERE tag = 'c'`,
		`UPDATE typed SET ints = ints || 4, pr = ROW(2, 'two'), iv = iv * 2 WHERE id = 1`,
	)
	checkpointNow("changes-3")
	waitArchived(t, c, dsn, dir)

	restoreAll := func(round string, cps []checkpoint, wantFail func(cp checkpoint, logical string) bool) {
		t.Helper()
		for _, cp := range cps {
			for _, logical := range sortedKeys(cp.tables) {
				st := cp.tables[logical]
				o := restoreOptionsAt(t, st.name, cp.at, target, fmt.Sprintf("%s_%s_%s", round, strings.ReplaceAll(cp.name, "-", "_"), logical))
				what := fmt.Sprintf("%s: %s at %s", round, st.name, cp.name)
				res, err := runRestore(t, dir, o)
				if wantFail(cp, logical) {
					if !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "can be restored from") {
						t.Errorf("%s: want an error naming the restorable window, got %v", what, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", what, err)
					continue
				}
				if res.Checksum != st.rowsum {
					t.Errorf("%s: restore reports checksum %s, the source's query %s", what, res.Checksum, st.rowsum)
				}
				checkRestored(t, c, target, o.TargetTable, st, what)
			}
		}
	}
	// Before the first basebackup only keys changed: the others are
	// restored from it, keys cannot be. ALTER COLUMN TYPE rewrote the rows
	// of evolving on the source, which the stream does not carry: from the
	// table's last change before it (drop-column) to its next basebackup,
	// no restore of it is exact, and each is refused with the span named.
	inSpan := map[string]bool{"drop-column": true, "alter-type": true, "rename-table": true}
	restoreAll("r", cps, func(cp checkpoint, logical string) bool {
		return cp.name == "before-basebackup" && logical == "keys" || logical == "evo" && inSpan[cp.name]
	})

	// Restored serial column: its sequence continues past the restored ids.
	if got := c.QueryString(t, target, `SELECT nextval(pg_get_serial_sequence('r_changes_3_typed', 'id')) > (SELECT max(id) FROM r_changes_3_typed)`); got != "t" {
		t.Errorf("restored sequence does not continue past the restored ids")
	}
	// The index on the renamed column and the primary key came along; the
	// CHECK on the dropped column did not.
	if got, want := c.QueryString(t, target, `SELECT count(*) FROM pg_index WHERE indrelid = 'r_changes_3_evo'::regclass`),
		c.QueryString(t, dsn, `SELECT count(*) FROM pg_index WHERE indrelid = 'evolved'::regclass`); got != want {
		t.Errorf("restored evolved has %s indexes, the source %s", got, want)
	}

	// The --sql script, run by a bare psql into a new empty database (it
	// creates the enum, domain and composite type typed uses), gives the
	// same content.
	for _, job := range []struct{ cp, logical string }{
		{"changes-3", "typed"}, {"changes-3", "docs"}, {"changes-3", "odd"}, {"changes-3", "bag"},
		{"changes-3", "evo"}, {"changes-3", "keys"}, {"rename-column", "evo"}, {"truncate", "keys"},
	} {
		var cp checkpoint
		for _, x := range cps {
			if x.name == job.cp {
				cp = x
			}
		}
		st := cp.tables[job.logical]
		var buf bytes.Buffer
		o := restore.NewOptions()
		o.Table, o.Until, o.SQL, o.Verify = st.name, cp.at, &buf, true
		if _, err := runRestore(t, dir, o); err != nil {
			t.Errorf("--sql %s at %s: %v", st.name, cp.name, err)
			continue
		}
		if !strings.HasPrefix(buf.String(), "-- lbt restore of table ") || !strings.Contains(buf.String(), "PostgreSQL 10 or newer") {
			t.Errorf("--sql %s: header:\n%.400s", st.name, buf.String())
		}
		file := filepath.Join(t.TempDir(), "restore.sql")
		if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		empty := c.NewDatabase(t)
		runPsql(t, c, empty, file)
		checkRestored(t, c, empty, st.name, st, fmt.Sprintf("--sql %s at %s", st.name, cp.name))
	}

	// Purge everything before the second basebackup: restores after it
	// still give the source's content; those before it are refused.
	cat, err := catalog.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	po := retention.NewOptions()
	po.KeepBasebackups = 1
	rep, err := retention.Purge(context.Background(), cat, po)
	cat.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tables) == 0 {
		t.Fatalf("purge removed nothing: %+v", rep)
	}
	restoreAll("p", cps[len(cps)-5:], func(cp checkpoint, _ string) bool { return cp.name != "basebackup-2" && cp.name != "changes-3" })
}

// The other ways to name the target: by LSN, by transaction, the latest
// state; the default target name beside the original in the source
// database, refusing to overwrite it, and --replace.
func TestRestore_TargetsAndNames(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE items (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text UNIQUE)`)
	startBackup(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 20) g`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "items")
	tables := map[string]string{"items": "items"}

	c.Exec(t, dsn, `DELETE FROM items WHERE id > 15`)
	atLSN := recordCheckpoint(t, c, dsn, "lsn", tables)
	conn := c.Connect(t, dsn)
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var xid int64
	if _, err := tx.Exec(ctx, `UPDATE items SET name = name || '!' WHERE id <= 5`); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	atXid := recordCheckpoint(t, c, dsn, "xid", tables)
	c.Exec(t, dsn, `INSERT INTO items (id, name) VALUES (1000, 'big id')`)
	latest := recordCheckpoint(t, c, dsn, "latest", tables)
	waitArchived(t, c, dsn, dir)

	lsn, err := pglogrepl.ParseLSN(atLSN.lsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		tune  func(*restore.Options)
		table string
		want  tableState
	}{
		{"lsn", func(o *restore.Options) { o.LSN = uint64(lsn) }, "by_lsn", atLSN.tables["items"]},
		{"xid", func(o *restore.Options) { o.Xid = uint32(xid) }, "by_xid", atXid.tables["items"]},
		{"latest", func(o *restore.Options) {}, "by_default", latest.tables["items"]},
	} {
		o := restore.NewOptions()
		o.Table, o.TargetConn, o.TargetTable, o.Verify = "items", connConfig(t, dsn), tt.table, true
		tt.tune(&o)
		if _, err := runRestore(t, dir, o); err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		checkRestored(t, c, dsn, tt.table, tt.want, tt.name)
	}

	// Default name: beside the original, with the target moment in UTC.
	// (A restore into the source database is archived too, which moves the
	// latest state: the target here is a fixed time.)
	o := restore.NewOptions()
	o.Table, o.TargetConn, o.Until = "items", connConfig(t, dsn), latest.at
	res, err := runRestore(t, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.TargetTable != "public.items_restored_"+latest.at.UTC().Format("20060102150405") {
		t.Errorf("default target %q", res.TargetTable)
	}
	checkRestored(t, c, dsn, res.TargetTable, latest.tables["items"], "default name")
	// The identity column's sequence continues past the restored ids; the
	// original's sequence is untouched.
	if got := c.QueryString(t, dsn, fmt.Sprintf(`SELECT nextval(pg_get_serial_sequence(%s, 'id'))`, quoteLit(res.TargetTable))); got != "1001" {
		t.Errorf("restored identity continues at %s, want 1001", got)
	}
	if got := c.QueryString(t, dsn, `SELECT last_value FROM items_id_seq`); got != "20" {
		t.Errorf("the original's sequence moved to %s", got)
	}

	// Never overwrite; --replace drops and recreates.
	_, err = runRestore(t, dir, o)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second restore to the same table: %v", err)
	}
	o.TargetTable, o.Replace, o.Until = res.TargetTable, true, atLSN.at
	if _, err := runRestore(t, dir, o); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, c, dsn, res.TargetTable, atLSN.tables["items"], "replace")

	// Targets outside the archive are refused with the window.
	o = restore.NewOptions()
	o.Table, o.TargetConn, o.Until = "items", connConfig(t, dsn), latest.at.AddDate(0, 0, 1)
	if _, err := runRestore(t, dir, o); !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "beyond the archive") {
		t.Errorf("restore to tomorrow: %v", err)
	}
	o.Until = latest.at.AddDate(0, 0, -1)
	if _, err := runRestore(t, dir, o); !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "can be restored from") {
		t.Errorf("restore to yesterday: %v", err)
	}
	o.Until, o.Table = latest.at, "nosuch"
	if _, err := runRestore(t, dir, o); err == nil || !strings.Contains(err.Error(), "not in the archive") {
		t.Errorf("unknown table: %v", err)
	}
}

// lbt restore on the command line: the summary line, --sql -, --dry-run, a
// one-line error, exit status 6 for a moment it cannot restore, and exit status 3 when --verify finds the result differs
// from the catalog's counts (here: a catalog tampered with), with nothing
// left in the target.
func TestRestore_Command(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	d := startBackup(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "t")
	c.Exec(t, dsn, `DELETE FROM t WHERE id > 7`)
	c.Exec(t, dsn, `UPDATE t SET v = 'changed' WHERE id = 1`)
	want := recordCheckpoint(t, c, dsn, "end", map[string]string{"t": "t"}).tables["t"]
	waitArchived(t, c, dsn, dir)
	d.stop()
	config := writeConfig(t, c, dsn, dir, "lbt_cli")

	code, out := lbtrun.Run(t, "restore", "--config", config, "--table", "t", "--target-table", "cli", "--verify")
	if code != 0 || !strings.Contains(out, "restored public.t as of ") || !strings.Contains(out, "into public.cli: 7 rows, md5-sum64 "+want.rowsum+", verified") {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
	checkRestored(t, c, dsn, "cli", want, "lbt restore")

	code, out = lbtrun.Run(t, "restore", "--config", config, "--table", "t", "--dry-run")
	if code != 0 || !strings.Contains(out, "basebackup:") || !strings.Contains(out, "2 transactions, 4 changes") {
		t.Errorf("--dry-run: exit %d, output:\n%s", code, out)
	}

	code, out = lbtrun.Run(t, "restore", "--config", config, "--table", "t", "--sql", "-", "--quiet")
	if code != 0 || !strings.HasPrefix(out, "-- lbt restore of table public.t as public.t\n") || !strings.Contains(out, "\n\\.\n") {
		t.Errorf("--sql -: exit %d, output:\n%s", code, out)
	}

	code, out = lbtrun.Run(t, "restore", "--config", config, "--table", "nosuch")
	if code != 1 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "not in the archive") {
		t.Errorf("unknown table: exit %d, output:\n%s", code, out)
	}

	// A moment before the table's first basebackup: refused with one line
	// and the documented status 6, not the 1 of a runtime failure.
	code, out = lbtrun.Run(t, "restore", "--config", config, "--table", "t", "--lsn", "0/1", "--target-table", "early")
	if code != 6 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "cannot restore to that moment") {
		t.Errorf("unrestorable moment: exit %d, want 6; output:\n%s", code, out)
	}

	// Tamper with the catalog: one delete fewer than the deltas hold.
	cat, err := catalog.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	tamperDeletes(t, cat)
	cat.Close()
	code, out = lbtrun.Run(t, "restore", "--config", config, "--table", "t", "--target-table", "tampered", "--verify")
	if code != 3 || !strings.Contains(out, "verification failed") {
		t.Errorf("tampered catalog: exit %d, want 3; output:\n%s", code, out)
	}
	if got := c.QueryString(t, dsn, `SELECT to_regclass('tampered') IS NULL`); got != "t" {
		t.Error("a failed verification left the target table behind")
	}
}

// txRow is a row of the catalog's tx table with its tables decoded.
type txRow struct {
	lsn    int64
	tables []catalog.TxTable
}

// txTables returns the rows of the catalog's tx table, by commit LSN.
func txTables(t *testing.T, cat *catalog.Catalog) []txRow {
	t.Helper()
	rows, err := cat.DB().Query(`SELECT commit_lsn, tables FROM tx ORDER BY commit_lsn`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []txRow
	for rows.Next() {
		var tx txRow
		var enc []byte
		if err := rows.Scan(&tx.lsn, &enc); err != nil {
			t.Fatal(err)
		}
		if tx.tables, err = catalog.ParseTxTables(enc); err != nil {
			t.Fatal(err)
		}
		out = append(out, tx)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// tamperDeletes makes the catalog's tx rows claim one delete fewer than the
// deltas hold, in every transaction with a delete.
func tamperDeletes(t *testing.T, cat *catalog.Catalog) {
	t.Helper()
	tampered := map[int64][]byte{}
	for _, tx := range txTables(t, cat) {
		tables := tx.tables
		for i := range tables {
			if tables[i].Deletes > 0 {
				tables[i].Deletes--
				tampered[tx.lsn] = catalog.AppendTxTables(nil, tables)
			}
		}
	}
	if len(tampered) == 0 {
		t.Fatal("no transaction with a delete to tamper with")
	}
	for lsn, b := range tampered {
		if _, err := cat.DB().Exec(`UPDATE tx SET tables = ? WHERE commit_lsn = ?`, b, lsn); err != nil {
			t.Fatal(err)
		}
	}
}

// withAndWithoutCapture runs test once with DDL capture installed and once
// without it.
func withAndWithoutCapture(t *testing.T, test func(t *testing.T, capture bool)) {
	for _, capture := range []bool{true, false} {
		t.Run(fmt.Sprintf("capture=%v", capture), func(t *testing.T) { test(t, capture) })
	}
}

// installCapture runs lbt setup --capture-ddl on dsn when capture is set.
func installCapture(t *testing.T, c *pgtest.Cluster, dsn string, capture bool) {
	t.Helper()
	if !capture {
		return
	}
	opts := setup.NewOptions()
	opts.CaptureDDL = true
	if _, err := setup.Install(context.Background(), c.Connect(t, dsn), opts); err != nil {
		t.Fatal(err)
	}
}

// A table dropped and created again under the same name (issue #11, point
// 11): restore resolves the name to the table that had it at the target.
// The latest state is the new table's; a moment before the DROP is the old
// table's, from its own basebackup; a moment after the DROP, before the new
// table was first archived, is refused with the reason; a table dropped
// for good says when it was dropped and what can be restored. With DDL
// capture lbt knows the DROP's own transaction; without it, the daemon
// finds the table gone on the source.
func TestRestore_NameReusedAfterDrop(t *testing.T) {
	withAndWithoutCapture(t, testNameReusedAfterDrop)
}

func testNameReusedAfterDrop(t *testing.T, capture bool) {
	c, dsn, dir := newSource(t)
	const dropCheck = 100 * time.Millisecond
	installCapture(t, c, dsn, capture)
	startBackup(t, c, dsn, dir, func(o *ingest.Options) { o.DropCheckInterval = dropCheck })
	waitArchived(t, c, dsn, dir)

	c.Exec(t, dsn, `CREATE TABLE zz2 (id int PRIMARY KEY, v text); CREATE TABLE zz3 (id int PRIMARY KEY)`)
	c.Exec(t, dsn, `INSERT INTO zz2 VALUES (1, 'one'), (2, 'two'), (3, 'three'); INSERT INTO zz3 VALUES (1), (2)`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "zz2", "zz3")
	// Without DDL capture, what the daemon last saw of a table bounds what
	// can be restored of it: let a look at the source pass on each side.
	time.Sleep(3 * dropCheck)
	beforeDrop := recordCheckpoint(t, c, dsn, "before the drop", map[string]string{"zz2": "zz2"})
	time.Sleep(3 * dropCheck)

	c.Exec(t, dsn, `DROP TABLE zz2; DROP TABLE zz3`)
	c.Exec(t, dsn, `CREATE TABLE zz2 (id int PRIMARY KEY, v text, note text)`)
	time.Sleep(3 * dropCheck)
	between := recordCheckpoint(t, c, dsn, "between", map[string]string{"zz2": "zz2"})
	time.Sleep(3 * dropCheck)
	c.Exec(t, dsn, `INSERT INTO zz2 VALUES (10, 'ten', 'new table')`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "zz2")
	c.Exec(t, dsn, `INSERT INTO zz2 VALUES (11, 'eleven', NULL)`)
	latest := recordCheckpoint(t, c, dsn, "latest", map[string]string{"zz2": "zz2"})
	waitArchived(t, c, dsn, dir)

	restoreTo := func(table, into string, until time.Time) error {
		_, err := runRestore(t, dir, restoreOptionsAt(t, table, until, dsn, into))
		return err
	}
	// The latest state: the new table, never the dropped one.
	if err := restoreTo("zz2", "zz2_latest", time.Time{}); err != nil {
		t.Fatalf("latest restore: %v", err)
	}
	checkRestored(t, c, dsn, "zz2_latest", latest.tables["zz2"], "latest restore")
	if err := restoreTo("zz2", "zz2_at_latest", latest.at); err != nil {
		t.Fatalf("restore --until the latest checkpoint: %v", err)
	}
	checkRestored(t, c, dsn, "zz2_at_latest", latest.tables["zz2"], "restore --until the latest checkpoint")

	// Before the drop: the old table and its three rows.
	if err := restoreTo("zz2", "zz2_before", beforeDrop.at); err != nil {
		t.Fatalf("restore --until before the drop: %v", err)
	}
	checkRestored(t, c, dsn, "zz2_before", beforeDrop.tables["zz2"], "restore --until before the drop")

	// After the drop, before the new table's first change: with DDL
	// capture the new table, empty, from its CREATE; without, the old
	// table is gone, and when the new one was created is not known.
	err := restoreTo("zz2", "zz2_between", between.at)
	t.Logf("restore --until between the drop and the new table's first change: %v", err)
	if capture {
		if err != nil {
			t.Errorf("restore --until between the drop and the new table's first change: %v", err)
		} else {
			checkRestored(t, c, dsn, "zz2_between", between.tables["zz2"], "restore --until between the drop and the new table's first change")
		}
	} else if !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "table public.zz2 was dropped ") ||
		!strings.Contains(err.Error(), "table public.zz2 was created before its first change at LSN ") || !strings.Contains(err.Error(), "public.zz2 can be restored from ") {
		t.Errorf("restore --until between the drop and the new table: %v", err)
	}
	// A table dropped for good: when, and what can be restored.
	err = restoreTo("zz3", "zz3_latest", time.Time{})
	t.Logf("latest restore of a dropped table: %v", err)
	if !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "table public.zz3 was dropped ") || !strings.Contains(err.Error(), "public.zz3 can be restored from ") {
		t.Errorf("latest restore of a dropped table: %v", err)
	}
	if capture && (err == nil || !strings.Contains(err.Error(), "table public.zz3 was dropped at ")) {
		t.Errorf("with DDL capture the drop's moment is exact: %v", err)
	}
	if err := restoreTo("zz3", "zz3_before", beforeDrop.at); err != nil {
		t.Errorf("restore of the dropped table before its drop: %v", err)
	} else if got := c.QueryString(t, dsn, `SELECT string_agg(id::text, ',' ORDER BY id) FROM zz3_before`); got != "1,2" {
		t.Errorf("zz3 before its drop: rows %s, want 1,2", got)
	}
}

// Tables created while lbt runs (issue #11, points 8 and 10): their history
// starts empty at their creation, so every moment after it restores without
// a basebackup, exactly, where lbt knows the creation: from the CREATE's
// lbt.ddl message with DDL capture, or, without it, because the table's
// first change came in the transaction that created it (CREATE TABLE AS,
// or CREATE and INSERT in one transaction). A table created after the
// daemon started and written later, without DDL capture, restores from its
// first change on; before it, it is refused. A table created and never
// written restores empty with its columns when lbt saw its CREATE. No
// basebackup is taken here.
func TestRestore_NewTables(t *testing.T) {
	withAndWithoutCapture(t, testNewTables)
}

func testNewTables(t *testing.T, capture bool) {
	c, dsn, dir := newSource(t)
	installCapture(t, c, dsn, capture)
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	beforeAll := serverClock(t, c, dsn)
	time.Sleep(10 * time.Millisecond)

	c.Exec(t, dsn, `CREATE TABLE t_ctas AS SELECT g AS id, 'row ' || g AS v FROM generate_series(1, 500) g`)
	c.Exec(t, dsn, `BEGIN; CREATE TABLE t_same (id int PRIMARY KEY, v text); INSERT INTO t_same SELECT g, 'same ' || g FROM generate_series(1, 20) g; COMMIT`)
	c.Exec(t, dsn, `CREATE TABLE t_later (id int PRIMARY KEY, v text); CREATE TABLE t_empty (id bigint PRIMARY KEY, label varchar(20), at timestamptz)`)
	tables := map[string]string{"t_ctas": "t_ctas", "t_same": "t_same", "t_later": "t_later", "t_empty": "t_empty"}
	created := recordCheckpoint(t, c, dsn, "created", tables)
	c.Exec(t, dsn, `INSERT INTO t_later SELECT g, 'later ' || g FROM generate_series(1, 30) g; INSERT INTO t_ctas VALUES (501, 'added'); DELETE FROM t_same WHERE id > 15`)
	written := recordCheckpoint(t, c, dsn, "written", tables)
	waitArchived(t, c, dsn, dir)

	restoreTo := func(table, into string, until time.Time) error {
		_, err := runRestore(t, dir, restoreOptionsAt(t, table, until, dsn, into))
		return err
	}
	for _, cp := range []checkpoint{created, written} {
		for _, table := range []string{"t_ctas", "t_same", "t_later", "t_empty"} {
			into := table + "_" + cp.name
			err := restoreTo(table, into, cp.at)
			exact := capture || table == "t_ctas" || table == "t_same" || (table == "t_later" && cp.name == "written")
			switch {
			case exact && err != nil:
				t.Errorf("%s at %s: %v", table, cp.name, err)
			case exact:
				checkRestored(t, c, dsn, into, cp.tables[table], table+" at "+cp.name)
			case table == "t_empty":
				// Never written, and no CREATE in the archive: lbt knows nothing of it.
				if err == nil || !strings.Contains(err.Error(), "table public.t_empty is not in the archive") {
					t.Errorf("%s at %s without DDL capture: %v", table, cp.name, err)
				}
			default:
				// Created and written later: it was created after the daemon
				// started, so the stream holds every change since its
				// creation, but when that was is not known: moments before
				// its first change are refused.
				if !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "table public.t_later was created before its first change at LSN ") {
					t.Errorf("%s at %s without DDL capture: %v", table, cp.name, err)
				}
			}
			t.Logf("%s at %s: %v", table, cp.name, err)
		}
	}
	// A table created UNLOGGED had rows that never reached the stream
	// before SET LOGGED published it: nothing of it is exact without a
	// basebackup.
	c.Exec(t, dsn, `CREATE UNLOGGED TABLE t_unlogged (id int PRIMARY KEY); INSERT INTO t_unlogged SELECT generate_series(1, 5)`)
	c.Exec(t, dsn, `ALTER TABLE t_unlogged SET LOGGED`)
	c.Exec(t, dsn, `INSERT INTO t_unlogged VALUES (6)`)
	waitArchived(t, c, dsn, dir)
	if err := restoreTo("t_unlogged", "t_unlogged_latest", time.Time{}); !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "lbt basebackup --table public.t_unlogged") {
		t.Errorf("a table created unlogged, then logged: %v", err)
	}
	// Before its creation the table did not exist.
	err := restoreTo("t_ctas", "t_ctas_before", beforeAll)
	if !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "table public.t_ctas was created at ") {
		t.Errorf("t_ctas before its creation: %v", err)
	}
}
