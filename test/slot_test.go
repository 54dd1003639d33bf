package test

import (
	"context"
	"strings"
	"testing"
	"time"

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
