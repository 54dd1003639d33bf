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
