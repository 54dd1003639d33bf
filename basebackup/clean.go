package basebackup

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
// files in the temp dir, and files under base/ in the archive that the
// catalog knows as pending and never recorded (a crash between the rename
// into the archive and the catalog commit). A file under base/ the catalog
// has no row for at all is not proven a leftover (the catalog may be older
// than the files): it is kept and returned in unknown. The files of a
// running basebackup, in this process or another, are left alone: it holds
// a lock (flock) on its data file from its creation in the temp dir, through
// the move into base/, until its catalog row is committed. Locks are local:
// they are looked at on the local archive directory, and what is removed
// from base/ is deleted through the Store. It returns the paths removed.
func cleanStray(ctx context.Context, cat *catalog.Catalog, tempDir string) (removed, unknown []string, err error) {
	partials, err := filepath.Glob(filepath.Join(tempDir, "base-*.partial"))
	if err != nil {
		return nil, nil, fmt.Errorf("clean temp dir: %w", err)
	}
	for _, p := range partials {
		ok, err := removeUnlocked(p, func() (bool, error) { return true, nil }, func() error { return os.Remove(p) })
		if err != nil {
			return removed, nil, err
		}
		if ok {
			removed = append(removed, p)
		}
	}

	base := filepath.Join(cat.Dir(), "base")
	forget := map[string]bool{}
	refs, err := cat.BasebackupPaths(ctx)
	if err != nil {
		return removed, nil, err
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
		final, ours := basebackupOf(rel)
		if !ours {
			return nil // not ours
		}
		if refs[final] || refs[rel] {
			return nil // recorded, or a chunk a later basebackup reuses (format 5)
		}
		asked, pending := false, false
		ok, err := removeUnlocked(path, func() (bool, error) {
			if path != filepath.Join(cat.Dir(), final) {
				// A sidecar, or a file being copied in: the lock that
				// tells is on the data file.
				if running, err := dumpRunning(cat.Dir(), tempDir, final); running || err != nil {
					return false, err
				}
			}
			// Asked under the lock: the writer may have committed its row
			// just before it let go.
			var err error
			asked = true
			pending, err = cat.IsPendingBasebackup(ctx, final)
			return pending, err
		}, func() error { return cat.Store().Delete(ctx, filepath.ToSlash(rel)) })
		if err != nil {
			return err
		}
		if ok {
			removed = append(removed, path)
			forget[final] = true
		} else if asked && !pending {
			unknown = append(unknown, path)
		}
		return nil
	})
	if err != nil {
		return removed, unknown, fmt.Errorf("clean archive: %w", err)
	}
	// Once the basebackup's files are all gone (a sidecar is visited
	// after its file), the pending row has served.
	for final := range forget {
		if _, err := cat.Store().Stat(ctx, final); errors.Is(err, fs.ErrNotExist) {
			if err := cat.ForgetPendingBasebackup(ctx, final); err != nil {
				return removed, unknown, err
			}
		}
	}
	return removed, unknown, nil
}

// removeUnlocked removes path with remove if no one holds a lock on it and
// stray (asked while holding the lock) says it is not in use.
func removeUnlocked(path string, stray func() (bool, error), remove func() error) (bool, error) {
	f, _, err := lockIfFree(path)
	if f == nil {
		return false, err // gone, or a basebackup in progress
	}
	defer f.Close()
	ok, err := stray()
	if err != nil || !ok {
		return false, err
	}
	if err := remove(); err != nil {
		return false, fmt.Errorf("clean %s: %w", path, err)
	}
	return true, nil
}

// dumpRunning tells whether a basebackup of final's table may be running:
// one of the table's files in the temp dir is locked, or final itself is.
// In that order, so that a file renamed from the one to the other in
// between is seen in one of them.
func dumpRunning(archiveDir, tempDir, final string) (bool, error) {
	table := filepath.Base(filepath.Dir(final))
	partials, err := filepath.Glob(filepath.Join(tempDir, fmt.Sprintf("base-%s-*.partial", table)))
	if err != nil {
		return false, err
	}
	for _, p := range append(partials, filepath.Join(archiveDir, final)) {
		locked, err := isLocked(p)
		if locked || err != nil {
			return locked, err
		}
	}
	return false, nil
}

// isLocked tells whether someone holds a lock on path.
func isLocked(path string) (bool, error) {
	f, locked, err := lockIfFree(path)
	if f != nil {
		f.Close()
	}
	return locked, err
}

// lockIfFree opens path and takes an exclusive lock on it without waiting.
// It returns the open file, which holds the lock until closed, or nil when
// path does not exist or when someone else holds a lock on it (locked).
func lockIfFree(path string) (f *os.File, locked bool, err error) {
	f, err = os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("clean %s: %w", path, err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return nil, true, nil
	}
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("clean %s: lock: %w", path, err)
	}
	return f, false, nil
}

// basebackupOf returns the basebackup file (archive-relative) that a file
// under base/ belongs to: itself, its sidecar, or either being written.
func basebackupOf(rel string) (string, bool) {
	name := strings.TrimSuffix(rel, ".partial")
	if first, ok := catalog.BasebackupOfChunk(name); ok {
		return first, true
	}
	if stem, ok := strings.CutSuffix(name, ".meta.json"); ok {
		return stem + ".copy.lz4", true
	}
	return "", false
}
