package test

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// archiveSums is the sha256 of every file under dir, by relative path.
func archiveSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		h := sha256.Sum256(b)
		sums[rel] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// checkSameFiles fails the test for a file of before that is gone or
// changed, or a file that appeared in after.
func checkSameFiles(t *testing.T, before, after map[string]string, what string) {
	t.Helper()
	for p, sum := range before {
		if p == "LOCK" { // holds the pid of the last lbt backup, not archive data
			continue
		}
		if got, ok := after[p]; !ok {
			t.Errorf("%s: %s was deleted", what, p)
		} else if got != sum {
			t.Errorf("%s: %s changed", what, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s appeared", what, p)
		}
	}
}

// removeCatalog deletes an archive's catalog with its write-ahead log, as
// a lost disk or a wrong archiveDir would.
func removeCatalog(t *testing.T, dir string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(dir, catalog.CatalogFile+suffix)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// archiveWithHistory archives a few transactions and a basebackup of t
// with lbt backup, and stops it.
func archiveWithHistory(t *testing.T, c *pgtest.Cluster, dsn, dir, slot string) string {
	t.Helper()
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	cfg := writeConfig(t, c, dsn, dir, slot, "trackNewTables: true", "initialBasebackup: true")
	p := lbtrun.Start(t, "backup", "--config", cfg)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`)
	c.Exec(t, dsn, `UPDATE t SET v = 'changed' WHERE id <= 10`)
	waitFor(t, "a basebackup of t", time.Minute, func() bool { return len(basebackupsOf(t, dir, "t")) > 0 })
	c.Exec(t, dsn, `DELETE FROM t WHERE id > 90`)
	waitArchived(t, c, dsn, dir)
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Fatalf("lbt backup exit %d:\n%s", code, p.Output())
	}
	return cfg
}

// With catalog.db gone, lbt backup and lbt basebackup refuse to start on
// the archive's files, with one line naming the directory, what it holds
// and the fix, and not one byte of the archive changes.
func TestCatalogless_BackupRefusesAndDeletesNothing(t *testing.T) {
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	dir := t.TempDir()
	cfg := archiveWithHistory(t, c, dsn, dir, "catless_refuse")
	removeCatalog(t, dir)
	before := archiveSums(t, dir)
	var segs, bases int
	for p := range before {
		segs += btoi(strings.HasPrefix(p, "segments/"))
		bases += btoi(strings.HasSuffix(p, ".copy.lz4"))
	}
	if segs == 0 || bases == 0 {
		t.Fatalf("the archive holds %d segments and %d basebackups; the test needs both", segs, bases)
	}
	for _, args := range [][]string{
		{"backup", "--config", cfg},
		{"basebackup", "--config", cfg, "--table", "t"},
	} {
		code, out := lbtrun.Run(t, args...)
		out = strings.TrimSpace(out)
		if code == 0 {
			t.Errorf("lbt %s exited 0:\n%s", args[0], out)
		}
		for _, want := range []string{dir, "segment files", "basebackups", "no catalog.db", "lbt repair --rebuild-catalog", "empty directory"} {
			if !strings.Contains(out, want) {
				t.Errorf("lbt %s: the message lacks %q:\n%s", args[0], want, out)
			}
		}
		if strings.Contains(out, "created archive") || strings.Count(out, "\n") > 0 {
			t.Errorf("lbt %s: want one line, got:\n%s", args[0], out)
		}
		checkSameFiles(t, before, archiveSums(t, dir), "lbt "+args[0])
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
