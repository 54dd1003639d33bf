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
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/basebackup"
	"lbt/restore"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// A range-partitioned table with two leaves; a third table with rows of
// its own (its columns in another order) that is attached later; a
// partitioned table that only serves to hold off lbt's looks at the trees.
const partitionSQL = `
	CREATE TABLE measurements (id int, at date, v int, note text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
	CREATE TABLE m_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
	CREATE TABLE m_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
	CREATE TABLE m_2026 (note text, v int, at date, id int, PRIMARY KEY (id, at));
	CREATE TABLE blocker (id int) PARTITION BY LIST (id);
	CREATE TABLE lsn_note (l pg_lsn);
	INSERT INTO measurements SELECT g, date '2024-01-01' + g * 3, g, 'n' || g FROM generate_series(1, 200) g;
	INSERT INTO m_2026 SELECT 'pre' || g, 10 * g, date '2026-01-01' + g, 1000 + g FROM generate_series(1, 50) g;`

var partitionTables = map[string]string{"parent": "measurements", "m_2024": "m_2024", "m_2025": "m_2025", "m_2026": "m_2026"}

// Restores of a partitioned table, and of each of its leaves, at moments
// around a basebackup, changes (one moving a row between partitions), an
// ATTACH of a table that already had rows and a DETACH, equal the source
// at that moment; a moment between two looks at the tree that saw
// different trees is refused with the span named, unless the DDL capture
// recorded the ATTACH. lbt basebackup --table of the partitioned table
// backs up its partitions.
func TestPartitions_RestoreParentAndLeavesAcrossAttachDetach(t *testing.T) {
	for _, capture := range []bool{false, true} {
		t.Run(fmt.Sprintf("capture-ddl=%t", capture), func(t *testing.T) { testPartitionTree(t, capture) })
	}
}

