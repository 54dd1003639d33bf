package dump

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"lbt/catalog"
)

// cleanStray removes what interrupted basebackups left behind: partial
// files in the temp dir, and files under base/ in the archive that no
// catalog row references (a crash between the rename into the archive and
// the catalog commit). A file that a running basebackup holds locked, in
// this process or another, is left alone. It returns the paths removed.
func cleanStray(ctx context.Context, cat *catalog.Catalog, tempDir string) ([]string, error) {
	var removed []string
	partials, err := filepath.Glob(filepath.Join(tempDir, "base-*.partial"))
	if err != nil {
		return nil, fmt.Errorf("clean temp dir: %w", err)
	}
	for _, p := range partials {
		ok, err := removeUnlocked(p, func() (bool, error) { return true, nil })
		if err != nil {
			return removed, err
		}
		if ok {
			removed = append(removed, p)
		}
	}

	base := filepath.Join(cat.Dir(), "base")
	refs, err := cat.BasebackupPaths(ctx)
	if err != nil {
		return removed, err
	}
	err = filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(cat.Dir(), path)
		if err != nil {
			return err
		}
		if refs[rel] {
			return nil
		}
		if !strings.HasSuffix(rel, ".copy.lz4") && !strings.HasSuffix(rel, ".partial") {
			return nil // not ours
		}
		ok, err := removeUnlocked(path, func() (bool, error) {
			// The writer may have committed its row just before it let go.
			has, err := cat.HasBasebackup(ctx, rel)
			return !has, err
		})
		if err != nil {
			return err
		}
		if ok {
			removed = append(removed, path)
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("clean archive: %w", err)
	}
	return removed, nil
}

// removeUnlocked removes path if no one holds a lock on it and stray (asked
// while holding the lock) says it is not in use.
func removeUnlocked(path string, stray func() (bool, error)) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("clean %s: %w", path, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil // a basebackup in progress
		}
		return false, fmt.Errorf("clean %s: lock: %w", path, err)
	}
	ok, err := stray()
	if err != nil || !ok {
		return false, err
	}
	if err := os.Remove(path); err != nil {
		return false, fmt.Errorf("clean %s: %w", path, err)
	}
	return true, nil
}
