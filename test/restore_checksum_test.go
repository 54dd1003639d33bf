package test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"lbt/restore"
)

// The checksum restore computes from the rows it sends equals the one the
// documented query computes on the source and on the restored table, for
// values whose record text needs quoting (quotes, commas, backslashes,
// parentheses, spaces, empty strings, NULLs, arrays, composite values,
// unicode, newlines and other control characters), whether the row comes
// from the basebackup as it is (its COPY line), from the basebackup in
// another shape (after ADD COLUMN), or from the changes. --verify checks
// the same on the target, and a --sql --verify script checks itself.
func TestRestore_ChecksumEqualsSQL(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	const types = `CREATE TYPE pt2 AS (x int, label text, tags text[]);`
	c.Exec(t, dsn, types+`
		CREATE TABLE tricky (id int PRIMARY KEY, t text, arr text[], comp pt2, j jsonb, n numeric, ts timestamptz, by bytea);
		CREATE TABLE empty_tbl (id int PRIMARY KEY)`)
	c.Exec(t, target, types)
	startBackup(t, c, dsn, dir)
	values := []string{
		`'plain'`, `''`, `NULL`, `' '`, `'  lead and trail  '`, `'say "hi"'`, `'a,b'`, `'(paren)'`, `'back\slash'`,
		`E'tab\there'`, `E'new\nline'`, `E'cr\rlf'`, `E'\v\f\b'`, `'ünïcödé ☃'`, `E'\u00a0nbsp'`, `'NULL'`, `'\N'`, `'"'`, `'\'`,
		`'{}'`, `')('`,
	}
	var inserts []string
	for i, v := range values {
		inserts = append(inserts, "("+itoa(i+1)+", "+v+", ARRAY["+v+", 'x y', NULL]::text[], ROW("+itoa(i)+", "+v+", ARRAY["+v+"])::pt2, "+
			"jsonb_build_object('k', "+v+"::text), "+itoa(i)+".50, '2026-11-21 12:00:00+02', convert_to(coalesce("+v+"::text, ''), 'UTF8'))")
	}
	c.Exec(t, dsn, "INSERT INTO tricky VALUES "+strings.Join(inserts, ", "))
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "tricky", "empty_tbl")
	base := recordCheckpoint(t, c, dsn, "base", map[string]string{"tricky": "tricky", "empty": "empty_tbl"})

	// Rows from the changes, and the basebackup's rows in another shape.
	c.Exec(t, dsn, `UPDATE tricky SET t = t || E' ,()"\\\n' WHERE id % 3 = 0`)
	c.Exec(t, dsn, `INSERT INTO tricky VALUES (100, '', '{"",NULL,"\""}', ROW(NULL, '', '{}'), '"x"', NULL, NULL, '\x00ff')`)
	changed := recordCheckpoint(t, c, dsn, "changed", map[string]string{"tricky": "tricky"})
	c.Exec(t, dsn, `ALTER TABLE tricky ADD COLUMN extra text; UPDATE tricky SET extra = 'e, "e"' WHERE id = 1`)
	added := recordCheckpoint(t, c, dsn, "added", map[string]string{"tricky": "tricky"})
	waitArchived(t, c, dsn, dir)

	for _, tt := range []struct {
		name  string
		cp    checkpoint
		table string
	}{
		{"base", base, "tricky"}, {"empty", base, "empty"}, {"changed", changed, "tricky"}, {"added", added, "tricky"},
	} {
		st := tt.cp.tables[tt.table]
		o := restoreOptionsAt(t, st.name, tt.cp.at, target, "r_"+tt.name)
		res, err := runRestore(t, dir, o)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if res.Checksum != st.rowsum {
			t.Errorf("%s: restore reports checksum %s, the query on the source %s", tt.name, res.Checksum, st.rowsum)
		}
		checkRestored(t, c, target, o.TargetTable, st, tt.name)
		if got := c.QueryString(t, target, "SELECT s FROM ("+res.ChecksumSQL+") q (n, s)"); got != res.Checksum {
			t.Errorf("%s: the query restore gives computes %s, restore reported %s", tt.name, got, res.Checksum)
		}

		// The script ends with the same value, and checks itself.
		var buf bytes.Buffer
		o = restore.NewOptions()
		o.Table, o.Until, o.SQL, o.Verify = st.name, tt.cp.at, &buf, true
		sres, err := runRestore(t, dir, o)
		if err != nil {
			t.Errorf("%s --sql: %v", tt.name, err)
			continue
		}
		if sres.Checksum != st.rowsum || !strings.Contains(buf.String(), "checksum "+st.rowsum+" (md5-sum64") {
			t.Errorf("%s --sql: checksum %s, want %s in the script's end:\n%s", tt.name, sres.Checksum, st.rowsum, tail(buf.String(), 800))
		}
		file := filepath.Join(t.TempDir(), "restore.sql")
		if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		db := c.NewDatabase(t)
		c.Exec(t, db, types)
		runPsql(t, c, db, file)
		checkRestored(t, c, db, st.name, st, tt.name+" --sql")
	}

	// A script whose rows were altered on the way fails its own check and
	// commits nothing.
	var buf bytes.Buffer
	o := restore.NewOptions()
	o.Table, o.SQL, o.Verify = "tricky", &buf, true
	if _, err := runRestore(t, dir, o); err != nil {
		t.Fatal(err)
	}
	script := strings.Replace(buf.String(), "\tplain\t", "\tPLAIN\t", 1)
	if script == buf.String() {
		t.Fatal("no row to alter in the script")
	}
	file := filepath.Join(t.TempDir(), "altered.sql")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	db := c.NewDatabase(t)
	c.Exec(t, db, types)
	if err := psqlFile(c, db, file); err == nil || !strings.Contains(err.Error(), "differs from the archive") {
		t.Errorf("altered script: %v", err)
	}
	if got := c.QueryString(t, db, `SELECT to_regclass('tricky') IS NULL`); got != "t" {
		t.Error("the altered script left its table behind")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// A source database whose sessions write intervals in IntervalStyle
// sql_standard and timestamps in DateStyle SQL, DMY, in a time zone of its
// own: lbt's sessions write values in ISO and postgres styles all the same
// (SQL style writes a zone abbreviation, "IST", that reads back as another
// zone's; sql_standard's '-1 2:03:04', all of it negative, reads back as
// -1 day plus 2:03:04 under postgres), so that the restored values are the
// source's, and the checksums agree with the documented query run with
// lbt's settings.
func TestRestore_SourceOutputSettings(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	db := c.QueryString(t, dsn, `SELECT current_database()`)
	c.Exec(t, dsn, `ALTER DATABASE `+db+` SET IntervalStyle = sql_standard;
		ALTER DATABASE `+db+` SET DateStyle = 'SQL, DMY';
		ALTER DATABASE `+db+` SET TimeZone = 'Asia/Kolkata';
		CREATE TABLE iv (id int PRIMARY KEY, i interval, d date, tz timestamptz)`)
	startBackup(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO iv VALUES (1, '-1 day -02:03:04', '2026-02-03', '2026-02-03 04:05:06+00'), (2, '1 year -2 mons', '2026-12-31', NULL)`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "iv")
	c.Exec(t, dsn, `INSERT INTO iv VALUES (3, '-3 days -00:00:01', '2026-01-13', '2026-01-13 23:59:59+05')`)
	want := recordCheckpoint(t, c, dsn, "end", map[string]string{"iv": "iv"}).tables["iv"]
	waitArchived(t, c, dsn, dir)
	if got := c.QueryString(t, dsn, `SELECT i::text || ' ' || tz::text FROM iv WHERE id = 1`); got != "-1 2:03:04 03/02/2026 09:35:06 IST" {
		t.Fatalf("the source's sessions write %q, not in sql_standard and SQL styles", got)
	}

	o := restore.NewOptions()
	o.Table, o.TargetConn, o.TargetTable, o.Verify = "iv", connConfig(t, target), "iv", true
	res, err := runRestore(t, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Checksum != want.rowsum {
		t.Errorf("restore reports checksum %s, the source's query %s", res.Checksum, want.rowsum)
	}
	// Compared in the target's own settings: the values, not their text.
	for _, q := range []string{`SELECT string_agg(id || ' ' || extract(epoch FROM i) || ' ' || (d - date '2000-01-01') || ' ' || coalesce(extract(epoch FROM tz)::text, '-'), ',' ORDER BY id) FROM iv`} {
		if got, src := c.QueryString(t, target, q), c.QueryString(t, dsn, q); got != src {
			t.Errorf("restored %s, source %s", got, src)
		}
	}
}
