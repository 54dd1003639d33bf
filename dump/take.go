// Package dump takes basebackups: consistent per-table COPYs whose place in
// the change stream is exactly known, so that restore can start from one and
// apply precisely the deltas after it. It also decides when they are due
// and purges what they make unnecessary.
package dump

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pierrec/lz4/v4"

	"lbt/catalog"
	"lbt/schema"
	"lbt/source"
	"lbt/storage"
)

// Options configures basebackups.
type Options struct {
	ArchiveDir string
	TempDir    string // incomplete dumps are written here; default <ArchiveDir>/tmp
	Conn       *pgconn.Config
	// Publication, when set, limits basebackups to the tables it carries:
	// a basebackup is only of use with the changes after it.
	Publication string
	Logger      hclog.Logger
	SlotWait    source.SlotWait // when a slow creation of the snapshot's slot is reported
	Reason      string          // recorded with each basebackup: "new table", "threshold", "request", ...
}

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{Logger: hclog.NewNullLogger(), Reason: "request", SlotWait: source.DefaultSlotWait}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// slotSeq keeps temporary slot names of one process apart.
var slotSeq atomic.Int64

// partialPattern names the files of dumps in progress in the temp dir.
const partialPattern = "base-%d-*.partial"

// target is a table to dump: by OID when oid is set (the scheduler, which
// knows tables by OID: names change), else by SQL name.
type target struct {
	oid      uint32
	nsp, rel string
	name     string // for messages
}

// Take dumps the named tables (SQL names) under one exported snapshot and
// records each basebackup in the catalog. Every transaction that committed
// before the snapshot's consistent point is in the dumps, and every one
// after it is in the deltas: a temporary logical slot created with
// EXPORT_SNAPSHOT gives both the snapshot and the point. All names are
// checked before anything is dumped; an unknown table is an error that
// wraps ErrNoTable, a table outside opts.Publication one that wraps
// ErrNotPublished.
func Take(ctx context.Context, cat *catalog.Catalog, opts Options, tables []string) ([]catalog.Basebackup, error) {
	targets := make([]target, len(tables))
	for i, name := range tables {
		nsp, rel, err := schema.ParseName(name)
		if err != nil {
			return nil, fmt.Errorf("basebackup: %w", err)
		}
		targets[i] = target{nsp: nsp, rel: rel, name: name}
	}
	return take(ctx, cat, opts, targets)
}

