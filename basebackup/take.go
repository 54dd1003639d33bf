// Package basebackup takes basebackups: consistent per-table COPYs whose
// place in the change stream is exactly known, so that restore can start
// from one and apply precisely the deltas after it; in chunks on parallel
// connections, or built from the archive alone. Its scheduler decides when
// they are due, and runs package retention's purge of what they make
// unnecessary.
package basebackup

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
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
	"lbt/config"
	"lbt/crypt"
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
	// Keys encrypt the archive's files (encryptRecipients); nil or empty
	// for a plaintext archive.
	Keys *crypt.Keys
	// Jobs is how many connections copy a table's chunks at once, all
	// under the one snapshot (basebackupJobs); 1 or less is one. A
	// basebackup from the archive (Synthesize) rewrites as many files at
	// once.
	Jobs int
	// ChunkBytes is about how much of a table's storage (its heap, as
	// pg_relation_size counts it) one chunk file holds; 0 is
	// DefaultChunkBytes. A table larger than this, or one that Jobs can
	// split, is dumped in chunks (docs/BASEBACKUP.md, "Chunks").
	ChunkBytes int64
	// Memory is what a basebackup from the archive (Synthesize) gives the
	// reduced changes before they spill to TempDir, as a restore's
	// (restoreMemory); 0 is no limit.
	Memory int64
}

// DefaultChunkBytes is the default ChunkBytes: a chunk is read in seconds
// to a minute, and a synthetic basebackup rewrites a whole chunk for one
// changed row in it.
const DefaultChunkBytes = 1 << 30

// minChunkedBytes is the smallest table split for the sake of Jobs alone:
// below it, the connections cost more than they save.
const minChunkedBytes = 8 << 20

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{Logger: hclog.NewNullLogger(), Reason: "request", SlotWait: source.DefaultSlotWait, Jobs: 1}
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
		opts.TempDir = config.DefaultTempDir(cat.Dir())
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
	snap, err := snapshot(ctx, opts.Logger, opts.Conn, opts.SlotWait, max(opts.Jobs, 1))
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	defer snap.close()
	tx, point := snap.txs[0], snap.point
	// Creating the slot waits for the transactions running at that moment.
	opts.Logger.Debug("snapshot exported", "lsn", pglogrepl.LSN(point), "waited", time.Since(started).Round(time.Millisecond), "connections", len(snap.txs))

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
		b, err := dumpTable(ctx, cat, opts, snap, oids[i])
		if err != nil {
			return out, fmt.Errorf("basebackup of %s: %w", t.name, err)
		}
		opts.Logger.Info("basebackup complete", "table", b.Definition.Table.QualifiedName(), "table_id", b.TableID,
			"lsn", pglogrepl.LSN(point), "reason", b.Reason, "rows", b.Rows, "bytes", b.Bytes, "chunks", len(b.Files()),
			"duration", b.FinishedAt.Sub(b.StartedAt).Round(time.Millisecond))
		out = append(out, b)
	}
	return out, nil
}

// snap is the exported snapshot, imported by one or more connections: the
// first describes the tables, all of them copy chunks.
type snap struct {
	conns []*pgx.Conn
	txs   []pgx.Tx
	point uint64 // the slot's consistent point
	// tidRanges: the server scans a ctid range without reading the rest of
	// the table (PostgreSQL 14's TID range scan), so chunks are cheap.
	tidRanges bool
}

func (s *snap) close() {
	for i, c := range s.conns {
		s.txs[i].Rollback(context.Background())
		c.Close(context.Background())
	}
}

