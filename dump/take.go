// Package dump takes basebackups: consistent per-table COPYs whose place in
// the change stream is exactly known, so that restore can start from one and
// apply precisely the deltas after it. It also decides when they are due
// and purges what they make unnecessary.
package dump

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pierrec/lz4/v4"

	"lbt/catalog"
	"lbt/schema"
)

// Options configures basebackups.
type Options struct {
	ArchiveDir string
	TempDir    string // incomplete dumps are written here; default <ArchiveDir>/tmp
	Conn       *pgconn.Config
	Logger     hclog.Logger
	Reason     string // recorded with each basebackup: "new table", "threshold", "request", ...
}

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{Logger: hclog.NewNullLogger(), Reason: "request"}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// slotSeq keeps temporary slot names of one process apart.
var slotSeq atomic.Int64

// Take dumps the named tables (SQL names) under one exported snapshot and
// records each basebackup in the catalog. Every transaction that committed
// before the snapshot's consistent point is in the dumps, and every one
// after it is in the deltas: a temporary logical slot created with
// EXPORT_SNAPSHOT gives both the snapshot and the point.
func Take(ctx context.Context, cat *catalog.Catalog, opts Options, tables []string) ([]catalog.Basebackup, error) {
	if opts.Conn == nil {
		return nil, fmt.Errorf("basebackup: no source connection configured")
	}
	if opts.TempDir == "" {
		opts.TempDir = filepath.Join(cat.Dir(), "tmp")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(opts.TempDir, 0o750); err != nil {
		return nil, fmt.Errorf("basebackup: temp dir: %w", err)
	}

	rc := opts.Conn.Copy()
	rc.RuntimeParams["replication"] = "database"
	repl, err := pgconn.ConnectConfig(ctx, rc)
	if err != nil {
		return nil, fmt.Errorf("basebackup: replication connection: %w", err)
	}
	defer repl.Close(context.Background())
	slot := fmt.Sprintf("lbt_base_%d_%d", os.Getpid(), slotSeq.Add(1))
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary: true, Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return nil, fmt.Errorf("basebackup: create temporary slot: %w", err)
	}
	point, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}

	cc, _ := pgx.ParseConfig("")
	cc.Config = *opts.Conn.Copy()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("basebackup: connect: %w", err)
	}
	defer conn.Close(context.Background())
	// The snapshot must be imported before the replication connection runs
	// another command, or it is gone.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("basebackup: begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+schema.QuoteLiteral(res.SnapshotName)); err != nil {
		return nil, fmt.Errorf("basebackup: import snapshot: %w", err)
	}

	var out []catalog.Basebackup
	for _, name := range tables {
		b, err := dumpTable(ctx, cat, opts, tx, name, uint64(point))
		if err != nil {
			return out, fmt.Errorf("basebackup of %s: %w", name, err)
		}
		opts.Logger.Info("basebackup complete", "table", name, "lsn", point, "rows", b.Rows, "bytes", b.Bytes,
			"duration", b.FinishedAt.Sub(b.StartedAt).Round(time.Millisecond))
		out = append(out, b)
	}
	return out, nil
}

// dumpTable writes one table's COPY under the imported snapshot to a file
// in the temp dir, moves it into the archive once complete and durable,
// then records it.
func dumpTable(ctx context.Context, cat *catalog.Catalog, opts Options, tx pgx.Tx, name string, point uint64) (catalog.Basebackup, error) {
	started := time.Now()
	nsp, rel, err := schema.ParseName(name)
	if err != nil {
		return catalog.Basebackup{}, err
	}
	oid, def, seqs, err := describe(ctx, tx, nsp, rel)
	if err != nil {
		return catalog.Basebackup{}, err
	}
	tableID, err := registerTable(ctx, cat, oid, def.Table, point)
	if err != nil {
		return catalog.Basebackup{}, err
	}

	tmp, err := os.CreateTemp(opts.TempDir, fmt.Sprintf("base-%d-*.partial", tableID))
	if err != nil {
		return catalog.Basebackup{}, fmt.Errorf("temp file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
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
	copySQL := fmt.Sprintf("COPY %s (%s) TO STDOUT", def.Table.QualifiedName(), strings.Join(cols, ", "))
	if len(cols) == 0 {
		copySQL = fmt.Sprintf("COPY %s TO STDOUT", def.Table.QualifiedName())
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
		Definition: def, Sequences: seqs, Reason: opts.Reason, StartedAt: started,
	}
	if err := moveIntoArchive(tmp, filepath.Join(cat.Dir(), b.Path)); err != nil {
		return catalog.Basebackup{}, err
	}
	b.FinishedAt = time.Now()
	if b.ID, err = retryBusy(ctx, func() (int64, error) { return cat.AddBasebackup(ctx, b) }); err != nil {
		return catalog.Basebackup{}, err
	}
	return b, nil
}

// moveIntoArchive renames the finished temp file to its place in the
// archive, copying it when the temp dir is on another file system.
func moveIntoArchive(tmp *os.File, dst string) error {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("archive dir: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		if !errors.Is(err, syscallEXDEV) {
			return fmt.Errorf("move basebackup into archive: %w", err)
		}
		if err := copyFile(tmp, dst); err != nil {
			return err
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

func copyFile(src *os.File, dst string) error {
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	part := dst + ".partial"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("copy basebackup into archive: %w", err)
	}
	defer os.Remove(part)
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return fmt.Errorf("copy basebackup into archive: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("copy basebackup into archive: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(part, dst)
}

// registerTable finds the table's catalog id by OID, adding the table when
// the stream has not shown it yet (no change since lbt began).
func registerTable(ctx context.Context, cat *catalog.Catalog, oid uint32, t schema.Table, point uint64) (int64, error) {
	return retryBusy(ctx, func() (int64, error) {
		w, err := cat.Begin(ctx)
		if err != nil {
			return 0, err
		}
		defer w.Rollback()
		var id int64
		err = w.Tx().QueryRowContext(ctx, `SELECT id FROM rel WHERE oid = ? ORDER BY id DESC LIMIT 1`, int64(oid)).Scan(&id)
		if err == nil {
			return id, nil
		}
		if id, err = w.AddTable(oid, point); err != nil {
			return 0, err
		}
		if err := w.AddSchemaVersion(catalog.SchemaVersion{TableID: id, Version: 1, FromLSN: point, Table: t}); err != nil {
			return 0, err
		}
		return id, w.Commit()
	})
}

// retryBusy retries a catalog write that found the daemon holding SQLite's
// write lock for longer than the busy timeout (a huge transaction).
func retryBusy(ctx context.Context, f func() (int64, error)) (int64, error) {
	for i := 0; ; i++ {
		v, err := f()
		if err == nil || i == 30 || !strings.Contains(err.Error(), "SQLITE_BUSY") && !strings.Contains(err.Error(), "database is locked") {
			return v, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
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
