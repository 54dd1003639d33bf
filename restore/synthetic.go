package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"lbt/catalog"
)

// ErrNotSynthesizable marks a table whose next basebackup cannot be built
// from the archive: it must be taken from the source.
var ErrNotSynthesizable = errors.New("cannot build a basebackup from the archive")

// Synthesized is a basebackup built from the archive: the rows written, in
// the columns of the basebackup it started from.
type Synthesized struct {
	TableID int64
	From    catalog.Basebackup // the basebackup it started from
	// LSN is its consistent point: one past the last transaction applied,
	// so that every transaction before it is in the rows and every one at
	// or after it in the deltas.
	LSN   uint64
	Rows  int64 // in all, those of Reused included
	Bytes int64 // the changes and the old basebackup read, uncompressed
	// Reused are the old basebackup's files that no change touched: their
	// rows were not written to w, and are the new basebackup's as they
	// are (format 5: its chunks may be older basebackups' files).
	Reused []catalog.Chunk
}

// Synthesize writes as COPY text, to outs, the rows of the table opts.Table
// at the latest archived state (opts' target is ignored): its newest usable
// basebackup with the changes after it reduced onto it, as a restore
// computes them, checked against the catalog's counts. It reads nothing
// but the archive. The basebackup's files are read on len(outs) jobs at
// once, each writing the rows it keeps of the files it reads to its own
// writer; the rows the changes left behind go to outs[0] after them. The
// rows have the basebackup's columns in its order; a table whose columns
// changed since (the basebackup's definition would no longer describe the
// rows), a partitioned table, one without a basebackup and one that did
// not change since its basebackup are refused with an error wrapping
// ErrNotSynthesizable.
func Synthesize(ctx context.Context, cat *catalog.Catalog, opts Options, outs []io.Writer) (Synthesized, error) {
	if len(outs) == 0 {
		return Synthesized{}, errors.New("synthesize: no writer")
	}
	opts.Until, opts.LSN, opts.Xid = time.Time{}, 0, 0
	opts.Where, opts.Columns = "", nil
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	pt, err := resolvePartitioned(ctx, cat, &opts)
	if err != nil {
		return Synthesized{}, err
	}
	if pt != nil {
		return Synthesized{}, fmt.Errorf("%w: %s is a partitioned table", ErrNotSynthesizable, opts.Table)
	}
	// The files are opened with the plan, as a restore's: a purge running
	// beside it (the scheduler's) cannot take them away.
	pl, _, files, err := planTableAndOpen(ctx, cat, &opts)
	if err != nil {
		return Synthesized{}, err
	}
	defer files.close()
	name := pl.source.QualifiedName()
	switch {
	case pl.bb.Path == "":
		return Synthesized{}, fmt.Errorf("%w: %s has no basebackup to start from", ErrNotSynthesizable, name)
	case pl.bb.LSN > pl.upto || pl.txs == 0:
		return Synthesized{}, fmt.Errorf("%w: %s did not change since its basebackup at %s", ErrNotSynthesizable, name, catalog.FormatLSN(pl.bb.LSN))
	case !sameShape(pl):
		return Synthesized{}, fmt.Errorf("%w: the columns of %s changed since its basebackup at %s: take one from the source", ErrNotSynthesizable, name, catalog.FormatLSN(pl.bb.LSN))
	}
	td, err := newTableDef(ddlInput{shapes: pl.shapes, def: pl.bb.Definition, seqs: pl.bb.Sequences,
		schemaName: pl.source.Schema, name: pl.source.Name, keepNames: true})
	if err != nil {
		return Synthesized{}, err
	}
	prog := startProgress(nil, name, 0)
	red, err := readDeltas(ctx, cat, pl, files.src, prog, opts.Memory, opts.TempDir)
	if err != nil {
		return Synthesized{}, err
	}
	defer red.close()
	expectRows, err := checkCounts(pl, red, true)
	if err != nil {
		return Synthesized{}, err
	}
	d := &dataSource{cat: cat, pl: pl, red: red, td: td, prog: prog, bases: files.bases}
	rows, err := d.rewrite(ctx, outs)
	if err != nil {
		return Synthesized{}, err
	}
	for _, c := range d.reused {
		rows += c.Rows
	}
	if rows != expectRows {
		return Synthesized{}, fmt.Errorf("synthesize %s: %w: %d rows written or reused, the basebackup and the catalog's counts say %d", name, catalog.ErrCorrupt, rows, expectRows)
	}
	return Synthesized{TableID: pl.tableID, From: pl.bb, LSN: pl.upto + 1, Rows: rows, Bytes: prog.bytesDone(), Reused: d.reused}, nil
}

