package test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"lbt/restore"
	"lbt/test/pgtest"
)

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
