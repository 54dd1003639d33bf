package test

import (
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/test/lbtrun"
)

// lbt stopped in the middle of a transaction too large to hold in memory,
// one it is writing out as it arrives, archives it exactly once after a
// restart: what it wrote before the stop is abandoned, and the server sends
// the whole transaction again.
func TestBackup_StopDuringLargeTransaction(t *testing.T) {
	const rows = 500_000 // about 50 MB of changes: lbt writes it out from 4 MB
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			c, dsn, dir := newSource(t)
			c.Exec(t, dsn, `CREATE TABLE big (id int PRIMARY KEY, payload text)`)
			cfg := writeConfig(t, c, dsn, dir, "spill")
			p := lbtrun.Start(t, "backup", "--config", cfg)
			waitArchived(t, c, dsn, dir)

			c.Exec(t, dsn, `INSERT INTO big VALUES (0, 'before')`)
			c.Exec(t, dsn, `INSERT INTO big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, `+strconv.Itoa(rows)+`) g`)
			c.Exec(t, dsn, `INSERT INTO big VALUES (-1, 'after')`)
			waitFor(t, "lbt to write out part of the large transaction", 2*time.Minute, func() bool {
				return unreferencedSegmentBytes(t, dir) > 8<<20
			})
			// Meanwhile the catalog's write lock is free: basebackups and
			// purge need not wait for the transaction to end.
			if err := tryCatalogWrite(dir); err != nil {
				t.Errorf("catalog write while the large transaction streams in: %v", err)
			}
			p.Signal(sig)
			if code := p.Wait(t, time.Minute); sig == syscall.SIGTERM && code != 0 {
				t.Fatalf("lbt exited %d after SIGTERM:\n%s", code, p.Output())
			}
			for _, tx := range archivedTxs(t, dir, "big") {
				if tx.Inserts == rows {
					t.Fatal("the large transaction was archived before the stop: the test needs a larger one")
				}
			}

			p = lbtrun.Start(t, "backup", "--config", cfg)
			waitArchived(t, c, dsn, dir)
			stopDaemon(t, p)

			var inserts []int64
			for _, tx := range archivedTxs(t, dir, "big") {
				inserts = append(inserts, tx.Inserts)
			}
			if len(inserts) != 3 || inserts[0] != 1 || inserts[1] != rows || inserts[2] != 1 {
				t.Fatalf("catalog lists transactions of big with %v inserts, want [1 %d 1]", inserts, rows)
			}
			_, changes := readArchive(t, dir, "big")
			seen := map[string]int{}
			for _, ch := range changes {
				seen[*ch.New[0]]++
			}
			if len(changes) != rows+2 || len(seen) != rows+2 {
				t.Fatalf("archive holds %d changes of %d rows, want %d of %d", len(changes), len(seen), rows+2, rows+2)
			}
			if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--read-data"); code != 0 {
				t.Fatalf("lbt verify --read-data: exit %d:\n%s", code, out)
			}
		})
	}
}

// tryCatalogWrite takes the catalog's write lock, waiting at most a second.
func tryCatalogWrite(dir string) error {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, catalog.CatalogFile)+"?_pragma=busy_timeout(1000)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	return tx.Rollback()
}

// unreferencedSegmentBytes is how many bytes the segment files hold beyond
// what the catalog references: blobs written but not yet committed.
func unreferencedSegmentBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var onDisk, referenced int64
	files, _ := filepath.Glob(filepath.Join(dir, "segments", "*"))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			onDisk += fi.Size()
		}
	}
	catalogQueryRow(t, dir, `SELECT coalesce(sum(size), 0) FROM segment WHERE retired_at IS NULL`, nil, &referenced)
	return onDisk - referenced
}
