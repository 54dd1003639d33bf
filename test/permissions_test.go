package test

import (
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Everything lbt writes into an archive is its user's alone, whatever the
// umask: the catalog (and SQLite's -wal and -shm beside it) holds row keys,
// who changed what and DDL text; segments and basebackups hold the rows.
// Under umask 022, the usual one, files are 0600 and directories 0700.
func TestArchive_FilesAreOwnerOnlyUnderUmask022(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	d := startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "t")
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		want := fs.FileMode(0o600)
		if e.IsDir() {
			want = 0o700
		}
		if rel == "." {
			return nil // made by the test
		}
		seen[rel] = true
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s has mode %04o, want %04o", rel, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d.stop()
	var segment, basebackup bool
	for rel := range seen {
		segment = segment || strings.HasPrefix(rel, "segments/") && strings.HasSuffix(rel, ".lbs")
		basebackup = basebackup || strings.HasPrefix(rel, "base/") && strings.HasSuffix(rel, ".copy.lz4")
	}
	if !seen["catalog.db"] || !seen["catalog.db-wal"] || !seen["LOCK"] || !segment || !basebackup {
		t.Errorf("the walk saw %v; want the catalog with its WAL, LOCK, a segment and a basebackup among them", seen)
	}
}