func take(ctx context.Context, cat *catalog.Catalog, opts Options, targets []target) ([]catalog.Basebackup, error) {
	if opts.Conn == nil {
		return nil, fmt.Errorf("basebackup: no source connection configured")
	}
	if opts.TempDir == "" {
		opts.TempDir = filepath.Join(cat.Dir(), "tmp")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Reason == "" {
		opts.Reason = "request"
	}
	// Without the daemon's slot the changes after the snapshot would not be
	// kept for the archive.
	epochs, err := cat.Epochs(ctx)
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	if len(epochs) == 0 {
		return nil, fmt.Errorf("basebackup: archive %s does not stream changes yet: start lbt backup first, then take basebackups", cat.Dir())
	}
	if err := os.MkdirAll(opts.TempDir, catalog.DirMode); err != nil {
		return nil, fmt.Errorf("basebackup: temp dir: %w", err)
	}

	started := time.Now()
	conn, tx, point, err := snapshot(ctx, opts.Logger, opts.Conn, opts.SlotWait)
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	defer conn.Close(context.Background())
	defer tx.Rollback(context.Background())
	// Creating the slot waits for the transactions running at that moment.
	opts.Logger.Debug("snapshot exported", "lsn", pglogrepl.LSN(point), "waited", time.Since(started).Round(time.Millisecond))

	// Check every table before dumping any, so that a typo fails the whole
	// request at once.
	oids := make([]uint32, len(targets))
	for i, t := range targets {
		oids[i] = t.oid
		if t.oid == 0 {
			if oids[i], err = resolve(ctx, tx, t.nsp, t.rel); err != nil {
				return nil, fmt.Errorf("basebackup: %w", err)
			}
		}
		if err := checkTable(ctx, tx, oids[i], opts.Publication); err != nil {
			return nil, fmt.Errorf("basebackup of %s: %w", t.name, err)
		}
	}
	var out []catalog.Basebackup
	for i, t := range targets {
		b, err := dumpTable(ctx, cat, opts, tx, oids[i], point)
		if err != nil {
			return out, fmt.Errorf("basebackup of %s: %w", t.name, err)
		}
		opts.Logger.Info("basebackup complete", "table", b.Definition.Table.QualifiedName(), "table_id", b.TableID,
			"lsn", pglogrepl.LSN(point), "reason", b.Reason, "rows", b.Rows, "bytes", b.Bytes,
			"duration", b.FinishedAt.Sub(b.StartedAt).Round(time.Millisecond))
		out = append(out, b)
	}
	return out, nil
}

// snapshot opens a connection whose transaction sees the database exactly
// as of the returned LSN: the consistent point of a temporary logical slot
// created with an exported snapshot.
func snapshot(ctx context.Context, log hclog.Logger, pc *pgconn.Config, wait source.SlotWait) (*pgx.Conn, pgx.Tx, uint64, error) {
	pc = pc.Copy()
	schema.SetTextParams(pc.RuntimeParams) // the COPY's text
	rc := pc.Copy()
	rc.RuntimeParams["replication"] = "database"
	repl, err := pgconn.ConnectConfig(ctx, rc)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("replication connection: %w", err)
	}
	// Closing the replication connection drops the temporary slot; the
	// imported snapshot lives on in the dump's transaction.
	defer repl.Close(context.Background())
	slot := fmt.Sprintf("lbt_base_%d_%d", os.Getpid(), slotSeq.Add(1))
	res, err := source.CreateSlot(ctx, log, repl, pc, slot, pglogrepl.CreateReplicationSlotOptions{
		Temporary: true, Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"}, wait)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("create temporary slot: %w", err)
	}
	point, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return nil, nil, 0, err
	}

	cc, _ := pgx.ParseConfig("")
	cc.Config = *pc.Copy()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("connect: %w", err)
	}
	// The snapshot must be imported before the replication connection runs
	// another command, or it is gone.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Close(context.Background())
		return nil, nil, 0, fmt.Errorf("begin: %w", err)
	}
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+schema.QuoteLiteral(res.SnapshotName)); err != nil {
		conn.Close(context.Background())
		return nil, nil, 0, fmt.Errorf("import snapshot: %w", err)
	}
	return conn, tx, uint64(point), nil
}

