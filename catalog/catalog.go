// Package catalog owns lbt's archive: the segment files that hold the changes,
// the basebackup files, and the SQLite catalog that indexes them by table,
// LSN, commit time and row key. docs/FORMAT.md specifies all of it.
//
// Write ordering, the archive's invariant: segment bytes are written and
// fsynced first, then the catalog rows that point at them are committed, then
// (by the caller) the position is confirmed to the server. Removal runs the
// other way round: catalog rows first, then the bytes.
package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"lbt/crypt"
	"lbt/storage"
)

// FormatVersion is the version of the archive format this lbt writes and
// reads. It is stored in the catalog's meta table. Version 3 made the files
// self-describing (docs/FORMAT.md); a version-2 archive is refused, not
// upgraded: its segments lack what a catalog is rebuilt from. Version 4
// adds encryption at rest, basebackups of several files (chunks) and the
// hash chain (docs/FORMAT.md, "Format 4"); a version-3 archive is refused
// too: its history has no chain. Version 5 keeps the row-key index as
// sorted runs, lets a basebackup built from the archive reuse an older
// basebackup's chunk files by reference, and records the files a purge
// still has to remove (purge_file) (docs/FORMAT.md, "Format 5"); a
// version-4 catalog is upgraded in place when lbt opens it to write.
const FormatVersion = 5

// The modes of everything lbt creates in an archive, whatever the umask:
// the catalog holds row keys, who changed what and DDL text, and the files
// hold the rows themselves. Only the user lbt runs as may read them.
const (
	DirMode  = storage.DirMode
	FileMode = storage.FileMode
)

// CatalogFile is the catalog's name inside the archive directory.
const CatalogFile = "catalog.db"

// ErrNotArchive reports a directory that holds no lbt archive.
var ErrNotArchive = errors.New("not an lbt archive")

// ErrLocked reports an archive that another lbt process holds the lock of
// (LOCK for lbt backup, PURGE.lock for a purge): try again once it is done.
var ErrLocked = errors.New("archive is locked")

// Catalog is an open archive catalog, and where the files it indexes are.
type Catalog struct {
	// db runs the catalog's questions: pool, or, in a view, the one
	// connection that holds the read snapshot (BeginRead).
	db       dbHandle
	pool     *sql.DB
	view     bool // a read snapshot's view: db is its one connection
	dir      string
	readOnly bool
	keys     *crypt.Keys // nil: a plaintext archive (UseKeys)
	// fsys holds the active segment (appended, then sealed); store the
	// immutable files: sealed segments, basebackups, sidecars. Both are
	// the archive directory on the host unless SetFiles says otherwise.
	fsys  storage.FS
	store storage.Store

	mu    sync.Mutex // guards stmts
	stmts map[string]*sql.Stmt
}

