package basebackup

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pglogrepl"

	"lbt/catalog"
	"lbt/config"
	"lbt/crypt"
	"lbt/restore"
)

// ReasonFromArchive is appended to the reason of a basebackup built from
// the archive (Synthesize).
const ReasonFromArchive = "from archive"

// Synthesize builds a new basebackup of a table from the archive alone,
// reading nothing from the source: its newest basebackup with the changes
// archived after it reduced onto it, as a restore of the latest state
// computes them, written to chunk files of about opts.ChunkBytes of COPY
// text each instead of a COPY. The new basebackup's consistent point is
// one past the last transaction applied. Its definition and sequences are
// the old basebackup's (a table whose columns changed since is refused:
// restore.ErrNotSynthesizable); a restore sets the sequences past the
// largest value restored anyway. The reduced changes spill past
// opts.Memory as a restore's do.
//
// Only the old basebackup's files that hold a row a change touches are
// rewritten: each file is read and its rows checked against the reduced
// changes, and one that no change touches (its checksum and row count
// verified as it is read) becomes a chunk of the new basebackup by
// reference, its file shared (format 5; purge keeps it while any kept
// basebackup lists it). opts.Jobs files are read and rewritten at once,
// each job cutting what it keeps into chunks of its own. New chunks come
// first, so that chunk 0, the basebackup's path, is always its own file.
func Synthesize(ctx context.Context, cat *catalog.Catalog, opts Options, table string) (catalog.Basebackup, error) {
	if opts.TempDir == "" {
		opts.TempDir = config.DefaultTempDir(cat.Dir())
	}
	if err := os.MkdirAll(opts.TempDir, catalog.DirMode); err != nil {
		return catalog.Basebackup{}, fmt.Errorf("basebackup from archive: temp dir: %w", err)
	}
	started := time.Now()
	ro := restore.NewOptions()
	ro.Table, ro.Memory, ro.TempDir, ro.Logger = table, opts.Memory, opts.TempDir, opts.Logger
	per := opts.ChunkBytes
	if per <= 0 {
		per = DefaultChunkBytes
	}
	ws := make([]*chunkWriter, max(opts.Jobs, 1))
	outs := make([]io.Writer, len(ws))
	for j := range ws {
		ws[j] = &chunkWriter{tempDir: opts.TempDir, per: per, keys: cat.Keys()}
		defer ws[j].remove()
		outs[j] = ws[j]
	}
	syn, err := restore.Synthesize(ctx, cat, ro, outs)
	var files []*chunkFile
	for j, w := range ws {
		// A job that wrote nothing has no chunk, unless no job wrote a
		// row: chunk 0, the basebackup's path, is a file of its own
		// all the same, empty.
		if err == nil && (len(w.files) > 0 || j == len(ws)-1 && len(files) == 0) {
			err = w.close()
		}
		files = append(files, w.files...)
	}
	if err != nil {
		return catalog.Basebackup{}, fmt.Errorf("basebackup of %s from archive: %w", table, err)
	}
	oid, err := tableOID(ctx, cat, syn.TableID)
	if err != nil {
		return catalog.Basebackup{}, err
	}
	for k, f := range files {
		f.chunk.Path = catalog.ChunkName(syn.TableID, syn.LSN, k)
	}
	reason := ReasonFromArchive
	if opts.Reason != "" {
		reason = opts.Reason + ", " + ReasonFromArchive
	}
	b := catalog.Basebackup{
		TableID: syn.TableID, LSN: syn.LSN, Path: catalog.BasebackupName(syn.TableID, syn.LSN),
		Definition: syn.From.Definition, Sequences: syn.From.Sequences, Reason: reason, StartedAt: started,
	}
	b, err = storeBasebackup(ctx, cat, b, files, syn.Reused, catalog.SidecarTable{OID: oid})
	if err != nil {
		return b, fmt.Errorf("basebackup of %s from archive: %w", table, err)
	}
	if b.Rows != syn.Rows {
		// storeBasebackup counted the rows of the chunks: lines written.
		return b, fmt.Errorf("basebackup of %s from archive: %w: %d rows stored, %d written", table, catalog.ErrCorrupt, b.Rows, syn.Rows)
	}
	opts.Logger.Info("basebackup from archive complete", "table", b.Definition.Table.QualifiedName(), "table_id", b.TableID,
		"lsn", pglogrepl.LSN(b.LSN), "from_lsn", pglogrepl.LSN(syn.From.LSN), "rows", b.Rows, "bytes", b.Bytes,
		"chunks", len(b.Files()), "reused", len(syn.Reused), "read", syn.Bytes, "duration", b.FinishedAt.Sub(b.StartedAt).Round(time.Millisecond))
	return b, nil
}

// tableOID is a catalog table's OID on the source.
func tableOID(ctx context.Context, cat *catalog.Catalog, tableID int64) (uint32, error) {
	refs, err := cat.Tables(ctx)
	if err != nil {
		return 0, err
	}
	for _, r := range refs {
		if r.ID == tableID {
			return r.OID, nil
		}
	}
	return 0, fmt.Errorf("catalog has no table %d", tableID)
}

// chunkWriter cuts the COPY text written to it into chunk files of about
// per bytes each, at line ends (a line is a row: newlines inside values
// are escaped).
type chunkWriter struct {
	tempDir string
	per     int64
	keys    *crypt.Keys // nil: a plaintext archive
	files   []*chunkFile
	cur     *chunkFile
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.cur == nil {
			if err := w.start(); err != nil {
				return 0, err
			}
		}
		take := len(p)
		if left := w.per - w.cur.chunk.RawBytes; int64(len(p)) >= left {
			// The chunk is full at the first line end from there.
			if i := bytes.IndexByte(p[max(left-1, 0):], '\n'); i >= 0 {
				take = int(max(left-1, 0)) + i + 1
			}
		}
		if err := w.write(p[:take]); err != nil {
			return 0, err
		}
		p = p[take:]
		if w.cur.chunk.RawBytes >= w.per && w.cur.endsLine {
			if err := w.cur.finish(); err != nil {
				return 0, err
			}
			w.cur = nil
		}
	}
	return n, nil
}

// write writes to the current chunk, counting its rows.
func (w *chunkWriter) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := w.cur.Write(p); err != nil {
		return err
	}
	w.cur.chunk.Rows += int64(bytes.Count(p, []byte{'\n'}))
	w.cur.endsLine = p[len(p)-1] == '\n'
	return nil
}

// start begins a new chunk.
func (w *chunkWriter) start() error {
	f, err := createChunk(w.tempDir, 0, w.keys)
	if f != nil {
		w.files = append(w.files, f) // removed by remove, whatever happens
	}
	if err != nil {
		return err
	}
	w.cur = f
	return nil
}

// close finishes the last chunk; a table without rows still gets one,
// empty.
func (w *chunkWriter) close() error {
	if w.cur == nil && len(w.files) == 0 {
		if err := w.start(); err != nil {
			return err
		}
	}
	if w.cur == nil {
		return nil
	}
	err := w.cur.finish()
	w.cur = nil
	return err
}

// remove closes and removes the temp files (gone already once stored).
func (w *chunkWriter) remove() {
	for _, f := range w.files {
		f.tmp.Close()
		os.Remove(f.tmp.Name())
	}
}
