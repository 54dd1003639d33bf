package test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"lbt/restore"
)

// A DDL that rewrites a quiet table sends nothing down the stream until
// the table's next change, which may never come: without DDL capture, the
// latest restore would give the old rows for ever. The daemon's periodic
// look at the archived tables sees the new storage and types; once the
// stream has caught up with that look and nothing explained the change, the
// span from the table's last change is refused and the basebackup taken
// at once makes the latest state exact again (issue #11, points 1 and 4).
func TestRestore_QuietTableRewrittenWithoutCapture(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	startBackup(t, c, dsn, dir, func(o *ingestOptions) { o.DropCheckInterval = 300 * time.Millisecond })
	runScheduler(t, dsn, dir, nil)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `CREATE TABLE quiet (id int PRIMARY KEY, amount int, label varchar(20));
		INSERT INTO quiet SELECT g, g, 'item ' || g FROM generate_series(1, 50) g`)
	waitArchived(t, c, dsn, dir)
	waitFor(t, "the new table's basebackup", 60*time.Second, func() bool { return len(basebackupsOf(t, dir, "quiet")) == 1 })
	before := recordCheckpoint(t, c, dsn, "before", map[string]string{"quiet": "quiet"})
	time.Sleep(10 * time.Millisecond) // before.at is before the DDL's commit

	c.Exec(t, dsn, `ALTER TABLE quiet ALTER amount TYPE bigint USING amount * 100, ALTER label TYPE varchar(40) USING upper(label)`)
	after := recordCheckpoint(t, c, dsn, "after", map[string]string{"quiet": "quiet"})
	waitFor(t, "the rewrite to be seen without a change of the table", 60*time.Second, func() bool {
		return countArchived(t, dir, `SELECT count(*) FROM table_gap`) == 1
	})
	waitFor(t, "the basebackup that closes the span", 60*time.Second, func() bool {
		return countArchived(t, dir, `SELECT count(*) FROM table_gap WHERE to_lsn IS NOT NULL`) == 1
	})
	waitArchived(t, c, dsn, dir)

	// At the table's last change before the DDL: exact. After it, until
	// the basebackup: refused, since without capture the DDL is only known
	// to lie somewhere after that change. Now: the rewritten rows.
	last := uint64(countArchived(t, dir, `SELECT max(b.last_lsn) FROM blob b
		WHERE b.table_id = (SELECT table_id FROM schema_version WHERE relname = 'quiet' LIMIT 1)`))
	if _, err := runRestore(t, dir, restore.Options{Table: "quiet", LSN: last, TargetConn: connConfig(t, target), TargetTable: "quiet_before"}); err != nil {
		t.Fatalf("restore before the DDL: %v", err)
	}
	checkRestored(t, c, target, "quiet_before", before.tables["quiet"], "before the DDL")
	_, err := runRestore(t, dir, restore.Options{Table: "quiet", Until: before.at, TargetConn: connConfig(t, target), TargetTable: "quiet_inside"})
	if !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "cannot be restored exactly") {
		t.Fatalf("restore after the table's last change: %v, want a refusal naming the span", err)
	}
	if _, err := runRestore(t, dir, restore.Options{Table: "quiet", TargetConn: connConfig(t, target), TargetTable: "quiet_latest"}); err != nil {
		t.Fatalf("restore of the latest state: %v", err)
	}
	checkRestored(t, c, target, "quiet_latest", after.tables["quiet"], "the latest state")
}

// pgoutput may send a table's Relation message before any of its changes,
// and the daemon then looks the table up on the source as it is now, which
// may be after a TRUNCATE that the stream has not brought yet: the new
// storage is explained once the TRUNCATE arrives, and no span of the
// table is refused. Stopping the daemon while the table changes makes that
// certain: a new walsender session sends a Relation message before the
// table's first change, the DELETE, while the source already shows the
// storage of the TRUNCATE after it. A rewrite that no TRUNCATE explains,
// made the same way, is still refused.
func TestRestore_TruncateNotYetStreamedIsNoRewrite(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `CREATE TABLE bag (id int, v text);
		ALTER TABLE bag REPLICA IDENTITY FULL;
		CREATE TABLE keyed (id int PRIMARY KEY, v text);
		CREATE TABLE rw (id int PRIMARY KEY, n int)`)
	var slot string
	keepSlot := keepFirstSlot(&slot)
	d := startBackup(t, c, dsn, dir, keepSlot)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO bag VALUES (1, 'a'), (1, 'a'), (2, 'b');
		INSERT INTO keyed SELECT g, 'k' || g FROM generate_series(1, 5) g;
		INSERT INTO rw SELECT g, g FROM generate_series(1, 5) g`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "bag", "keyed", "rw")
	d.stop()

	tables := map[string]string{"bag": "bag", "keyed": "keyed"}
	c.Exec(t, dsn, `DELETE FROM bag WHERE id = 2; UPDATE keyed SET v = 'changed' WHERE id = 1; UPDATE rw SET n = 0 WHERE id = 1`)
	deleted := recordCheckpoint(t, c, dsn, "deleted", tables)
	c.Exec(t, dsn, `TRUNCATE bag, keyed`)
	c.Exec(t, dsn, `ALTER TABLE rw ALTER n TYPE int USING n * 2`) // same type: only the storage tells
	c.Exec(t, dsn, `INSERT INTO bag VALUES (3, 'c'); INSERT INTO keyed VALUES (6, 'k6'); INSERT INTO rw VALUES (6, 6)`)
	refilled := recordCheckpoint(t, c, dsn, "refilled", tables)
	startBackup(t, c, dsn, dir, keepSlot)
	waitArchived(t, c, dsn, dir)

	if gaps := countArchived(t, dir, `SELECT count(*) FROM table_gap`); gaps != 1 {
		t.Errorf("%d inexact spans, want one, of rw: every change of bag and keyed was in the stream", gaps)
	}
	_, err := runRestore(t, dir, restore.Options{Table: "rw", Until: refilled.at, TargetConn: connConfig(t, target), TargetTable: "rw_refilled"})
	if !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "the rows of public.rw were rewritten") {
		t.Errorf("restore of rw after its unstreamed rewrite: %v, want a refusal naming the rewrite", err)
	}
	for _, cp := range []checkpoint{deleted, refilled} {
		for _, table := range sortedKeys(tables) {
			into := table + "_" + cp.name
			_, err := runRestore(t, dir, restore.Options{Table: table, Until: cp.at, TargetConn: connConfig(t, target), TargetTable: into, Verify: true})
			if err != nil {
				t.Errorf("restore of %s at %s: %v", table, cp.name, err)
				continue
			}
			checkRestored(t, c, target, into, cp.tables[table], table+" at "+cp.name)
		}
	}
}
