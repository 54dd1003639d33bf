package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"lbt/catalog"
	"lbt/schema"
)

// Field is one column of a row of a State, in PostgreSQL's text form.
type Field struct {
	Text string
	Null bool
}

// State describes a table at a moment as Scan computed it.
type State struct {
	Table      string          // qualified SQL name, as named at the target
	TableID    int64           // the catalog's id of the table
	Columns    []schema.Column // the columns at the target, in order
	Key        []int           // positions of the key columns; nil when rows are a multiset
	TargetLSN  uint64          // the transactions committed at or before it are applied
	TargetTime time.Time
	Target     string // the target as requested, for messages
	Rows       int64
	Warnings   []string
}

// Scan computes the rows of o.Table at the target o names (Until, LSN or
// Xid; the latest archived state without any), exactly as Run restores
// them, and calls fn with each row, in no particular order. fn may keep
// the slice. Nothing is written anywhere; the other fields of o are
// ignored. It is what repairs compare two moments of a table with.
func Scan(ctx context.Context, cat *catalog.Catalog, o Options, fn func(row []Field) error) (State, error) {
	return ScanKeys(ctx, cat, o, nil, fn)
}

// ScanKeys is Scan for the rows whose key want accepts: want gets the
// values of the key columns (State.Key, in that order), and the other
// columns of a row it refuses are never decoded. A nil want, or a table
// without a key, passes every row.
func ScanKeys(ctx context.Context, cat *catalog.Catalog, o Options, want func(key []Field) bool, fn func(row []Field) error) (State, error) {
	if o.Table == "" {
		return State{}, errors.New("no table given")
	}
	o.SQL, o.DryRun = nil, true // only for validate: nothing is loaded
	if err := o.validate(); err != nil {
		return State{}, err
	}
	pl, warnings, err := makePlan(ctx, cat, &o)
	if err != nil {
		return State{}, err
	}
	st := State{
		Table: pl.source.QualifiedName(), TableID: pl.tableID, Columns: pl.shapes.target.Columns, Key: pl.keyCols,
		TargetLSN: pl.upto, TargetTime: pl.at, Target: pl.target, Warnings: warnings,
	}
	td, err := newTableDef(ddlInput{
		shapes: pl.shapes, def: pl.bb.Definition, seqs: pl.bb.Sequences,
		schemaName: pl.source.Schema, name: pl.source.Name, keepNames: true,
	})
	if err != nil {
		return st, err
	}
	prog := startProgress(nil, st.Table, 0)
	red, err := readDeltas(ctx, cat, pl, nil, prog, o.Memory, o.TempDir)
	if err != nil {
		return st, err
	}
	defer red.close()
	d := &dataSource{cat: cat, pl: pl, red: red, td: td, prog: prog}
	lw := &lineWriter{width: len(st.Columns), fn: fn}
	if want != nil && st.Key != nil {
		lw.keyIdx, lw.want, lw.key = st.Key, want, make([]Field, len(st.Key))
	}
	if _, err := d.write(ctx, lw); err != nil {
		return st, err
	}
	if err := lw.finish(); err != nil {
		return st, err
	}
	st.Rows = lw.rows
	return st, nil
}

// lineWriter splits the COPY text a dataSource writes into rows.
type lineWriter struct {
	width  int
	fn     func([]Field) error
	keyIdx []int              // with want: the key columns
	want   func([]Field) bool // nil: every row
	key    []Field
	lines  lineSplitter
	fields [][]byte
	buf    []byte
	rows   int64
	err    error
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if err := w.lines.write(p, w.row); err != nil {
		w.err = err
		return 0, err
	}
	return len(p), nil
}

// lineSplitter splits a stream of COPY text into lines, keeping the start
// of a line until a later write ends it.
type lineSplitter struct {
	partial []byte
}

// write calls row for each line that p ends.
func (l *lineSplitter) write(p []byte, row func(line []byte) error) error {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p...)
			return nil
		}
		line := p[:i]
		if len(l.partial) > 0 {
			l.partial = append(l.partial, line...)
			line = l.partial
		}
		if err := row(line); err != nil {
			return err
		}
		l.partial = l.partial[:0]
		p = p[i+1:]
	}
	return nil
}

func (w *lineWriter) row(line []byte) error {
	w.fields = splitFields(w.fields, line)
	if len(w.fields) != w.width {
		return fmt.Errorf("restore: row of %d columns, want %d", len(w.fields), w.width)
	}
	w.rows++
	if w.want != nil {
		for i, j := range w.keyIdx {
			var err error
			if w.key[i], err = w.field(w.fields[j]); err != nil {
				return err
			}
		}
		if !w.want(w.key) {
			return nil
		}
	}
	row := make([]Field, w.width)
	for i, f := range w.fields {
		var err error
		if row[i], err = w.field(f); err != nil {
			return err
		}
	}
	return w.fn(row)
}

// field decodes one escaped field.
func (w *lineWriter) field(f []byte) (Field, error) {
	if isNullField(f) {
		return Field{Null: true}, nil
	}
	var err error
	if w.buf, err = unescapeField(w.buf[:0], f); err != nil {
		return Field{}, err
	}
	return Field{Text: string(w.buf)}, nil
}

func (w *lineWriter) finish() error {
	if len(w.lines.partial) > 0 {
		return errors.New("restore: last row has no end")
	}
	return nil
}

// Shape resolves what Scan would compute, the table's name, columns and key
// at the target, without reading any row.
func Shape(ctx context.Context, cat *catalog.Catalog, o Options) (State, error) {
	if o.Table == "" {
		return State{}, errors.New("no table given")
	}
	o.SQL, o.DryRun = nil, true
	if err := o.validate(); err != nil {
		return State{}, err
	}
	pl, warnings, err := makePlan(ctx, cat, &o)
	if err != nil {
		return State{}, err
	}
	return State{
		Table: pl.source.QualifiedName(), TableID: pl.tableID, Columns: pl.shapes.target.Columns, Key: pl.keyCols,
		TargetLSN: pl.upto, TargetTime: pl.at, Target: pl.target, Warnings: warnings,
	}, nil
}
