package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// Synthesize writes as COPY text, to w, the rows of the table opts.Table at
// the latest archived state (opts' target is ignored): its newest usable
// basebackup with the changes after it reduced onto it, as a restore
// computes them, checked against the catalog's counts. It reads nothing
// but the archive. The rows have the basebackup's columns in its order; a
// table whose columns changed since (the basebackup's definition would
// no longer describe the rows), a partitioned table, one without a
// basebackup and one that did not change since its basebackup are refused
// with an error wrapping ErrNotSynthesizable.
func Synthesize(ctx context.Context, cat *catalog.Catalog, opts Options, w io.Writer) (Synthesized, error) {
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
	d := &dataSource{cat: cat, pl: pl, red: red, td: td, prog: prog, bases: files.bases, reuse: true}
	st, err := d.write(ctx, w)
	if err != nil {
		return Synthesized{}, err
	}
	rows := st.rows
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
