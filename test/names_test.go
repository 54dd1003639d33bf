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

// A table dropped and created again under the same name (issue #11, point
// 11): restore resolves the name to the table that had it at the target.
// The latest state is the new table's; a moment before the DROP is the old
// table's, from its own basebackup; a moment after the DROP, before the new
// table was first archived, is refused with the reason; a table dropped
// for good says when it was dropped and what can be restored. With DDL
// capture lbt knows the DROP's own transaction; without it, the daemon
// finds the table gone on the source.
func TestRestore_NameReusedAfterDrop(t *testing.T) {
	for _, capture := range []bool{true, false} {
		t.Run(fmt.Sprintf("capture=%v", capture), func(t *testing.T) { testNameReusedAfterDrop(t, capture) })
	}
}

func testNameReusedAfterDrop(t *testing.T, capture bool) {
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	dir := t.TempDir()
	const dropCheck = 100 * time.Millisecond
	if capture {
		if _, err := setup.Install(context.Background(), c.Connect(t, dsn), setup.Options{Publication: "lbt", CaptureDDL: true}); err != nil {
			t.Fatal(err)
		}
	}
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
	betweenAt := serverClock(t, c, dsn)
	time.Sleep(3 * dropCheck)
	c.Exec(t, dsn, `INSERT INTO zz2 VALUES (10, 'ten', 'new table')`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "zz2")
	c.Exec(t, dsn, `INSERT INTO zz2 VALUES (11, 'eleven', NULL)`)
	latest := recordCheckpoint(t, c, dsn, "latest", map[string]string{"zz2": "zz2"})
	waitArchived(t, c, dsn, dir)

	restoreTo := func(table, into string, until time.Time) error {
		o := restore.NewOptions()
		o.Table, o.TargetConn, o.TargetTable, o.Until, o.Verify = table, connConfig(t, dsn), into, until, true
		_, err := runRestore(t, dir, o)
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

	// After the drop, before the new table was first archived: the old
	// table is gone, and when the new one was created is not known.
	err := restoreTo("zz2", "zz2_between", betweenAt)
	t.Logf("restore --until between the drop and the new table: %v", err)
	if !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "table public.zz2 was dropped ") ||
		!strings.Contains(err.Error(), "a new table public.zz2 was created after that and first archived at LSN ") || !strings.Contains(err.Error(), "public.zz2 can be restored from ") {
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
