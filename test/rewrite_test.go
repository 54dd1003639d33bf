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
