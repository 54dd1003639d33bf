package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"lbt/basebackup"
	"lbt/restore"
	"lbt/setup"
	"lbt/test/pgtest"
)

// shapeCase is one schema change the stream cannot carry (or, for
// TRUNCATE, one it can), on a table of its own.
type shapeCase struct {
	table, create, before, ddl, after, later string
	inexact                                  bool   // restores between the change and the next basebackup are refused
	reason                                   string // part of the refusal
}

// Each change rewrites rows on the source without a word in the stream:
// restores after it and before the basebackup the daemon then takes at
// once are refused with the span named; before it, after that basebackup,
// and later, they equal the source exactly. A TRUNCATE, which the stream
// carries, is exact throughout and needs no basebackup.
func TestRestore_ChangesTheStreamCannotCarry(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	cases := []shapeCase{{
		table:   "retyped",
		create:  `CREATE TABLE retyped (id int PRIMARY KEY, amount int, label varchar(20)); INSERT INTO retyped SELECT g, g, 'item ' || g FROM generate_series(1, 5) g`,
		before:  `UPDATE retyped SET amount = 10 WHERE id = 1`,
		ddl:     `ALTER TABLE retyped ALTER amount TYPE bigint USING amount * 100, ALTER label TYPE varchar(40) USING upper(label)`,
		after:   `INSERT INTO retyped VALUES (6, 6, 'item 6')`,
		later:   `UPDATE retyped SET amount = amount + 1 WHERE id = 2`,
		inexact: true, reason: "ALTER TABLE changed the type of column amount from integer to bigint",
	}, {
		table:   "readded",
		create:  `CREATE TABLE readded (id int PRIMARY KEY, w int, v text); INSERT INTO readded SELECT g, g, 'old v' || g FROM generate_series(1, 5) g`,
		before:  `UPDATE readded SET w = 10 WHERE id = 1`,
		ddl:     `ALTER TABLE readded DROP COLUMN v, ADD COLUMN v text`,
		after:   `INSERT INTO readded VALUES (6, 6, 'new v6')`,
		later:   `UPDATE readded SET v = 'later' WHERE id = 2`,
		inexact: true, reason: "column v was dropped and added again",
	}, {
		table:   "stamped",
		create:  `CREATE TABLE stamped (id int PRIMARY KEY, n int); INSERT INTO stamped SELECT g, g FROM generate_series(1, 5) g`,
		before:  `UPDATE stamped SET n = 10 WHERE id = 1`,
		ddl:     `ALTER TABLE stamped ADD COLUMN at timestamptz DEFAULT clock_timestamp()`,
		after:   `INSERT INTO stamped (id, n) VALUES (6, 6)`,
		later:   `UPDATE stamped SET n = 20 WHERE id = 2`,
		inexact: true, reason: "added column at with a volatile default",
	}, {
		// VACUUM FULL keeps the values, but lbt cannot tell it from a
		// rewrite that changes them (ALTER COLUMN TYPE to the same type
		// USING an expression): it is refused too.
		table:   "vacuumed",
		create:  `CREATE TABLE vacuumed (id int PRIMARY KEY, n int); INSERT INTO vacuumed SELECT g, g FROM generate_series(1, 5) g`,
		before:  `UPDATE vacuumed SET n = 10 WHERE id = 1`,
		ddl:     `VACUUM FULL vacuumed`,
		after:   `INSERT INTO vacuumed VALUES (6, 6)`,
		later:   `UPDATE vacuumed SET n = 20 WHERE id = 6`,
		inexact: true, reason: "the rows of public.vacuumed were rewritten",
	}, {
		table:  "truncated",
		create: `CREATE TABLE truncated (id int PRIMARY KEY, n int); INSERT INTO truncated SELECT g, g FROM generate_series(1, 5) g`,
		before: `UPDATE truncated SET n = 10 WHERE id = 1`,
		ddl:    `TRUNCATE truncated`,
		after:  `INSERT INTO truncated VALUES (6, 6)`,
		later:  `UPDATE truncated SET n = 20 WHERE id = 6`,
	}}
	tables := map[string]string{}
	for _, sc := range cases {
		c.Exec(t, dsn, sc.create)
		tables[sc.table] = sc.table
	}
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, sortedKeys(tables)...)

	var cps []checkpoint
	cp := func(name string) { cps = append(cps, recordCheckpoint(t, c, dsn, name, tables)) }
	each := func(stmt func(shapeCase) string) {
		for _, sc := range cases {
			c.Exec(t, dsn, stmt(sc))
		}
	}
	cp("before")
	each(func(sc shapeCase) string { return sc.before })
	cp("last-change-before-ddl") // after the table's last change before the DDL
	each(func(sc shapeCase) string { return sc.ddl })
	cp("after-ddl")
	each(func(sc shapeCase) string { return sc.after })
	cp("after-next-change")
	// The scheduler starts only now, so that no basebackup falls before
	// the moments above: it takes one of each table with an open span.
	waitArchived(t, c, dsn, dir)
	runScheduler(t, dsn, dir, nil)
	waitFor(t, "the basebackups of the changed tables", 60*time.Second, func() bool {
		for _, sc := range cases {
			if !sc.inexact {
				continue
			}
			bbs := basebackupsOf(t, dir, sc.table)
			if len(bbs) == 0 || bbs[len(bbs)-1].Reason != basebackup.ReasonInexact {
				return false
			}
		}
		return true
	})
	cp("after-basebackup")
	each(func(sc shapeCase) string { return sc.later })
	cp("later")
	waitArchived(t, c, dsn, dir)
	for _, sc := range cases {
		if !sc.inexact {
			if bbs := basebackupsOf(t, dir, sc.table); bbs[len(bbs)-1].Reason == basebackup.ReasonInexact {
				t.Errorf("%s: a basebackup for an inexact span after a change the stream carries", sc.table)
			}
		}
	}

	// Inside the span: from the table's last change before the DDL (when
	// the DDL happened is not in the stream) to the basebackup.
	inside := map[string]bool{"last-change-before-ddl": true, "after-ddl": true, "after-next-change": true}
	for _, sc := range cases {
		checkSpanRestores(t, c, dir, target, sc.table, cps, func(cp string) bool { return sc.inexact && inside[cp] }, sc.reason)
	}
}