// snapshot opens jobs connections whose transactions see the database
// exactly as of the returned LSN: the consistent point of a temporary
// logical slot created with an exported snapshot. Every connection imports
// the snapshot before the replication connection runs another command (or
// closes, which drops the slot): the exported snapshot lives only that
// long, the imported ones as long as their transactions.
func snapshot(ctx context.Context, log hclog.Logger, pc *pgconn.Config, wait source.SlotWait, jobs int) (_ *snap, err error) {
	pc = pc.Copy()
	schema.SetTextParams(pc.RuntimeParams) // the COPY's text
	rc := pc.Copy()
	rc.RuntimeParams["replication"] = "database"
	repl, err := pgconn.ConnectConfig(ctx, rc)
	if err != nil {
		return nil, fmt.Errorf("replication connection: %w", err)
	}
	defer repl.Close(context.Background())
	slot := fmt.Sprintf("lbt_base_%d_%d", os.Getpid(), slotSeq.Add(1))
	res, err := source.CreateSlot(ctx, log, repl, pc, slot, pglogrepl.CreateReplicationSlotOptions{
		Temporary: true, Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"}, wait)
	if err != nil {
		return nil, fmt.Errorf("create temporary slot: %w", err)
	}
	point, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return nil, err
	}
	s := &snap{point: uint64(point)}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	for range jobs {
		conn, err := source.Connect(ctx, pc)
		if err != nil {
			return nil, err
		}
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			conn.Close(context.Background())
			return nil, fmt.Errorf("begin: %w", err)
		}
		s.conns, s.txs = append(s.conns, conn), append(s.txs, tx)
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+schema.QuoteLiteral(res.SnapshotName)); err != nil {
			return nil, fmt.Errorf("import snapshot: %w", err)
		}
	}
	var version int
	if err := s.txs[0].QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return nil, fmt.Errorf("server version: %w", err)
	}
	s.tidRanges = version >= 140000
	return s, nil
}

// dumpTable writes one table's COPY under the imported snapshot to files
// in the temp dir (one per chunk, on the snapshot's connections at once),
// moves them into the archive once complete and durable, then records
// them. Each file is locked (flock) from its creation until the catalog
// row is committed, so that the clean-up of stray files never takes a dump
// in progress for one left by a crash.
func dumpTable(ctx context.Context, cat *catalog.Catalog, opts Options, s *snap, oid uint32) (catalog.Basebackup, error) {
	started := time.Now()
	tx, point := s.txs[0], s.point
	def, seqs, err := source.DescribeDefinition(ctx, tx, oid)
	if err != nil {
		return catalog.Basebackup{}, err
	}
	tableID, err := registerTable(ctx, cat, oid, def.Table, def.Relfilenode, point)
	if err != nil {
		return catalog.Basebackup{}, err
	}
	ranges, err := chunkRanges(ctx, tx, oid, def, s.tidRanges, opts)
	if err != nil {
		return catalog.Basebackup{}, err
	}
	files, err := copyChunks(ctx, opts, cat.Keys(), s, def, tableID, ranges)
	for _, f := range files {
		if f != nil {
			defer os.Remove(f.tmp.Name())
			defer f.tmp.Close()
		}
	}
	if err != nil {
		return catalog.Basebackup{}, err
	}
	b := catalog.Basebackup{
		TableID: tableID, LSN: point, Path: catalog.BasebackupName(tableID, point),
		Definition: def.Definition, Sequences: seqs, Reason: opts.Reason, StartedAt: started,
	}
	return storeBasebackup(ctx, cat, b, files, nil, catalog.SidecarTable{OID: oid, Relfilenode: def.Relfilenode})
}

// storeBasebackup records b, whose files are complete and durable in the
// temp dir, and moves them into the archive: the pending row, the sidecar,
// the files, then the basebackup row. It fills in b's sizes and chunks.
func storeBasebackup(ctx context.Context, cat *catalog.Catalog, b catalog.Basebackup, files []*chunkFile, reused []catalog.Chunk, side catalog.SidecarTable) (catalog.Basebackup, error) {
	var chunks []catalog.Chunk
	for _, f := range files {
		chunks = append(chunks, f.chunk)
	}
	chunks = append(chunks, reused...) // older basebackups' files, after the new ones: chunk 0 is always new
	for _, c := range chunks {
		b.Rows, b.Bytes, b.RawBytes = b.Rows+c.Rows, b.Bytes+c.Bytes, b.RawBytes+c.RawBytes
	}
	if len(chunks) == 1 {
		b.CRC = chunks[0].CRC
	} else {
		b.Chunks = chunks
		b.CRC = b.Chunks[0].CRC
	}
	b.FinishedAt = time.Now()
	// Recorded as pending first: should the basebackup row never be
	// committed, the clean-up knows the files for leftovers. The sidecar,
	// the row's content beside the file, goes first, so that a file in
	// base/ always has one.
	if err := retryBusy(ctx, func() error { return cat.AddPendingBasebackup(ctx, b.Path) }); err != nil {
		return catalog.Basebackup{}, err
	}
	if err := catalog.WriteSidecar(ctx, cat.Store(), cat.Keys(), b, side); err != nil {
		return catalog.Basebackup{}, err
	}
	removeAll := func() {
		for _, f := range files {
			cat.Store().Delete(context.Background(), f.chunk.Path)
		}
		cat.Store().Delete(context.Background(), catalog.SidecarName(b.Path))
	}
	for _, f := range files {
		// Moved, not copied: the local directory renames the file into
		// base/ (its flock going with it), an object store uploads it
		// from disk.
		if err := storage.PutFile(ctx, cat.Store(), f.chunk.Path, f.tmp.Name()); err != nil {
			return catalog.Basebackup{}, fmt.Errorf("move basebackup into archive: %w", err)
		}
	}
	err := retryBusy(ctx, func() error {
		var err error
		b.ID, err = cat.AddBasebackup(ctx, b)
		return err
	})
	if err != nil {
		// Unless the row made it after all, nothing references the files:
		// remove them now rather than leave them to the next clean-up.
		if has, herr := cat.HasBasebackup(context.Background(), b.Path); herr == nil && !has {
			removeAll()
		}
		return catalog.Basebackup{}, err
	}
	return b, nil
}

