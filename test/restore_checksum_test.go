package test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"lbt/restore"
	"lbt/test/pgtest"
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
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	target := c.NewDatabase(t)
	dir := t.TempDir()
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
		o := restore.NewOptions()
		o.Table, o.Until, o.TargetConn, o.TargetTable, o.Verify = st.name, tt.cp.at, connConfig(t, target), "r_"+tt.name, true
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