// checkSpanRestores restores a table at each checkpoint, by time and by
// LSN: at the moments refused says, the restore is refused with the span
// and its reason named; at the others it equals the source exactly.
func checkSpanRestores(t *testing.T, c *pgtest.Cluster, dir, target, table string, cps []checkpoint, refused func(cp string) bool, reason string) {
	t.Helper()
	for _, cp := range cps {
		for _, byLSN := range []bool{false, true} {
			o := restore.NewOptions()
			o.Table, o.TargetConn, o.Verify = table, connConfig(t, target), true
			o.TargetTable = fmt.Sprintf("r_%s_%s", table, strings.ReplaceAll(cp.name, "-", "_"))
			what := fmt.Sprintf("%s at %s by time", table, cp.name)
			if byLSN {
				lsn, err := pglogrepl.ParseLSN(cp.lsn)
				if err != nil {
					t.Fatal(err)
				}
				o.LSN, o.TargetTable, what = uint64(lsn), o.TargetTable+"_lsn", fmt.Sprintf("%s at %s by LSN", table, cp.name)
			} else {
				o.Until = cp.at
			}
			_, err := runRestore(t, dir, o)
			if refused(cp.name) {
				if !errors.Is(err, restore.ErrNotRestorable) {
					t.Errorf("%s: want a refusal, got %v", what, err)
					continue
				}
				for _, s := range []string{reason, "cannot be restored exactly", "nearest restorable moments", "can be restored from"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("%s: the refusal does not say %q: %v", what, s, err)
					}
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("%s: the refusal is not one line: %v", what, err)
				}
				t.Logf("%s: %v", what, err)
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", what, err)
				continue
			}
			checkRestored(t, c, target, o.TargetTable, cp.tables[table], what)
		}
	}
}

// With DDL capture (lbt setup --capture-ddl), the DDL's own transaction
// carries its command: the daemon looks at the table at that commit, so
// that the span starts at the DDL, not at the table's change before it,
// and the basebackup is taken without waiting for the table's next change.
// The moment before the DDL is then exact, the latest state right after it
// is refused (not silently the old rows), and after the basebackup all is
// exact again.
func TestRestore_CapturedDDLStartsTheSpanAtItsCommit(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `CREATE TABLE retyped (id int PRIMARY KEY, amount int, label varchar(20));
		INSERT INTO retyped SELECT g, g, 'item ' || g FROM generate_series(1, 5) g`)
	conn := c.Connect(t, dsn)
	if _, err := setup.Install(context.Background(), conn, setup.Options{Publication: "lbt", CaptureDDL: true, LockTimeout: "10s"}); err != nil {
		t.Fatal(err)
	}
	tables := map[string]string{"retyped": "retyped"}
	var slot string
	keepSlot := keepFirstSlot(&slot)
	d := startBackup(t, c, dsn, dir, keepSlot)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "retyped")

	var cps []checkpoint
	cp := func(name string) { cps = append(cps, recordCheckpoint(t, c, dsn, name, tables)) }
	c.Exec(t, dsn, `UPDATE retyped SET amount = 11 WHERE id = 1`)
	cp("last-change-before-ddl")
	// The UPDATE is the table's first change of the session: its Relation
	// message makes the daemon read the table on the source as it is then.
	// Archived before the ALTER runs, it reads the types before the DDL;
	// otherwise it would see the DDL's rewrite early and start a second,
	// earlier span (refused, so safe, but not what this test checks).
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `ALTER TABLE retyped ALTER amount TYPE bigint USING amount * 100, ALTER label TYPE varchar(40) USING upper(label)`)
	cp("after-ddl")
	waitArchived(t, c, dsn, dir)
	// Before the table changes again, and before its basebackup: the
	// latest state is refused, not the old rows.
	o := restore.NewOptions()
	o.Table, o.TargetConn = "retyped", connConfig(t, target)
	if _, err := runRestore(t, dir, o); !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "once the table's next basebackup completes") {
		t.Errorf("latest state right after the DDL: want a refusal, got %v", err)
	}
	// The scheduler takes the basebackup without the table changing again.
	runScheduler(t, dsn, dir, nil)
	waitFor(t, "the basebackup after the DDL", 60*time.Second, func() bool {
		bbs := basebackupsOf(t, dir, "retyped")
		return bbs[len(bbs)-1].Reason == basebackup.ReasonInexact
	})
	cp("after-basebackup")
	// The daemon restarts before the table's next change, whose Relation
	// message shows the new types: compared with the description the DDL
	// gave, which the archive keeps, that is no new span.
	d.stop()
	startBackup(t, c, dsn, dir, keepSlot)
	c.Exec(t, dsn, `INSERT INTO retyped VALUES (6, 6, 'item 6')`)
	cp("later")
	waitArchived(t, c, dsn, dir)
	if n := countArchived(t, dir, `SELECT count(*) FROM table_gap`); n != 1 {
		t.Errorf("%d inexact spans, want the one of the DDL", n)
	}
	checkSpanRestores(t, c, dir, target, "retyped", cps, func(cp string) bool { return cp == "after-ddl" },
		"ALTER TABLE changed the type of column amount from integer to bigint")
}

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