// blockRange is the heap blocks [from, to) of a chunk; to 0 is to the end.
type blockRange struct{ from, to uint64 }

// chunkRanges splits a table into ranges of heap blocks, one per chunk: a
// single range (one file, as before chunks) unless the server scans TID
// ranges, the table is a plain one with columns, and it is larger than a
// chunk or Jobs can share it. The last range is open-ended, so that no
// row escapes whatever the size read now (the snapshot sees no row in
// blocks added after it, and VACUUM cannot take away a block holding a
// row it still sees).
func chunkRanges(ctx context.Context, tx pgx.Tx, oid uint32, def source.TableDefinition, tidRanges bool, opts Options) ([]blockRange, error) {
	whole := []blockRange{{}}
	if !tidRanges || def.Partitioned || len(def.Table.Columns) == 0 {
		return whole, nil
	}
	var size, blockSize int64
	err := tx.QueryRow(ctx, `SELECT pg_relation_size($1::oid), current_setting('block_size')::bigint`, oid).Scan(&size, &blockSize)
	if err != nil {
		return nil, fmt.Errorf("table size: %w", err)
	}
	per := opts.ChunkBytes
	if per <= 0 {
		per = DefaultChunkBytes
	}
	blocks := uint64(size / blockSize)
	n := uint64((size + per - 1) / per)
	if jobs := uint64(max(opts.Jobs, 1)); n < jobs && size >= minChunkedBytes {
		n = jobs
	}
	n = min(n, blocks)
	if n <= 1 {
		return whole, nil
	}
	step := (blocks + n - 1) / n
	out := make([]blockRange, 0, n)
	for from := uint64(0); from < blocks; from += step {
		out = append(out, blockRange{from: from, to: from + step})
	}
	out[len(out)-1].to = 0
	return out, nil
}

// chunkFile is a chunk written to the temp dir.
type chunkFile struct {
	tmp   *os.File
	chunk catalog.Chunk
	zw    *lz4.Writer
	enc   io.WriteCloser // encrypts, in an encrypted archive
	crc   *crcWriter
	// endsLine: what was written so far ends with a whole row
	endsLine bool
}

// copyChunks copies each range of the table into a temp file of its own,
// on all the snapshot's connections at once. The files it returns (also
// on error: those it created) are the caller's to close and remove. keys
// encrypt them in an encrypted archive (nil: plaintext).
func copyChunks(ctx context.Context, opts Options, keys *crypt.Keys, s *snap, def source.TableDefinition, tableID int64, ranges []blockRange) ([]*chunkFile, error) {
	files := make([]*chunkFile, len(ranges))
	next := make(chan int, len(ranges))
	for k := range ranges {
		next <- k
	}
	close(next)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(s.txs))
	workers := min(len(s.txs), len(ranges))
	for w := range workers {
		go func(tx pgx.Tx) {
			for k := range next {
				f, err := copyChunk(ctx, opts, keys, tx, def, tableID, s.point, k, ranges[k], len(ranges) > 1)
				files[k] = f
				if err != nil {
					cancel()
					errs <- err
					return
				}
			}
			errs <- nil
		}(s.txs[w])
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	return files, first
}