const schemaSQL = `
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE epoch (
	id         INTEGER PRIMARY KEY,
	start_lsn  INTEGER NOT NULL,
	started_at INTEGER NOT NULL,
	slot       TEXT NOT NULL,
	reason     TEXT NOT NULL
);

CREATE TABLE position (
	id          INTEGER PRIMARY KEY CHECK (id = 1),
	epoch       INTEGER NOT NULL,
	end_lsn     INTEGER NOT NULL,
	commit_lsn  INTEGER NOT NULL,
	commit_time INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);

CREATE TABLE rel (
	id        INTEGER PRIMARY KEY,
	oid       INTEGER NOT NULL,
	first_lsn INTEGER NOT NULL
);
CREATE INDEX rel_oid ON rel (oid);

CREATE TABLE schema_version (
	table_id    INTEGER NOT NULL,
	version     INTEGER NOT NULL,
	from_lsn    INTEGER NOT NULL,
	nspname     TEXT NOT NULL,
	relname     TEXT NOT NULL,
	replident   TEXT NOT NULL,
	columns     TEXT NOT NULL,
	primary_key TEXT NOT NULL DEFAULT '[]',
	PRIMARY KEY (table_id, version)
) WITHOUT ROWID;
CREATE INDEX schema_version_name ON schema_version (relname, nspname);

CREATE TABLE segment (
	id         INTEGER PRIMARY KEY,
	created_at INTEGER NOT NULL,
	size       INTEGER NOT NULL,
	sealed     INTEGER NOT NULL DEFAULT 0,
	retired_at INTEGER
);

CREATE TABLE blob (
	id         INTEGER PRIMARY KEY,
	table_id   INTEGER NOT NULL,
	segment_id INTEGER NOT NULL,
	offset     INTEGER NOT NULL,
	length     INTEGER NOT NULL,
	crc        INTEGER NOT NULL,
	schema     INTEGER NOT NULL,
	first_lsn  INTEGER NOT NULL,
	last_lsn   INTEGER NOT NULL,
	changes    INTEGER NOT NULL,
	raw_length INTEGER NOT NULL,
	txs        INTEGER NOT NULL,
	inserts    INTEGER NOT NULL,
	updates    INTEGER NOT NULL,
	deletes    INTEGER NOT NULL,
	truncates  INTEGER NOT NULL,
	sha256     BLOB NOT NULL
);
CREATE INDEX blob_table ON blob (table_id, last_lsn);
CREATE INDEX blob_segment ON blob (segment_id);
CREATE INDEX blob_first ON blob (first_lsn);

-- One row per transaction. tables lists, for each table the transaction
-- changed, the table's id and its inserts, updates, deletes and truncates
-- (five uvarints each); the changes are in that table's blobs whose
-- [first_lsn, last_lsn] holds commit_lsn. Commit time and xid have no
-- index of their own: tx_range narrows a search by either to a few
-- thousand rows, at a fraction of an index's cost per transaction.
CREATE TABLE tx (
	commit_lsn  INTEGER PRIMARY KEY,
	end_lsn     INTEGER NOT NULL,
	xid         INTEGER NOT NULL,
	commit_time INTEGER NOT NULL,
	origin      TEXT,
	tables      BLOB NOT NULL
);

-- One row per catalog commit: the transactions it added, their commit
-- LSNs, times and xids as ranges.
CREATE TABLE tx_range (
	first_lsn INTEGER PRIMARY KEY,
	last_lsn  INTEGER NOT NULL,
	min_time  INTEGER NOT NULL,
	max_time  INTEGER NOT NULL,
	min_xid   INTEGER NOT NULL,
	max_xid   INTEGER NOT NULL
);
CREATE INDEX tx_range_max_time ON tx_range (max_time);

-- TRUNCATEs are rare: inspect finds those of a table without a scan.
CREATE TABLE tx_truncate (
	table_id   INTEGER NOT NULL,
	commit_lsn INTEGER NOT NULL,
	PRIMARY KEY (table_id, commit_lsn)
) WITHOUT ROWID;


CREATE TABLE tx_message (
	commit_lsn INTEGER NOT NULL,
	seq        INTEGER NOT NULL,
	prefix     TEXT NOT NULL,
	content    BLOB NOT NULL,
	PRIMARY KEY (commit_lsn, seq)
) WITHOUT ROWID;
CREATE INDEX tx_message_prefix ON tx_message (prefix, commit_lsn);

CREATE TABLE table_state (
	table_id           INTEGER PRIMARY KEY,
	changes_since_base INTEGER NOT NULL DEFAULT 0,
	blobs_since_base   INTEGER NOT NULL DEFAULT 0,
	last_change_lsn    INTEGER NOT NULL DEFAULT 0,
	last_change_time   INTEGER NOT NULL DEFAULT 0,
	purged_lsn         INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE basebackup (
	id          INTEGER PRIMARY KEY,
	table_id    INTEGER NOT NULL,
	lsn         INTEGER NOT NULL,
	path        TEXT NOT NULL,
	rows        INTEGER NOT NULL,
	bytes       INTEGER NOT NULL,
	raw_bytes   INTEGER NOT NULL,
	crc         INTEGER NOT NULL,
	definition  TEXT NOT NULL,
	sequences   TEXT NOT NULL,
	reason      TEXT NOT NULL,
	started_at  INTEGER NOT NULL,
	finished_at INTEGER NOT NULL,
	chunks      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX basebackup_table ON basebackup (table_id, lsn);

-- Inexact spans of a table's history: the source changed its rows in a
-- way the stream does not carry. Open (to_lsn NULL) until a basebackup
-- after seen_lsn closes it. docs/FORMAT.md.
CREATE TABLE table_gap (
	id        INTEGER PRIMARY KEY,
	table_id  INTEGER NOT NULL,
	from_lsn  INTEGER NOT NULL,
	from_time INTEGER NOT NULL,
	seen_lsn  INTEGER NOT NULL,
	to_lsn    INTEGER,
	to_time   INTEGER,
	reason    TEXT NOT NULL
);
CREATE INDEX table_gap_table ON table_gap (table_id, from_lsn);

-- A table as the daemon last read it on the source: its storage (a new
-- relfilenode that no TRUNCATE explains means its rows were rewritten)
-- and its columns (JSON, as in schema_version).
CREATE TABLE table_storage (
	table_id    INTEGER PRIMARY KEY,
	relfilenode INTEGER NOT NULL,
	description TEXT NOT NULL
);

-- When a source table began and stopped existing, as far as lbt knows
-- (format 3). A table without a row, or with NULLs, is not known to have
-- been created inside the archive's history or dropped.
CREATE TABLE rel_life (
	table_id    INTEGER PRIMARY KEY,
	created_lsn INTEGER,
	created_at  INTEGER,
	created_exact INTEGER NOT NULL DEFAULT 1,
	dropped_lsn INTEGER,
	dropped_at  INTEGER,
	alive_lsn   INTEGER,
	alive_at    INTEGER,
	drop_exact  INTEGER NOT NULL DEFAULT 0
);

-- A basebackup file about to be moved into base/: the proof, should the
-- basebackup row never be committed, that the file is a leftover.
CREATE TABLE basebackup_pending (
	path       TEXT PRIMARY KEY,
	started_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The source's partition trees as the daemon saw them: one row per run
-- of looks that found the same tree (docs/FORMAT.md). A look holds a lock
-- that partition DDL must wait for, so its tree is exact at its LSN.
CREATE TABLE partition_tree (
	id        INTEGER PRIMARY KEY,
	root_oid  INTEGER NOT NULL,
	from_lsn  INTEGER NOT NULL,
	to_lsn    INTEGER NOT NULL,
	from_time INTEGER NOT NULL,
	to_time   INTEGER NOT NULL,
	via_root  INTEGER NOT NULL,
	nodes     TEXT NOT NULL
);
CREATE INDEX partition_tree_root ON partition_tree (root_oid, from_lsn);

CREATE TABLE purge_log (
	id         INTEGER PRIMARY KEY,
	at         INTEGER NOT NULL,
	table_id   INTEGER NOT NULL,
	before_lsn INTEGER NOT NULL,
	blobs      INTEGER NOT NULL,
	txs        INTEGER NOT NULL,
	bytes      INTEGER NOT NULL,
	link       INTEGER NOT NULL DEFAULT 0
);

-- The hash chain over the history (format 4, docs/FORMAT.md): a link per
-- catalog commit that adds transactions or blobs, per basebackup and per
-- purge step, each covering its rows and the link before it.
CREATE TABLE chain (
	seq       INTEGER PRIMARY KEY,
	kind      TEXT NOT NULL,
	first_lsn INTEGER NOT NULL,
	last_lsn  INTEGER NOT NULL,
	table_id  INTEGER NOT NULL,
	txs       INTEGER NOT NULL,
	tx_sum    BLOB,
	blobs     INTEGER NOT NULL,
	blob_sum  BLOB,
	rows      INTEGER NOT NULL,
	row_sum   BLOB,
	hash      BLOB NOT NULL
);
CREATE INDEX chain_first ON chain (first_lsn);

-- What a purge left of the rows of an earlier link: its counts and sums
-- after the purge step by_seq, whose link covers this row.
CREATE TABLE chain_anchor (
	link     INTEGER NOT NULL,
	by_seq   INTEGER NOT NULL,
	txs      INTEGER NOT NULL,
	tx_sum   BLOB,
	blobs    INTEGER NOT NULL,
	blob_sum BLOB,
	rows     INTEGER NOT NULL,
	row_sum  BLOB,
	PRIMARY KEY (link, by_seq)
) WITHOUT ROWID;
`

