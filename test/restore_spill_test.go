package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"lbt/test/lbtrun"
)

// lbt restore with a memory budget of a few KiB, which spills the reduced
// changes to files many times, gives the same table as a restore that keeps
// them in memory, and both equal the source at each moment: updates with
// and without key changes (twice over), unchanged TOAST values taken from
// the basebackup through key changes, deletes, inserts, a table without a
// key, and a TRUNCATE with changes after it.
func TestRestore_SpillEqualsInMemory(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `
		CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
		ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
		CREATE TABLE bag (tag text, n int, big text);
		ALTER TABLE bag REPLICA IDENTITY FULL;
		ALTER TABLE bag ALTER COLUMN big SET STORAGE EXTERNAL;`)
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	// Bodies of 3 kB, stored out of line: an update that leaves them alone
	// streams them as unchanged TOAST values.
	c.Exec(t, dsn, `INSERT INTO docs SELECT g, 'doc ' || g, repeat(md5(g::text), 100) FROM generate_series(1, 2000) g`)
	c.Exec(t, dsn, `INSERT INTO bag SELECT 't' || (g % 50), g % 7, CASE WHEN g % 3 = 0 THEN repeat(md5(g::text), 100) END FROM generate_series(1, 600) g`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "docs", "bag")

	tables := map[string]string{"docs": "docs", "bag": "bag"}
	var cps []checkpoint
	phase := func(name string, stmts ...string) {
		execEach(t, c, dsn, stmts...)
		cps = append(cps, recordCheckpoint(t, c, dsn, name, tables))
	}
	phase("changes",
		`UPDATE docs SET title = 'third ' || id WHERE id % 3 = 0`,
		`UPDATE docs SET id = id + 10000, title = 'moved' WHERE id % 7 = 0`,
		`DELETE FROM docs WHERE id % 11 = 0`,
		`INSERT INTO docs SELECT g, 'new ' || g, repeat(md5(g::text), 90) FROM generate_series(3000, 3400) g`,
		`UPDATE docs SET title = 'new, updated' WHERE id BETWEEN 3000 AND 3100`,
		`DELETE FROM bag WHERE ctid IN (SELECT min(ctid) FROM bag GROUP BY tag)`,
		`UPDATE bag SET n = n + 100 WHERE tag IN ('t1', 't2', 't3')`,
		`INSERT INTO bag SELECT 'new', g % 3, NULL FROM generate_series(1, 100) g`,
	)
	phase("moved again",
		`UPDATE docs SET title = 'moved, retitled' WHERE id > 10000`,
		`UPDATE docs SET id = id + 100000 WHERE id > 10000 AND id % 5 = 0`,
		`UPDATE docs SET body = 'short now' WHERE id % 13 = 0`,
		`DELETE FROM bag WHERE tag = 'new' AND n = 1`,
	)
	phase("truncated",
		`BEGIN; INSERT INTO docs VALUES (-1, 'gone', 'gone'); TRUNCATE docs, bag;
		 INSERT INTO docs SELECT g, 'after ' || g, repeat(md5(g::text), 80) FROM generate_series(1, 500) g;
		 INSERT INTO bag SELECT 'after', g % 4, repeat(md5(g::text), 80) FROM generate_series(1, 200) g; COMMIT`,
		`UPDATE docs SET title = 'after, updated' WHERE id % 2 = 0`,
		`UPDATE docs SET id = id + 1000 WHERE id % 3 = 0`,
		`UPDATE bag SET n = n + 10 WHERE n = 2`,
	)
	waitArchived(t, c, dsn, dir)

	cfg := writeConfig(t, c, dsn, dir, "unused")
	for i, cp := range cps {
		for _, name := range sortedKeys(tables) {
			for _, memory := range []string{"4KiB", "0"} {
				restored := fmt.Sprintf("%s_%d_%s", name, i, strings.ToLower(strings.TrimSuffix(memory, "KiB")))
				code, out := lbtrun.Run(t, "restore", "--config", cfg, "--table", name, "--until", cp.at.Format(time.RFC3339Nano),
					"--target-dsn", target, "--target-table", restored, "--memory", memory, "--verify")
				if code != 0 {
					t.Fatalf("restore of %s at %s with --memory %s exited %d:\n%s", name, cp.name, memory, code, out)
				}
				if spilled := strings.Contains(out, "spilled to tempDir"); spilled != (memory != "0") {
					t.Errorf("restore of %s at %s with --memory %s: spilled %v:\n%s", name, cp.name, memory, spilled, out)
				}
				checkRestored(t, c, target, restored, cp.tables[name], fmt.Sprintf("%s at %s, --memory %s", name, cp.name, memory))
			}
		}
	}
}