// copyChunk copies one range of the table into a new temp file, compressed.
func copyChunk(ctx context.Context, opts Options, keys *crypt.Keys, tx pgx.Tx, def source.TableDefinition, tableID int64, point uint64, k int, r blockRange, ranged bool) (*chunkFile, error) {
	f, err := createChunk(opts.TempDir, tableID, keys)
	if err != nil {
		return f, err
	}
	f.chunk.Path, f.chunk.FromBlock, f.chunk.ToBlock = catalog.ChunkName(tableID, point, k), r.from, r.to
	tag, err := tx.Conn().PgConn().CopyTo(ctx, f, copySQL(def, r, ranged))
	if err != nil {
		return f, fmt.Errorf("copy: %w", err)
	}
	if err := f.finish(); err != nil {
		return f, err
	}
	f.chunk.Rows = tag.RowsAffected()
	return f, nil
}

// createChunk creates a chunk file in the temp dir, locked (flock) until
// it is closed, and ready for its COPY text; with keys (an encrypted
// archive) it is an age file.
func createChunk(tempDir string, tableID int64, keys *crypt.Keys) (*chunkFile, error) {
	tmp, err := os.CreateTemp(tempDir, fmt.Sprintf(partialPattern, tableID))
	if err != nil {
		return nil, fmt.Errorf("temp file: %w", err)
	}
	f := &chunkFile{tmp: tmp}
	if err := syscall.Flock(int(tmp.Fd()), syscall.LOCK_EX); err != nil {
		return f, fmt.Errorf("lock %s: %w", tmp.Name(), err)
	}
	// The checksum and size are of the file as stored, encrypted in an
	// encrypted archive, so that they can be checked without its key.
	f.crc = &crcWriter{w: tmp}
	if f.enc, err = keys.Writer(f.crc); err != nil {
		return f, err
	}
	f.zw = lz4.NewWriter(f.enc)
	if err := f.zw.Apply(lz4.CompressionLevelOption(lz4.Fast), lz4.ChecksumOption(true)); err != nil {
		return f, err
	}
	return f, nil
}

// Write compresses COPY text into the chunk.
func (f *chunkFile) Write(p []byte) (int, error) {
	n, err := f.zw.Write(p)
	f.chunk.RawBytes += int64(n)
	return n, err
}

// finish completes the chunk's frame and makes it durable, and records
// its length and checksum.
func (f *chunkFile) finish() error {
	if err := f.zw.Close(); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	if err := f.enc.Close(); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	if err := f.tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", f.tmp.Name(), err)
	}
	f.chunk.Bytes, f.chunk.CRC = f.crc.n, f.crc.sum
	return nil
}

// copySQL is the COPY of the table's columns (of one range of its blocks
// when ranged) in the definition's order.
func copySQL(def source.TableDefinition, r blockRange, ranged bool) string {
	cols := make([]string, len(def.Table.Columns))
	for i, c := range def.Table.Columns {
		cols[i] = schema.QuoteIdent(c.Name)
	}
	switch {
	case len(cols) == 0:
		return fmt.Sprintf("COPY %s TO STDOUT", def.Table.QualifiedName())
	case def.Partitioned:
		// COPY refuses a partitioned table; a query reads all its partitions.
		return fmt.Sprintf("COPY (SELECT %s FROM %s) TO STDOUT", strings.Join(cols, ", "), def.Table.QualifiedName())
	case ranged:
		// ONLY: COPY of a table reads no inheritance children, and neither
		// may its query.
		where := fmt.Sprintf("ctid >= '(%d,0)'::tid", r.from)
		if r.to > 0 {
			where += fmt.Sprintf(" AND ctid < '(%d,0)'::tid", r.to)
		}
		return fmt.Sprintf("COPY (SELECT %s FROM ONLY %s WHERE %s) TO STDOUT", strings.Join(cols, ", "), def.Table.QualifiedName(), where)
	default:
		return fmt.Sprintf("COPY %s (%s) TO STDOUT", def.Table.QualifiedName(), strings.Join(cols, ", "))
	}
}

// registerTable finds the table's catalog id by OID, adding the table when
// the stream has not shown it yet (no change since lbt began).
func registerTable(ctx context.Context, cat *catalog.Catalog, oid uint32, t schema.Table, relfilenode uint32, point uint64) (int64, error) {
	// Most tables are known: look without taking the write lock, which the
	// daemon holds most of the time under load.
	id, ok, err := cat.NewestTableID(ctx, oid)
	if err != nil || ok {
		return id, err
	}
	err = retryBusy(ctx, func() error {
		w, err := cat.Begin(ctx)
		if err != nil {
			return err
		}
		defer w.Rollback()
		if id, ok, err = w.NewestTableID(oid); err != nil || ok {
			return err
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
