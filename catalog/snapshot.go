package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"modernc.org/sqlite"
)

// Snapshot writes a consistent copy of the catalog, as of now, to path,
// which must not exist (Pin, then WriteTo).
func (c *Catalog) Snapshot(ctx context.Context, path string) error {
	p, err := c.Pin(ctx)
	if err != nil {
		return err
	}
	defer p.Close()
	return p.WriteTo(ctx, path)
}

// PinnedSnapshot is the catalog as of one moment, held by a read
// transaction on a connection of its own until Close. Pinning takes a
// moment, copying the whole catalog does not: the daemon's archiver pins
// at a seal, and the uploader copies in its own goroutine while the stream
// goes on. While it is held, SQLite cannot checkpoint the catalog's
// write-ahead log past it, so it is held only until it is copied.
type PinnedSnapshot struct {
	db   *sql.DB
	conn *sql.Conn
}

// Pin begins a read transaction of the catalog as it is now, on a new
// read-only connection.
func (c *Catalog) Pin(ctx context.Context) (*PinnedSnapshot, error) {
	fail := func(err error) (*PinnedSnapshot, error) {
		return nil, fmt.Errorf("catalog snapshot of %s: %w", c.dir, err)
	}
	// The file of this Catalog's main database, wherever it was opened.
	var seq int
	var name, file string
	if err := c.pool.QueryRowContext(ctx, `PRAGMA database_list`).Scan(&seq, &name, &file); err != nil {
		return fail(err)
	}
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return fail(err)
	}
	db.SetMaxOpenConns(1)
	p := &PinnedSnapshot{db: db}
	if p.conn, err = db.Conn(ctx); err != nil {
		db.Close()
		return fail(err)
	}
	// In WAL mode a read transaction sees the commits before its first
	// read, and nothing after, until it ends.
	var n int
	if _, err = p.conn.ExecContext(ctx, `BEGIN`); err == nil {
		err = p.conn.QueryRowContext(ctx, `SELECT count(*) FROM position`).Scan(&n)
	}
	if err != nil {
		p.Close()
		return fail(err)
	}
	return p, nil
}

// WriteTo copies the pinned catalog to path, which must not exist, with
// SQLite's online backup: every page in one step, under the pinned read
// transaction. It copies pages as they are, faster than VACUUM INTO, which
// rebuilds every table and index (BenchmarkCatalogSnapshot in test/bench).
// The copy is an archive catalog on its own, for the object store, in
// rollback-journal mode, so that a reader opens it read-only without a
// -wal or -shm file.
func (p *PinnedSnapshot) WriteTo(ctx context.Context, path string) error {
	fail := func(err error) error {
		os.Remove(path)
		return fmt.Errorf("catalog snapshot %s: %w", path, err)
	}
	err := p.conn.Raw(func(dc any) error {
		src, ok := dc.(interface {
			NewBackup(dst string) (*sqlite.Backup, error)
		})
		if !ok {
			return fmt.Errorf("the SQLite driver has no online backup")
		}
		b, err := src.NewBackup(path)
		if err != nil {
			return err
		}
		more, err := b.Step(-1)
		if ferr := b.Finish(); err == nil {
			err = ferr
		}
		if err == nil && more {
			err = fmt.Errorf("the backup stopped before the last page")
		}
		return err
	})
	if err != nil {
		return fail(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return fail(err)
	}
	_, err = db.ExecContext(ctx, `PRAGMA journal_mode = DELETE`)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	return nil
}

// Close ends the read transaction and closes its connection.
func (p *PinnedSnapshot) Close() error {
	if p.conn != nil {
		p.conn.ExecContext(context.Background(), `ROLLBACK`)
		p.conn.Close()
	}
	return p.db.Close()
}

// DataVersion is SQLite's data_version of the catalog's connection: it
// changes when another connection (another Catalog of the archive, in this
// process or another) commits, and not on this Catalog's own commits. It
// tells the daemon, whose catalog has one connection, whether a basebackup,
// a purge or retention changed the catalog since it last asked.
func (c *Catalog) DataVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := c.db.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("catalog data version: %w", err)
	}
	return v, nil
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

// RetireActiveSegment prepares the catalog snapshot at path for the object
// store when it was taken between two seals (ship's Quiet): the daemon's
// active segment, then only a header, is never uploaded, so it is marked
// retired, as ContinueFrom marks it on a new host, and readers of the store
// do not look for its file. A snapshot whose active segment has blobs is
// refused with ErrSnapshotActive. The snapshot keeps its rollback journal:
// it is opened without the live catalog's WAL.
func RetireActiveSegment(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate")
	if err != nil {
		return fmt.Errorf("catalog snapshot %s: %w", path, err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("catalog snapshot %s: %w", path, err)
	}
	defer tx.Rollback()
	if err := retireEmptyActive(ctx, tx, time.Now()); err != nil {
		return fmt.Errorf("catalog snapshot %s: %w", path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("catalog snapshot %s: %w", path, err)
	}
	return db.Close()
}

// ContinueFrom makes this catalog, a snapshot fetched from an object store
// into a new archive directory, the live catalog that continues that
// archive (ship.Adopt). Its active segment, empty and never uploaded
// (SnapshotFiles refuses a snapshot whose unsealed segment has blobs), is
// retired, since its file is nowhere. And no segment id in used (those the
// store holds, unreferenced ones a crash left there among them) is handed
// out again: a retired, empty row keeps the highest and the lowest, so that
// no new file takes the name of an object the store already holds, which
// the uploader would take for uploaded.
func (c *Catalog) ContinueFrom(ctx context.Context, used []int64) error {
	return c.write(ctx, "continue the archive", func(tx *sql.Tx) error {
		at := time.Now()
		if err := retireEmptyActive(ctx, tx, at); err != nil {
			return err
		}
		now := Micros(at)
		var hi, lo int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0), coalesce(min(id), 0) FROM segment`).Scan(&hi, &lo); err != nil {
			return err
		}
		top, bottom := hi, lo
		for _, id := range used {
			top, bottom = max(top, id), min(bottom, id)
		}
		var keep []int64
		if top > hi {
			keep = append(keep, top)
		}
		if bottom < lo {
			keep = append(keep, bottom)
		}
		for _, id := range keep {
			if _, err := tx.ExecContext(ctx, `INSERT INTO segment (id, created_at, size, sealed, retired_at) VALUES (?, ?, ?, 1, ?)`,
				id, now, SegmentHeaderSize, now); err != nil {
				return err
			}
		}
		return nil
	})
}

// retireEmptyActive marks the active segment of a snapshot, whose file is
// in no store, sealed and retired at at; one that has blobs is refused.
func retireEmptyActive(ctx context.Context, tx *sql.Tx, at time.Time) error {
	var active int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM blob b JOIN segment s ON s.id = b.segment_id WHERE s.sealed = 0`).Scan(&active); err != nil {
		return err
	}
	if active > 0 {
		return fmt.Errorf("%w: %d blobs", ErrSnapshotActive, active)
	}
	_, err := tx.ExecContext(ctx, `UPDATE segment SET sealed = 1, retired_at = ? WHERE sealed = 0`, Micros(at))
	return err
}