// sameShape reports whether the table at the target has exactly the
// columns of the plan's basebackup, in its order and with its types.
func sameShape(pl *plan) bool {
	base := pl.bb.Definition.Table.Columns
	target := pl.shapes.target.Columns
	if len(base) != len(target) || len(pl.shapes.def) != len(target) {
		return false
	}
	for j, i := range pl.shapes.def {
		if i != j || base[j].Name != target[j].Name || base[j].TypeOID != target[j].TypeOID || base[j].TypeMod != target[j].TypeMod {
			return false
		}
	}
	return len(pl.shapes.retyped) == 0
}

// rewrite writes the rows of a synthetic basebackup to outs (see
// Synthesize) and returns how many it wrote; the basebackup's files that
// no change touches are not written but listed in d.reused, in the order
// of the basebackup's files.
func (d *dataSource) rewrite(ctx context.Context, outs []io.Writer) (int64, error) {
	rws := make([]*rowWriter, len(outs))
	for j, w := range outs {
		rws[j] = newRowWriter(w, d.td, d.prog)
		rws[j].noSum = true
	}
	if !d.red.truncated {
		if err := d.rewriteBase(ctx, rws); err != nil {
			return 0, err
		}
	}
	if err := d.writeChanged(ctx, rws[0]); err != nil {
		return 0, err
	}
	var rows int64
	for _, rw := range rws {
		if err := rw.flush(); err != nil {
			return 0, err
		}
		rows += rw.st.rows
	}
	return rows, nil
}

// rewriteBase is writeBase for a synthetic basebackup, on len(rws) jobs at
// once: each takes the basebackup's next file and reuses it when no change
// touches a row of it (read whole, its checksum and row count checked), or
// writes the rows it keeps of it to the job's rowWriter. The jobs share
// the merger (baseMerger.fork); whichever job reads a file, each of its
// rows is kept or dropped as with one job.
func (d *dataSource) rewriteBase(ctx context.Context, rws []*rowWriter) error {
	name := d.pl.source.QualifiedName()
	if !d.identity() {
		// Reused files must hold the rows as they are: sameShape refuses
		// such a table before.
		return fmt.Errorf("%w: the columns of %s are not the basebackup's", ErrNotSynthesizable, name)
	}
	merge, err := d.red.merger(d.pl.shapes.def)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	mergers := []*baseMerger{merge}
	for range rws[1:] {
		mergers = append(mergers, merge.fork())
	}
	files := d.pl.bb.Files()
	reused := make([]bool, len(files))
	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for j, rw := range rws {
		m := mergers[j]
		wg.Go(func() {
			for jctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= len(files) {
					return
				}
				var f io.ReadCloser
				if k < len(d.bases) {
					f = d.bases[k]
				}
				touched, err := d.touched(jctx, m, files[k], f)
				if err == nil && touched {
					err = d.copyFile(jctx, m, rw, files[k], nil) // read in part: opened again
				}
				if err != nil {
					cancel(err)
					return
				}
				reused[k] = !touched
			}
		})
	}
	wg.Wait()
	if err := context.Cause(jctx); err != nil {
		return err
	}
	for k, c := range files {
		if reused[k] {
			d.reused = append(d.reused, catalog.Chunk{Path: c.Path, Rows: c.Rows, Bytes: c.Bytes, RawBytes: c.RawBytes, CRC: c.CRC})
		}
	}
	if err := merge.finish(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// errTouched stops the reading of a basebackup file at its first row that
// a change touches.
var errTouched = errors.New("a change touches the file")

// touched reports whether a change touches any row of file c of the
// basebackup (read from f when it is open already). A file reported
// untouched was read whole, its checksum and row count checked: its rows
// are the result's as they are, byte for byte.
func (d *dataSource) touched(ctx context.Context, merge *baseMerger, c catalog.Chunk, f io.ReadCloser) (bool, error) {
	err := readBaseFile(ctx, d.cat.Store(), d.cat.Keys(), d.pl.bb, c, f, d.prog, func(_ []byte, fields [][]byte) error {
		t, err := merge.touches(fields)
		if err == nil && t {
			err = errTouched
		}
		return err
	})
	if errors.Is(err, errTouched) {
		return true, nil
	}
	return false, err
}
