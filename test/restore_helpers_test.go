package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"lbt/restore"
	"lbt/test/pgtest"
)

// This file holds what the restore tests share: checkpoints of the source
// (the clock and each table's content at one moment), running a restore,
// and comparing a restored table with a checkpoint.

// checksumSQL is the content checksum of a table: md5 over its rows' text,
// sorted. It is the same query restore reports its checksum with.
func checksumSQL(table string) string {
	return "SELECT md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM " + table + " t"
}

// rowSum is the checksum restore reports, computed on a table by the query
// docs/RESTORE.md gives (restore.ChecksumSQL over the table's columns other
// than generated ones), in a session with lbt's text settings.
func rowSum(t *testing.T, c *pgtest.Cluster, dsn, table string) string {
	t.Helper()
	cols := c.QueryString(t, dsn, fmt.Sprintf(`SELECT coalesce(json_agg(attname ORDER BY attnum), '[]') FROM pg_attribute
		WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''`, quoteLit(table)))
	var names []string
	if err := json.Unmarshal([]byte(cols), &names); err != nil {
		t.Fatalf("columns of %s: %v", table, err)
	}
	// With the text settings of lbt's sessions (docs/RESTORE.md).
	return c.QueryString(t, dsn, "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; "+
		"SELECT s FROM ("+restore.ChecksumSQL(table, names)+") q (n, s)")
}

// shapeSQL lists a table's columns with their types, in order.
func shapeSQL(table string) string {
	return fmt.Sprintf(`SELECT string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
		FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped`, quoteLit(table))
}

func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// tableState is one table's content at a checkpoint.
type tableState struct {
	name   string // SQL name at that moment
	sum    string
	rowsum string // restore's checksum
	shape  string
	rows   string
}

// checkpoint is the source at one moment between transactions.
type checkpoint struct {
	name   string
	at     time.Time
	lsn    string // pg_current_wal_lsn() at the checkpoint
	tables map[string]tableState
}

// serverClock reads the server's clock, to the microsecond commit times
// have.
func serverClock(t *testing.T, c *pgtest.Cluster, dsn string) time.Time {
	t.Helper()
	s := c.QueryString(t, dsn, `SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint`)
	us, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("server clock %q: %v", s, err)
	}
	return time.UnixMicro(us)
}

// recordCheckpoint notes the clock and the content of tables (logical
// name -> SQL name). Nothing writes to them meanwhile.
func recordCheckpoint(t *testing.T, c *pgtest.Cluster, dsn, name string, tables map[string]string) checkpoint {
	t.Helper()
	cp := checkpoint{name: name, at: serverClock(t, c, dsn), tables: map[string]tableState{}}
	cp.lsn = c.QueryString(t, dsn, `SELECT pg_current_wal_lsn()`)
	for logical, table := range tables {
		cp.tables[logical] = tableState{
			name:   table,
			sum:    c.QueryString(t, dsn, checksumSQL(table)),
			rowsum: rowSum(t, c, dsn, table),
			shape:  c.QueryString(t, dsn, shapeSQL(table)),
			rows:   c.QueryString(t, dsn, "SELECT count(*) FROM "+table),
		}
	}
	return cp
}

// runRestore runs a restore from the archive in dir, read-only, as lbt
// restore does while the daemon runs.
func runRestore(t *testing.T, dir string, o restore.Options) (restore.Result, error) {
	t.Helper()
	ctx := context.Background()
	cat := openArchive(t, dir)
	defer cat.Close()
	if o.Logger == nil {
		o.Logger = testLogger(t, "restore")
	}
	res, err := restore.Run(ctx, cat, o)
	for _, w := range res.Warnings {
		t.Logf("restore %s: %s", o.Table, w)
	}
	return res, err
}

// restoreOptionsAt restores table as it was at the moment at (zero: the
// latest) into targetTable of the database target, verified.
func restoreOptionsAt(t *testing.T, table string, at time.Time, target, targetTable string) restore.Options {
	t.Helper()
	o := restore.NewOptions()
	o.Table, o.Until, o.TargetConn, o.TargetTable, o.Verify = table, at, connConfig(t, target), targetTable, true
	return o
}

// checkRestored compares a restored table with a checkpoint's state.
func checkRestored(t *testing.T, c *pgtest.Cluster, dsn, table string, want tableState, what string) {
	t.Helper()
	if got := c.QueryString(t, dsn, shapeSQL(table)); got != want.shape {
		t.Errorf("%s: columns\n  %s\nwant\n  %s", what, got, want.shape)
	}
	if got := c.QueryString(t, dsn, "SELECT count(*) FROM "+table); got != want.rows {
		t.Errorf("%s: %s rows, want %s", what, got, want.rows)
	}
	if got := c.QueryString(t, dsn, checksumSQL(table)); got != want.sum {
		t.Errorf("%s: checksum %s, want %s", what, got, want.sum)
	}
	if got := rowSum(t, c, dsn, table); got != want.rowsum {
		t.Errorf("%s: restore's checksum query gives %s, want %s", what, got, want.rowsum)
	}
}

// runPsql runs a SQL file with psql into a database, stopping at the first
// error.
func runPsql(t *testing.T, c *pgtest.Cluster, dsn, file string) {
	t.Helper()
	if err := psqlFile(c, dsn, file); err != nil {
		t.Fatal(err)
	}
}

// psqlFile runs a SQL file with a bare psql (no .psqlrc), stopping at the
// first error, which it returns with psql's output.
func psqlFile(c *pgtest.Cluster, dsn, file string) error {
	cmd := exec.Command(filepath.Join(c.BinDir(), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", file)
	cmd.Env = append(os.Environ(), "PGOPTIONS=-c client_min_messages=warning")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("psql -f %s: %v\n%s", file, err, out)
	}
	return nil
}

// sortedKeys returns a map's keys in order, for deterministic loops.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