func testPartitionTree(t *testing.T, capture bool) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, partitionSQL)
	installCapture(t, c, dsn, capture)
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	cfg := writeConfig(t, c, dsn, dir, "unused", "trackNewTables: true")

	out := lbtBasebackup(t, cfg, "measurements")
	if !strings.Contains(out, "public.m_2024\t") || !strings.Contains(out, "public.m_2025\t") || strings.Count(out, "\n") != 2 {
		t.Fatalf("lbt basebackup --table measurements backed up:\n%s\nwant m_2024 and m_2025", out)
	}
	takeBasebackups(t, dsn, dir, "m_2026")

	var cps []checkpoint
	checkpointNow := func(name string) checkpoint {
		cp := recordCheckpoint(t, c, dsn, name, partitionTables)
		cps = append(cps, cp)
		return cp
	}
	checkpointNow("basebackup")
	waitLooked(t, c, dsn, dir)

	c.Exec(t, dsn, `UPDATE measurements SET v = v + 1000 WHERE id % 10 = 0`)
	c.Exec(t, dsn, `DELETE FROM measurements WHERE id % 7 = 0`)
	c.Exec(t, dsn, `INSERT INTO measurements VALUES (500, '2024-06-01', 5, 'new'), (501, '2025-06-01', 6, NULL)`)
	c.Exec(t, dsn, `UPDATE measurements SET at = at + 400, note = 'moved' WHERE id = 5`) // from m_2024 to m_2025
	c.Exec(t, dsn, `UPDATE m_2026 SET v = v + 1 WHERE id < 1010`)
	beforeAttach := checkpointNow("changes-1")
	waitLooked(t, c, dsn, dir)

	// The ATTACH and the changes after it happen while lbt cannot look at
	// the trees (a lock on blocker holds its looks off).
	hold := holdLooks(t, dsn)
	c.Exec(t, dsn, `BEGIN;
		ALTER TABLE measurements ATTACH PARTITION m_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
		INSERT INTO lsn_note SELECT pg_current_wal_lsn();
		COMMIT`)
	inAttach := c.QueryString(t, dsn, `SELECT l FROM lsn_note`) // before the ATTACH committed
	c.Exec(t, dsn, `INSERT INTO measurements VALUES (600, '2026-03-01', 60, 'via parent')`)
	c.Exec(t, dsn, `UPDATE m_2026 SET note = 'after attach' WHERE id = 1001`)
	attached := checkpointNow("attached")
	waitArchived(t, c, dsn, dir)
	hold()
	waitLooked(t, c, dsn, dir)

	c.Exec(t, dsn, `UPDATE measurements SET v = -v WHERE id IN (1, 100, 1002)`)
	checkpointNow("changes-3")
	waitLooked(t, c, dsn, dir)

	c.Exec(t, dsn, `ALTER TABLE measurements DETACH PARTITION m_2024`)
	waitLooked(t, c, dsn, dir)
	c.Exec(t, dsn, `UPDATE m_2024 SET note = 'detached' WHERE id = 2`) // no longer the parent's
	c.Exec(t, dsn, `INSERT INTO measurements VALUES (700, '2025-07-01', 70, 'after detach')`)
	checkpointNow("detached")
	waitLooked(t, c, dsn, dir)

	out = lbtBasebackup(t, cfg, "measurements")
	if !strings.Contains(out, "public.m_2025\t") || !strings.Contains(out, "public.m_2026\t") || strings.Contains(out, "m_2024") {
		t.Fatalf("lbt basebackup --table measurements after the DETACH backed up:\n%s\nwant m_2025 and m_2026", out)
	}
	c.Exec(t, dsn, `DELETE FROM measurements WHERE id = 1003`)
	c.Exec(t, dsn, `UPDATE measurements SET note = 'last' WHERE id = 8`)
	checkpointNow("after-basebackup-2")
	waitArchived(t, c, dsn, dir)
	waitLooked(t, c, dsn, dir)

	restoreOne := func(table string, o restore.Options, name string) (restore.Result, error) {
		o.Table = table
		o.TargetConn = connConfig(t, target)
		o.TargetTable = name
		o.Verify = true
		return runRestore(t, dir, o)
	}
	check := func(what, name string, res restore.Result, err error, want tableState) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		if res.Checksum != want.rowsum {
			t.Errorf("%s: restore reports checksum %s, want %s", what, res.Checksum, want.rowsum)
		}
		checkRestored(t, c, target, name, want, what)
	}
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "partition tree of public.measurements changed between LSN") ||
			!strings.Contains(err.Error(), "can be restored up to LSN") {
			t.Errorf("%s: want a refusal naming the span of the ATTACH, got %v", what, err)
		}
	}
	for i, cp := range cps {
		for _, logical := range sortedKeys(partitionTables) {
			if capture && logical != "parent" {
				continue // a leaf's restore does not depend on the capture
			}
			st := cp.tables[logical]
			for _, by := range []string{"time", "lsn"} {
				if by == "lsn" && logical != "parent" {
					continue
				}
				o := restore.NewOptions()
				if by == "time" {
					o.Until = cp.at
				} else {
					lsn, err := pglogrepl.ParseLSN(cp.lsn)
					if err != nil {
						t.Fatal(err)
					}
					o.LSN = uint64(lsn)
				}
				name := fmt.Sprintf("r%d_%s_%s", i, logical, by)
				what := fmt.Sprintf("%s at %s by %s", st.name, cp.name, by)
				res, err := restoreOne(st.name, o, name)
				if logical == "parent" && cp.name == attached.name && !capture {
					refused(what, err)
					continue
				}
				check(what, name, res, err, st)
			}
		}
	}

	// A moment inside the ATTACH's transaction: the tree before it.
	lsn, err := pglogrepl.ParseLSN(inAttach)
	if err != nil {
		t.Fatal(err)
	}
	o := restore.NewOptions()
	o.LSN = uint64(lsn)
	res, err := restoreOne("measurements", o, "in_attach")
	if capture {
		check("measurements inside the ATTACH's transaction", "in_attach", res, err, beforeAttach.tables["parent"])
	} else {
		refused("measurements inside the ATTACH's transaction", err)
	}

	// The latest state, and the --sql script of it, which psql loads into
	// an empty database.
	last := cps[len(cps)-1]
	res, err = restoreOne("measurements", restore.NewOptions(), "latest")
	check("measurements, latest", "latest", res, err, last.tables["parent"])
	// Loaded on two connections, whose jobs checksum the leaves' rows.
	o = restore.NewOptions()
	o.Jobs = 2
	res, err = restoreOne("measurements", o, "latest_jobs2")
	check("measurements, latest, 2 jobs", "latest_jobs2", res, err, last.tables["parent"])
	var buf bytes.Buffer
	o = restore.NewOptions()
	o.Table, o.Until, o.SQL, o.Verify = "measurements", last.at, &buf, true
	if _, err := runRestore(t, dir, o); err != nil {
		t.Fatalf("--sql measurements: %v", err)
	}
	if !strings.Contains(buf.String(), "-- Note: partition public.m_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01'): basebackup") {
		t.Errorf("--sql measurements: the header does not name the partitions:\n%.1500s", buf.String())
	}
	file := filepath.Join(t.TempDir(), "measurements.sql")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := c.NewDatabase(t)
	runPsql(t, c, empty, file)
	checkRestored(t, c, empty, "measurements", last.tables["parent"], "--sql measurements")

	// The command line names what it combined.
	p := lbtrun.Start(t, "restore", "--config", cfg, "--table", "measurements", "--target-dsn", target, "--target-table", "cli_latest")
	if code := p.Wait(t, time.Minute); code != 0 || !strings.Contains(p.Output(), "restored public.measurements as of ") ||
		!strings.Contains(p.Output(), "2 partitions, their basebackups + ") {
		t.Errorf("lbt restore --table measurements: exit %d:\n%s", code, p.Output())
	}
	checkRestored(t, c, target, "cli_latest", last.tables["parent"], "lbt restore --table measurements")
}

