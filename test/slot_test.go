package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"lbt/catalog"
	"lbt/restore"
	"lbt/test/pgtest"
)

// keepFirstSlot returns an option that makes every daemon started with it
// use the slot of the first one, whose name it stores in *slot: a daemon
// restarted after its slot was dropped makes the same slot again.
func keepFirstSlot(slot *string) func(*ingestOptions) {
	return func(o *ingestOptions) {
		if *slot == "" {
			*slot = o.Slot
		}
		o.Slot = *slot
	}
}

// While the archived database is idle and another database writes a lot,
// the slot's confirmed position follows the WAL, so that the source does
// not pile up WAL for lbt.
func TestBackup_IdleSlotAdvancesWithOtherDatabasesWAL(t *testing.T) {
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	busy := c.NewDatabase(t)
	dir := t.TempDir()
	var slot string
	startBackup(t, c, dsn, dir, func(o *ingestOptions) { slot = o.Slot })
	waitArchived(t, c, dsn, dir)

	c.Exec(t, busy, `CREATE TABLE noise AS SELECT g, md5(g::text) FROM generate_series(1, 200000) g`)
	target := c.QueryString(t, busy, `SELECT pg_current_wal_lsn()`)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		state := c.QueryString(t, dsn, `SELECT CASE WHEN confirmed_flush_lsn >= '`+target+`'::pg_lsn THEN 'caught up' END
			FROM pg_replication_slots WHERE slot_name = '`+slot+`'`)
		if state == "caught up" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("slot %s did not advance to %s while idle: %s", slot, target,
		c.QueryString(t, dsn, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '`+slot+`'`))
}

// dropReleasedSlot drops a stopped daemon's slot. The walsender that held
// it ends a moment after the daemon closed its connection, and an active
// slot cannot be dropped: wait for the release first.
func dropReleasedSlot(t *testing.T, c *pgtest.Cluster, dsn, slot string) {
	t.Helper()
	waitFor(t, "the slot to be released", time.Minute, func() bool {
		return c.QueryString(t, dsn, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = '`+slot+`' AND active`) == "0"
	})
	c.Exec(t, dsn, `SELECT pg_drop_replication_slot('`+slot+`')`)
}

// A slot that disappeared while lbt was stopped is created again, and the
// archive starts a new epoch that names the gap instead of hiding it.
func TestBackup_LostSlotStartsNewEpoch(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY)`)
	var slot string
	keepSlot := keepFirstSlot(&slot)
	d := startBackup(t, c, dsn, dir, keepSlot)
	waitArchived(t, c, dsn, dir)
	d.stop()
	dropReleasedSlot(t, c, dsn, slot)
	c.Exec(t, dsn, `INSERT INTO t VALUES (1)`) // lost: no slot keeps it
	startBackup(t, c, dsn, dir, keepSlot)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO t VALUES (2)`)
	waitArchived(t, c, dsn, dir)

	cat := openArchive(t, dir)
	defer cat.Close()
	epochs, err := cat.Epochs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(epochs) != 2 || !strings.Contains(epochs[1].Reason, "was missing") || !strings.Contains(epochs[1].Reason, "not archived") {
		t.Fatalf("epochs: %+v", epochs)
	}
	_, changes := readArchive(t, dir, "t")
	if len(changes) != 1 || *changes[0].New[0] != "2" {
		t.Fatalf("archived changes of t: %+v", changes)
	}
}

// The slot is dropped while lbt is stopped, and a row is inserted that no
// slot keeps. The new epoch records the gap, and a restore to a moment in
// it, by time or by LSN, is refused with both sides of the gap named, where
// it used to return the state before the gap. Moments before the gap, and
// after the new epoch's basebackup, restore exactly.
func TestRestore_RefusesTargetsInHistoryGap(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v int)`)
	tables := map[string]string{"t": "t"}
	var slot string
	keepSlot := keepFirstSlot(&slot)
	d := startBackup(t, c, dsn, dir, keepSlot)
	c.Exec(t, dsn, `INSERT INTO t VALUES (1, 100)`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "t")
	c.Exec(t, dsn, `UPDATE t SET v = 50 WHERE id = 1`)
	c.Exec(t, dsn, `INSERT INTO t VALUES (2, 50)`)
	before := recordCheckpoint(t, c, dsn, "before", tables)
	waitArchived(t, c, dsn, dir) // the old epoch's last archived transaction
	// After the last archived transaction nothing proves the old epoch
	// complete: the daemon may not have received what came next.
	gapStart := recordCheckpoint(t, c, dsn, "gap-start", tables)
	d.stop()
	dropReleasedSlot(t, c, dsn, slot)
	c.Exec(t, dsn, `INSERT INTO t VALUES (3, 100)`) // lost: no slot keeps it
	inGap := recordCheckpoint(t, c, dsn, "in-gap", tables)
	if before.tables["t"].sum == inGap.tables["t"].sum {
		t.Fatal("the lost insert did not change the table")
	}

	startBackup(t, c, dsn, dir, keepSlot)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "t")
	afterBase := recordCheckpoint(t, c, dsn, "after-basebackup", tables)
	c.Exec(t, dsn, `UPDATE t SET v = v + 1 WHERE id = 3`)
	later := recordCheckpoint(t, c, dsn, "later", tables)
	waitArchived(t, c, dsn, dir)

	// The two sides of the gap, as the catalog has them.
	cat := openArchive(t, dir)
	epochs, err := cat.Epochs(context.Background())
	if err != nil || len(epochs) != 2 {
		t.Fatalf("epochs: %+v, %v", epochs, err)
	}
	var lastLSN int64
	if err := cat.DB().QueryRow(`SELECT max(commit_lsn) FROM tx WHERE commit_lsn < ?`, int64(epochs[1].StartLSN)).Scan(&lastLSN); err != nil {
		t.Fatal(err)
	}
	cat.Close()
	sides := []string{"gap", catalog.FormatLSN(uint64(lastLSN)), catalog.FormatLSN(epochs[1].StartLSN), "can be restored from"}

	n := 0
	check := func(cp checkpoint, byLSN, wantRefused bool) {
		t.Helper()
		n++
		o := restore.NewOptions()
		o.Table, o.TargetConn, o.Verify = "t", connConfig(t, target), true
		o.TargetTable = fmt.Sprintf("r%d_%s", n, strings.ReplaceAll(cp.name, "-", "_"))
		what := cp.name + " by time"
		if byLSN {
			lsn, err := pglogrepl.ParseLSN(cp.lsn)
			if err != nil {
				t.Fatal(err)
			}
			o.LSN, what = uint64(lsn), cp.name+" by LSN"
		} else {
			o.Until = cp.at
		}
		_, err := runRestore(t, dir, o)
		if wantRefused {
			if !errors.Is(err, restore.ErrNotRestorable) {
				t.Errorf("%s: want a refusal, got %v", what, err)
				return
			}
			for _, s := range sides {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%s: the refusal does not name %q: %v", what, s, err)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: the refusal is not one line: %v", what, err)
			}
			return
		}
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		checkRestored(t, c, target, o.TargetTable, cp.tables["t"], what)
	}
	for _, byLSN := range []bool{false, true} {
		check(before, byLSN, false)
		check(gapStart, byLSN, true)
		check(inGap, byLSN, true)
		check(afterBase, byLSN, false)
		check(later, byLSN, false)
	}
}