// Create makes a new, empty archive in dir, recording the source it belongs
// to. It fails if dir already holds a catalog, or segments or basebackups
// without one (ErrCatalogMissing): a new catalog would disown them.
func Create(ctx context.Context, dir string, source Source) (*Catalog, error) {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return nil, fmt.Errorf("create archive: %w", err)
	}
	path := filepath.Join(dir, CatalogFile)
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("create archive: %s already exists", path)
	}
	if err := checkNoOrphanFiles(dir); err != nil {
		return nil, err
	}
	// Built under another name and renamed when complete, so that an
	// interrupted creation leaves no half catalog that blocks the next one.
	tmp := path + ".new"
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	if err := createSchema(ctx, tmp, source); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("create archive: %w", err)
	}
	if err := SyncDir(dir); err != nil {
		return nil, err
	}
	return open(dir, false)
}

func createSchema(ctx context.Context, path string, source Source) error {
	// SQLite creates the file with mode 0644 less the umask, and its -wal
	// and -shm files with the mode of the database file: made here first,
	// all three are FileMode.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
	if err != nil {
		return fmt.Errorf("create archive: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create archive: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return fmt.Errorf("create archive: %w", err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create archive: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, schemaSQL+keyRunSchemaSQL+purgeFileSchemaSQL); err != nil {
		return fmt.Errorf("create archive schema: %w", err)
	}
	meta := map[string]string{
		"format_version":    strconv.Itoa(FormatVersion),
		"system_identifier": source.SystemID,
		"database":          source.Database,
		"server_version":    source.ServerVersion,
		"created_at":        time.Now().UTC().Format(time.RFC3339),
	}
	for k, v := range meta {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)`, k, v); err != nil {
			return fmt.Errorf("create archive: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create archive: %w", err)
	}
	// Closing checkpoints the write-ahead log into the file, which is then
	// complete on its own and can be renamed.
	return db.Close()
}

// Open opens the archive in dir for writing.
func Open(ctx context.Context, dir string) (*Catalog, error) {
	return openExisting(ctx, dir, false)
}

// OpenReadOnly opens the archive in dir for reading; it never writes, and works
// while a daemon writes the same archive.
func OpenReadOnly(ctx context.Context, dir string) (*Catalog, error) {
	return openExisting(ctx, dir, true)
}

func openExisting(ctx context.Context, dir string, readOnly bool) (*Catalog, error) {
	path := filepath.Join(dir, CatalogFile)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if err := checkNoOrphanFiles(dir); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s has no %s (is archiveDir right? lbt backup creates it)", ErrNotArchive, dir, CatalogFile)
		}
		return nil, fmt.Errorf("open archive: %w", err)
	}
	c, err := open(dir, readOnly)
	if err != nil {
		return nil, err
	}
	v, err := c.Meta(ctx, "format_version")
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrNotArchive, path, err)
	}
	n, _ := strconv.Atoi(v)
	if n == 4 && !readOnly {
		if err := c.upgradeFrom4(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("upgrade archive %s from format version 4 to %d: %w", dir, FormatVersion, err)
		}
		n = FormatVersion
	}
	if n != FormatVersion {
		c.Close()
		return nil, formatError(dir, v)
	}
	// Until UseKeys gives it keys, an encrypted archive reads and writes
	// nothing: its files are never taken for plaintext.
	if enc, err := c.encryption(ctx); err != nil || enc {
		if err != nil {
			c.Close()
			return nil, err
		}
		c.keys = &crypt.Keys{}
	}
	return c, nil
}

// purgeFileSchemaSQL creates purge_file (format 5), in a new catalog and
// in a version-4 catalog that upgradeFrom4 upgrades: the files whose
// catalog rows a purge removed and that it has still to delete, sidecars
// before chunk files, and every one before any segment is reclaimed, so
// that a crash can leave neither a sidecar that would bring a purged
// basebackup back in a rebuilt catalog once its deltas are gone, nor a file
// nothing will ever delete.
const purgeFileSchemaSQL = `
CREATE TABLE purge_file (
	path TEXT PRIMARY KEY,
	at   INTEGER NOT NULL
) WITHOUT ROWID;
`

// formatError refuses an archive of another format version.
func formatError(dir, found string) error {
	n, _ := strconv.Atoi(found)
	if n == 4 {
		return fmt.Errorf("archive %s has format version 4, this lbt reads version %d: run lbt backup with this lbt once to upgrade it in place (or read it with the lbt that wrote it)",
			dir, FormatVersion)
	}
	if n < FormatVersion {
		return fmt.Errorf("archive %s has format version %s, this lbt reads version %d only: restore from it with the lbt that wrote it, and archive with this one into a new, empty archiveDir (docs/FORMAT.md says why version %s is not upgraded)",
			dir, found, FormatVersion, found)
	}
	return fmt.Errorf("archive %s has format version %s, newer than the version %d this lbt reads: use the lbt that wrote it", dir, found, FormatVersion)
}

func open(dir string, readOnly bool) (*Catalog, error) {
	return openFile(dir, filepath.Join(dir, CatalogFile), readOnly)
}

// openFile opens the catalog file at path of the archive in dir.
func openFile(dir, path string, readOnly bool) (*Catalog, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	if readOnly {
		q.Set("mode", "ro")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(FULL)")
		// Multi-row INSERTs keep a statement journal; on disk it costs a
		// write per page. A page cache larger than the default 2 MiB keeps
		// the indexes' inner pages off the disk.
		q.Add("_pragma", "temp_store(MEMORY)")
		q.Add("_pragma", "cache_size(-32768)")
	}
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	if !readOnly {
		// One connection: SQLite has one writer, and the ingest transaction
		// must see its own uncommitted rows.
		db.SetMaxOpenConns(1)
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	return &Catalog{db: db, pool: db, dir: dir, readOnly: readOnly, fsys: storage.OS{}, store: storage.NewLocal(storage.OS{}, dir)}, nil
}

// SetFiles says where the archive's files are: fsys holds the active
// segment under Dir (the same paths as on the host), store the immutable
// files. A crash-simulation test puts both on a storage.MemFS; an object
// store keeps the immutable files off the machine.
func (c *Catalog) SetFiles(fsys storage.FS, store storage.Store) {
	c.fsys, c.store = fsys, store
}

// ReadMissingFrom makes the catalog read a file that its local store lacks
// from remote: the object store of a backup host that removes its local
// copies once they are uploaded (storage.Layered). Writes stay local.
func (c *Catalog) ReadMissingFrom(remote storage.Store) {
	if l, ok := c.store.(*storage.Local); ok {
		c.store = storage.NewLayered(l, remote)
	}
}

// FS is the file system of the active segment.
func (c *Catalog) FS() storage.FS { return c.fsys }

// Store holds the archive's immutable files.
func (c *Catalog) Store() storage.Store { return c.store }

// Close closes the catalog.
func (c *Catalog) Close() error {
	c.mu.Lock()
	for q, st := range c.stmts {
		st.Close()
		delete(c.stmts, q)
	}
	c.mu.Unlock()
	return c.pool.Close()
}

// queryRow runs a query that is prepared once per Catalog: those that a
// question asks once for each transaction it reads, as inspect history
// does.
func (c *Catalog) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if c.view {
		// A read snapshot's one connection: a statement prepared on it has
		// one execution at a time, and an Inspector asks from several
		// goroutines, so each question gets its own statement.
		return c.db.QueryRowContext(ctx, q, args...)
	}
	c.mu.Lock()
	st, ok := c.stmts[q]
	if !ok {
		var err error
		if st, err = c.db.PrepareContext(ctx, q); err != nil {
			c.mu.Unlock()
			// The error comes back from QueryRowContext on the plain query.
			return c.db.QueryRowContext(ctx, q, args...)
		}
		if c.stmts == nil {
			c.stmts = make(map[string]*sql.Stmt)
		}
		c.stmts[q] = st
	}
	c.mu.Unlock()
	return st.QueryRowContext(ctx, args...)
}

// Dir is the archive directory.
func (c *Catalog) Dir() string { return c.dir }

// DB gives tests the catalog's database, to look at its rows or damage
// them. Code outside this package asks through the Catalog's methods, so
// that a change of the schema (docs/FORMAT.md) touches this package alone.
func (c *Catalog) DB() *sql.DB { return c.pool }

// SetSynchronous turns SQLite's fsync on commit off when the operator set
// fsync: false, trading durability for speed as the setting says.
func (c *Catalog) SetSynchronous(ctx context.Context, on bool) error {
	mode := "FULL"
	if !on {
		mode = "OFF"
	}
	_, err := c.db.ExecContext(ctx, "PRAGMA synchronous = "+mode)
	return err
}

// Meta returns one value of the meta table.
func (c *Catalog) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := c.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("catalog meta %s: %w", key, err)
	}
	return v, nil
}

// SetMeta records one value of the meta table.
func (c *Catalog) SetMeta(ctx context.Context, key, value string) error {
	_, err := c.db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("catalog meta %s: %w", key, err)
	}
	return nil
}

// metaPublishedOIDs is the meta key under which the daemon records the OIDs
// of the tables it archives when trackNewTables is false (a JSON array), so
// that other commands know which tables have deltas.
const metaPublishedOIDs = "published_oids"

// SetPublishedOIDs records the OIDs of the tables the daemon archives when
// it does not track new tables: those it found in the publication.
func (c *Catalog) SetPublishedOIDs(ctx context.Context, oids []uint32) error {
	oids = slices.Clone(oids)
	slices.Sort(oids)
	if oids == nil {
		oids = []uint32{}
	}
	b, err := json.Marshal(oids)
	if err != nil {
		return fmt.Errorf("catalog meta %s: %w", metaPublishedOIDs, err)
	}
	return c.SetMeta(ctx, metaPublishedOIDs, string(b))
}

// PublishedOIDs returns what SetPublishedOIDs recorded last: none when it
// recorded nothing (the daemon tracks new tables, or never ran), or the
// value does not decode.
func (c *Catalog) PublishedOIDs(ctx context.Context) []uint32 {
	v, err := c.Meta(ctx, metaPublishedOIDs)
	if err != nil {
		return nil
	}
	var oids []uint32
	if err := json.Unmarshal([]byte(v), &oids); err != nil {
		return nil
	}
	return oids
}

// Source identifies the database an archive belongs to.
type Source struct {
	SystemID      string // pg_control system identifier
	Database      string
	ServerVersion string
}

// CheckSource refuses an archive that belongs to another cluster or database.
func (c *Catalog) CheckSource(ctx context.Context, s Source) error {
	sys, err := c.Meta(ctx, "system_identifier")
	if err != nil {
		return err
	}
	db, err := c.Meta(ctx, "database")
	if err != nil {
		return err
	}
	if sys != s.SystemID || db != s.Database {
		return fmt.Errorf("archive %s belongs to database %q of cluster %s, not %q of cluster %s: use another archiveDir", c.dir, db, sys, s.Database, s.SystemID)
	}
	return nil
}

// Micros converts a time to the catalog's representation: microseconds since
// the Unix epoch, UTC.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// FromMicros is the inverse of Micros.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