// With a publication made by hand with publish_via_partition_root, the
// partitioned table is archived as one table: it restores as one, until a
// partition attached with its rows changes it without a change in the
// stream; then restores are refused until its next basebackup, which the
// scheduler takes.
func TestPartitions_PublishedViaRootRefusesAfterAttach(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, partitionSQL+`
		CREATE PUBLICATION lbt FOR ALL TABLES WITH (publish_via_partition_root = true);`)
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	cfg := writeConfig(t, c, dsn, dir, "unused", "trackNewTables: true")
	if out := lbtBasebackup(t, cfg, "measurements"); !strings.HasPrefix(out, "public.measurements\t") || strings.Count(out, "\n") != 1 {
		t.Fatalf("lbt basebackup --table measurements backed up:\n%s\nwant measurements as one table", out)
	}
	takeBasebackups(t, dsn, dir, "m_2026")

	restoreAt := func(cp checkpoint, logical, name string) (restore.Result, error) {
		return runRestore(t, dir, restoreOptionsAt(t, cp.tables[logical].name, cp.at, target, name))
	}
	tables := map[string]string{"parent": "measurements", "m_2026": "m_2026"}
	c.Exec(t, dsn, `UPDATE measurements SET v = v + 1 WHERE id % 3 = 0`)
	c.Exec(t, dsn, `DELETE FROM measurements WHERE id = 4`)
	before := recordCheckpoint(t, c, dsn, "before", tables)
	waitArchived(t, c, dsn, dir)
	waitLooked(t, c, dsn, dir)

	c.Exec(t, dsn, `ALTER TABLE measurements ATTACH PARTITION m_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`)
	waitLooked(t, c, dsn, dir)
	c.Exec(t, dsn, `UPDATE measurements SET note = 'x' WHERE id = 1`)
	after := recordCheckpoint(t, c, dsn, "after", tables)
	waitArchived(t, c, dsn, dir)
	waitLooked(t, c, dsn, dir)

	res, err := restoreAt(before, "parent", "before")
	if err != nil {
		t.Fatalf("measurements before the ATTACH: %v", err)
	}
	if res.Checksum != before.tables["parent"].rowsum {
		t.Errorf("measurements before the ATTACH: checksum %s, want %s", res.Checksum, before.tables["parent"].rowsum)
	}
	checkRestored(t, c, target, "before", before.tables["parent"], "measurements before the ATTACH")
	if _, err := restoreAt(after, "parent", "after"); !errors.Is(err, restore.ErrNotRestorable) ||
		!strings.Contains(err.Error(), "the partitions of public.measurements changed between LSN") || !strings.Contains(err.Error(), "lbt basebackup --table public.measurements") {
		t.Errorf("measurements after the ATTACH: want a refusal asking for a basebackup, got %v", err)
	}
	// m_2026's own changes now reach the stream as the root's.
	if _, err := restoreAt(after, "m_2026", "after_m_2026"); !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "as its partition root's") {
		t.Errorf("m_2026 after the ATTACH: want a refusal naming the root, got %v", err)
	}

	// The scheduler takes a basebackup of the root because its tree changed.
	runScheduler(t, dsn, dir, nil)
	waitFor(t, "a basebackup of measurements after the ATTACH", time.Minute, func() bool {
		return countArchived(t, dir, `SELECT count(*) FROM basebackup WHERE reason = ?`, basebackup.ReasonPartitionTree) > 0
	})
	c.Exec(t, dsn, `UPDATE measurements SET note = 'y' WHERE id = 1002`)
	later := recordCheckpoint(t, c, dsn, "later", tables)
	waitArchived(t, c, dsn, dir)
	waitLooked(t, c, dsn, dir)
	res, err = restoreAt(later, "parent", "later")
	if err != nil {
		t.Fatalf("measurements after its new basebackup: %v", err)
	}
	if res.Checksum != later.tables["parent"].rowsum {
		t.Errorf("measurements after its new basebackup: checksum %s, want %s", res.Checksum, later.tables["parent"].rowsum)
	}
	checkRestored(t, c, target, "later", later.tables["parent"], "measurements after its new basebackup")
}

// waitLooked waits until lbt has looked at the partition trees after
// everything committed so far.
func waitLooked(t *testing.T, c *pgtest.Cluster, dsn, dir string) {
	t.Helper()
	lsn, err := pglogrepl.ParseLSN(c.QueryString(t, dsn, `SELECT pg_current_wal_lsn()`))
	if err != nil {
		t.Fatal(err)
	}
	// A look covers what committed before its LSN: one at this very LSN
	// would not cover a commit that starts there. Something must write.
	c.Exec(t, dsn, `SELECT pg_logical_emit_message(false, 'lbt.test.nudge', '')`)
	waitFor(t, "a look at the partition trees", time.Minute, func() bool {
		return countArchived(t, dir, `SELECT count(*) FROM partition_tree WHERE to_lsn > ?`, int64(lsn)) > 0
	})
}

// holdLooks keeps lbt from looking at the partition trees until the
// returned function is called: a transaction holds a lock on blocker that
// the looks cannot take.
func holdLooks(t *testing.T, dsn string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgconn.ConnectConfig(ctx, connConfig(t, dsn))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `BEGIN; LOCK TABLE ONLY blocker IN SHARE UPDATE EXCLUSIVE MODE`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if !done {
			done = true
			conn.Exec(ctx, `COMMIT`).ReadAll()
			conn.Close(ctx)
		}
	}
	t.Cleanup(release)
	return release
}
