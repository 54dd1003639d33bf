package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"lbt/ingest"
	"lbt/restore"
	"lbt/setup"
	"lbt/test/pgtest"
)

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