// dumpTable writes one table's COPY under the imported snapshot to a file
// in the temp dir, moves it into the archive once complete and durable,
// then records it. The file is locked (flock) from its creation until its
// catalog row is committed, so that the clean-up of stray files never takes
// a dump in progress for one left by a crash.
func dumpTable(ctx context.Context, cat *catalog.Catalog, opts Options, tx pgx.Tx, oid uint32, point uint64) (catalog.Basebackup, error) {
	started := time.Now()
	def, seqs, err := describe(ctx, tx, oid)
	if err != nil {
		return catalog.Basebackup{}, err
	}
	tableID, err := registerTable(ctx, cat, oid, def.Table, def.Relfilenode, point)
	if err != nil {
		return catalog.Basebackup{}, err
	}

	tmp, err := os.CreateTemp(opts.TempDir, fmt.Sprintf(partialPattern, tableID))
	if err != nil {
		return catalog.Basebackup{}, fmt.Errorf("temp file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := syscall.Flock(int(tmp.Fd()), syscall.LOCK_EX); err != nil {
		return catalog.Basebackup{}, fmt.Errorf("lock %s: %w", tmp.Name(), err)
	}
	crc := &crcWriter{w: tmp}
	zw := lz4.NewWriter(crc)
	if err := zw.Apply(lz4.CompressionLevelOption(lz4.Fast), lz4.ChecksumOption(true)); err != nil {
		return catalog.Basebackup{}, err
	}
	counter := &countWriter{w: zw}
	cols := make([]string, len(def.Table.Columns))
	for i, c := range def.Table.Columns {
		cols[i] = schema.QuoteIdent(c.Name)
	}
	var copySQL string
	switch {
	case len(cols) == 0:
		copySQL = fmt.Sprintf("COPY %s TO STDOUT", def.Table.QualifiedName())
	case def.Partitioned:
		// COPY refuses a partitioned table; a query reads all its partitions.
		copySQL = fmt.Sprintf("COPY (SELECT %s FROM %s) TO STDOUT", strings.Join(cols, ", "), def.Table.QualifiedName())
	default:
		copySQL = fmt.Sprintf("COPY %s (%s) TO STDOUT", def.Table.QualifiedName(), strings.Join(cols, ", "))
	}
	tag, err := tx.Conn().PgConn().CopyTo(ctx, counter, copySQL)
	if err != nil {
		return catalog.Basebackup{}, fmt.Errorf("copy: %w", err)
	}
	if err := zw.Close(); err != nil {
		return catalog.Basebackup{}, fmt.Errorf("compress: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return catalog.Basebackup{}, fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	b := catalog.Basebackup{
		TableID: tableID, LSN: point, Path: catalog.BasebackupName(tableID, point),
		Rows: tag.RowsAffected(), Bytes: crc.n, RawBytes: counter.n, CRC: crc.sum,
		Definition: def.Definition, Sequences: seqs, Reason: opts.Reason, StartedAt: started,
	}
	b.FinishedAt = time.Now()
	// Recorded as pending first: should the basebackup row never be
	// committed, the clean-up knows the files for leftovers. The sidecar,
	// the row's content beside the file, goes first, so that a file in
	// base/ always has one.
	if err := retryBusy(ctx, func() error { return cat.AddPendingBasebackup(ctx, b.Path) }); err != nil {
		return catalog.Basebackup{}, err
	}
	if err := catalog.WriteSidecar(ctx, cat.Store(), b, catalog.SidecarTable{OID: oid, Relfilenode: def.Relfilenode}); err != nil {
		return catalog.Basebackup{}, err
	}
	// Moved, not copied: the local directory renames the file into base/
	// (its flock going with it), an object store uploads it from disk.
	if err := storage.PutFile(ctx, cat.Store(), b.Path, tmp.Name()); err != nil {
		return catalog.Basebackup{}, fmt.Errorf("move basebackup into archive: %w", err)
	}
	err = retryBusy(ctx, func() error {
		var err error
		b.ID, err = cat.AddBasebackup(ctx, b)
		return err
	})
	if err != nil {
		// Unless the row made it after all, nothing references the file:
		// remove it now rather than leave it to the next clean-up.
		if has, herr := cat.HasBasebackup(context.Background(), b.Path); herr == nil && !has {
			cat.Store().Delete(context.Background(), b.Path)
			cat.Store().Delete(context.Background(), catalog.SidecarName(b.Path))
		}
		return catalog.Basebackup{}, err
	}
	return b, nil
}

// registerTable finds the table's catalog id by OID, adding the table when
// the stream has not shown it yet (no change since lbt began).
func registerTable(ctx context.Context, cat *catalog.Catalog, oid uint32, t schema.Table, relfilenode uint32, point uint64) (int64, error) {
	var id int64
	// Most tables are known: look without taking the write lock, which the
	// daemon holds most of the time under load.
	err := cat.DB().QueryRowContext(ctx, `SELECT id FROM rel WHERE oid = ? ORDER BY id DESC LIMIT 1`, int64(oid)).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("catalog table by oid %d: %w", oid, err)
	}
	err = retryBusy(ctx, func() error {
		w, err := cat.Begin(ctx)
		if err != nil {
			return err
		}
		defer w.Rollback()
		err = w.Tx().QueryRowContext(ctx, `SELECT id FROM rel WHERE oid = ? ORDER BY id DESC LIMIT 1`, int64(oid)).Scan(&id)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("catalog table by oid %d: %w", oid, err)
		}
		if id, err = w.AddTable(oid, point); err != nil {
			return err
		}
		if err := w.AddSchemaVersion(catalog.SchemaVersion{TableID: id, Version: 1, FromLSN: point, Table: t}); err != nil {
			return err
		}
		// The table at the snapshot, against which the stream's next
		// description of it tells a change the stream does not carry.
		if err := w.SetDescription(id, catalog.TableDescription{Relfilenode: relfilenode, Table: t}); err != nil {
			return err
		}
		return w.Commit()
	})
	return id, err
}

// retryBusy retries a catalog write that found the daemon holding SQLite's
// write lock for longer than the busy timeout (it does for the whole of a
// huge source transaction), for as long as ctx lasts.
func retryBusy(ctx context.Context, f func() error) error {
	for {
		err := f()
		if !catalog.IsBusy(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up waiting for the catalog: %v)", ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

type crcWriter struct {
	w   io.Writer
	sum uint32
	n   int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.sum = crc32.Update(c.sum, castagnoli, p[:n])
	c.n += int64(n)
	return n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
