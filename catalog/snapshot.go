package catalog

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
)

// Snapshot writes a consistent copy of the catalog, as of one moment, to
// path, which must not exist (SQLite's VACUUM INTO: one read transaction,
// so the daemon's commits go on while it runs). The copy is an archive
// catalog on its own, for the object store.
func (c *Catalog) Snapshot(ctx context.Context, path string) error {
	if _, err := c.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("catalog snapshot %s: %w", path, err)
	}
	return nil
}

// SnapshotFile is an archive file that a catalog snapshot points at.
type SnapshotFile struct {
	Name string // archive-relative, slash-separated
	// Needed is false for a sealed segment that holds no blob the
	// snapshot knows of (a rewrite's reserved segment before its file
	// exists, or one that purge is about to retire): the snapshot is
	// complete without it.
	Needed bool
}

// ErrSnapshotActive says that a catalog snapshot points at blobs in a
// segment that is not sealed: it was not taken between a seal and the next
// segment, and the files it needs are still being written.
var ErrSnapshotActive = errors.New("catalog snapshot points at an active segment")

// SnapshotFiles lists the files that the catalog snapshot at path points
// at: its live segments, basebackups (every chunk) and their sidecars. A snapshot whose unsealed segment has blobs is refused with
// ErrSnapshotActive.
func SnapshotFiles(ctx context.Context, path string) ([]SnapshotFile, error) {
	c, err := openFile(filepath.Dir(path), path, true)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	fail := func(err error) ([]SnapshotFile, error) {
		return nil, fmt.Errorf("catalog snapshot %s files: %w", path, err)
	}
	rows, err := c.db.QueryContext(ctx, `SELECT s.id, s.sealed, EXISTS (SELECT 1 FROM blob b WHERE b.segment_id = s.id)
		FROM segment s WHERE s.retired_at IS NULL ORDER BY s.id`)
	if err != nil {
		return fail(err)
	}
	var files []SnapshotFile
	for rows.Next() {
		var id int64
		var sealed, blobs bool
		if err := rows.Scan(&id, &sealed, &blobs); err != nil {
			rows.Close()
			return fail(err)
		}
		switch {
		case !sealed && blobs:
			rows.Close()
			return nil, fmt.Errorf("%w: %s, segment %d", ErrSnapshotActive, path, id)
		case !sealed:
			continue // the new active segment's header: nothing to read
		}
		files = append(files, SnapshotFile{Name: filepath.ToSlash(SegmentName(id)), Needed: blobs})
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	rows.Close()
	rows, err = c.db.QueryContext(ctx, `SELECT path, chunks FROM basebackup ORDER BY path`)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	for rows.Next() {
		var p, chunks string
		if err := rows.Scan(&p, &chunks); err != nil {
			return fail(err)
		}
		cs, err := decodeChunks(chunks)
		if err != nil {
			return fail(err)
		}
		// A basebackup of several files (format 4) lists them all,
		// chunk 0 at path; one sidecar, beside chunk 0, for the whole.
		files = append(files, SnapshotFile{Name: filepath.ToSlash(SidecarName(p)), Needed: true})
		if len(cs) == 0 {
			files = append(files, SnapshotFile{Name: filepath.ToSlash(p), Needed: true})
		}
		for _, c := range cs {
			files = append(files, SnapshotFile{Name: filepath.ToSlash(c.Path), Needed: true})
		}
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	return files, nil
}
