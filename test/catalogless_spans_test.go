package test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"lbt/ingest"
	"lbt/restore"
)

// A rebuilt catalog keeps what makes restores refuse rather than go wrong:
// an inexact span closed by a basebackup, one still open, a table dropped
// and its name taken by a new table, and the looks at a partition tree.
// After lbt loses its catalog and rebuilds it from the files, those rows
// equal the lost catalog's, restores inside the spans are still refused
// with the span named, and the others equal the source at each moment:
// the old table under its name before the drop, the new one after, the
// partitioned table as its tree was.
func TestCatalogless_RebuildKeepsSpansLivesAndTrees(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `
		CREATE TABLE retyped (id int PRIMARY KEY, amount int);
		INSERT INTO retyped SELECT g, g FROM generate_series(1, 5) g;
		CREATE TABLE readded (id int PRIMARY KEY, w int, v text);
		INSERT INTO readded SELECT g, g, 'old v' || g FROM generate_series(1, 5) g;
		CREATE TABLE zz (id int PRIMARY KEY, v text);
		INSERT INTO zz VALUES (1, 'one'), (2, 'two'), (3, 'three');
		CREATE TABLE pm (id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
		CREATE TABLE pm_1 PARTITION OF pm FOR VALUES IN (1);
		CREATE TABLE pm_2 PARTITION OF pm FOR VALUES IN (2);
		INSERT INTO pm SELECT g, 1 + g % 2 FROM generate_series(1, 10) g`)
	const dropCheck = 100 * time.Millisecond
	d := startBackup(t, c, dsn, dir, func(o *ingest.Options) { o.DropCheckInterval = dropCheck })
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "retyped", "readded", "zz", "pm_1", "pm_2")
	waitLooked(t, c, dsn, dir)

	tables := map[string]string{"retyped": "retyped", "readded": "readded", "zz": "zz", "pm": "pm"}
	var cps []checkpoint
	cp := func(name string) { cps = append(cps, recordCheckpoint(t, c, dsn, name, tables)) }
	cp("before")
	c.Exec(t, dsn, `UPDATE retyped SET amount = 10 WHERE id = 1; UPDATE readded SET w = 10 WHERE id = 1; INSERT INTO pm VALUES (11, 2), (12, 1)`)
	// Archived before the DDL, so that the spans start after it whichever
	// of the stream and the daemon's look at the source sees the change.
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `ALTER TABLE retyped ALTER amount TYPE bigint USING amount * 100`)
	c.Exec(t, dsn, `ALTER TABLE readded DROP COLUMN v, ADD COLUMN v text`)
	c.Exec(t, dsn, `INSERT INTO retyped VALUES (6, 6); INSERT INTO readded VALUES (6, 6, 'new v6')`)
	cp("in-span")
	// The spans are recorded before the basebackup that closes one.
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "retyped")
	c.Exec(t, dsn, `UPDATE retyped SET amount = amount + 1 WHERE id = 2; DELETE FROM pm WHERE id = 3`)
	cp("after-basebackup")
	waitLooked(t, c, dsn, dir)
	time.Sleep(3 * dropCheck)

	c.Exec(t, dsn, `DROP TABLE zz`)
	c.Exec(t, dsn, `CREATE TABLE zz (id int PRIMARY KEY, v text, note text)`)
	c.Exec(t, dsn, `INSERT INTO zz VALUES (10, 'ten', 'new table')`)
	waitArchived(t, c, dsn, dir)
	time.Sleep(3 * dropCheck)
	cp("latest")
	waitArchived(t, c, dsn, dir)
	waitLooked(t, c, dsn, dir)
	d.stop()

	want := catalogDump(t, dir)
	// The scenario made the rows this test is about.
	var open, closed int
	for _, g := range want["table_gap"] {
		if strings.Contains(g, " - - ") {
			open++
		} else {
			closed++
		}
	}
	if open == 0 || closed == 0 {
		t.Fatalf("the archive has %d open and %d closed spans, want both:\n%s", open, closed, strings.Join(want["table_gap"], "\n"))
	}
	if !slices.ContainsFunc(want["rel_life"], func(s string) bool { return !strings.Contains(strings.Fields(s)[4], "-") }) {
		t.Fatalf("no table is known dropped:\n%s", strings.Join(want["rel_life"], "\n"))
	}
	if len(want["partition_tree"]) == 0 || len(want["table_storage"]) == 0 {
		t.Fatalf("no partition tree runs (%d) or table storage (%d)", len(want["partition_tree"]), len(want["table_storage"]))
	}

	rebuildLostCatalog(t, dir)
	got := catalogDump(t, dir)
	for _, name := range sortedKeys(want) {
		if !slices.Equal(got[name], want[name]) {
			t.Errorf("rebuilt %s differs from the lost catalog's:\n%s", name, diffRows(got[name], want[name]))
		}
	}

	// The closed span: refused inside, exact on either side.
	checkSpanRestores(t, c, dir, target, "retyped", cps, func(cp string) bool { return cp == "in-span" },
		"public.retyped") // the type change, or the rewrite as the look at the source saw it first
	// The open span: refused from the change on.
	for _, cp := range cps {
		o := restoreOptionsAt(t, "readded", cp.at, target, "r_readded_"+strings.ReplaceAll(cp.name, "-", "_"))
		_, err := runRestore(t, dir, o)
		what := fmt.Sprintf("readded at %s from the rebuilt catalog", cp.name)
		if cp.name == "before" {
			if err != nil {
				t.Errorf("%s: %v", what, err)
			} else {
				checkRestored(t, c, target, o.TargetTable, cp.tables["readded"], what)
			}
			continue
		}
		if !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "public.readded") ||
			!strings.Contains(err.Error(), "cannot be restored exactly") {
			t.Errorf("%s: want the open span's refusal, got %v", what, err)
		}
	}
	// The name: the old table up to its drop, the new one after it; and
	// the partitioned table as its tree was, at each moment.
	checkSpanRestores(t, c, dir, target, "zz", cps, func(string) bool { return false }, "")
	for _, cp := range cps {
		// Without --verify: the restore of a partitioned table reports no
		// checksum of the rows it sent; the rows are compared below.
		o := restore.NewOptions()
		o.Table, o.Until, o.TargetConn = "pm", cp.at, connConfig(t, target)
		o.TargetTable = "r_pm_" + strings.ReplaceAll(cp.name, "-", "_")
		what := fmt.Sprintf("pm at %s from the rebuilt catalog", cp.name)
		if _, err := runRestore(t, dir, o); err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		checkRestored(t, c, target, o.TargetTable, cp.tables["pm"], what)
	}
}
