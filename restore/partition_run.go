package restore

import (
	"context"
	"fmt"
	"io"
	"time"

	"lbt/catalog"
	"lbt/schema"
)

// rowSource produces the restored rows as COPY text.
type rowSource interface {
	write(ctx context.Context, w io.Writer) (*dataStats, error)
}

// leafRestore is one leaf of a partitioned table's restore.
type leafRestore struct {
	node catalog.PartitionNode
	pl   *plan
	td   *tableDef
	red  *reducer
	rows int64 // the rows it must produce
	perm []int // for each column of the combined table, the leaf's column
}

// runPartitioned restores a partitioned table into one new plain table:
// every leaf that belonged to it at the target, each restored exactly as
// it would be alone, at the same target.
//
// A plain table rather than a partitioned one: it is what "the table as it
// was at 14:03" asks for, it needs no bounds, which later DDL may make
// impossible to recreate beside the original (bounds of the original's
// partitions overlap nothing in a new tree, but partition names would), and
// its rows can be compared with the source's with one query. The leaves'
// bounds are listed in the result's notes and the script's header.
func runPartitioned(ctx context.Context, cat *catalog.Catalog, opts Options, pt *partTarget, start time.Time) (Result, error) {
	parent := schema.Table{Schema: pt.node.Schema, Name: pt.node.Name}
	res := Result{Table: parent.QualifiedName(), Target: pt.target, TargetLSN: pt.upto, TargetTime: pt.at, Warnings: pt.warnings}
	leaves := leavesOf(pt.tree, pt.node.OID)
	if len(leaves) == 0 {
		return res, fmt.Errorf("%w %s: %s had no partitions then (lbt's look at %s), so the archive holds no rows and no columns of it",
			ErrNotRestorable, pt.target, res.Table, formatTime(pt.tree.ToAt))
	}
	refs, err := cat.Tables(ctx)
	if err != nil {
		return res, err
	}
	var parts []*leafRestore
	for _, n := range leaves {
		lr, warnings, err := planLeaf(ctx, cat, opts, refs, pt, n)
		if err != nil {
			return res, err
		}
		for _, w := range warnings {
			res.Warnings = append(res.Warnings, "partition "+nameOf(n)+": "+w)
		}
		parts = append(parts, lr)
	}

	first := parts[0]
	tschema, tname, err := targetName(&opts, parent, pt.at)
	if err != nil {
		return res, err
	}
	// The combined table has the definition of the first leaf's
	// basebackup, with the columns at the target.
	td, err := newTableDef(ddlInput{
		shapes: first.pl.shapes, def: first.pl.bb.Definition, seqs: first.pl.bb.Sequences,
		schemaName: tschema, name: tname, keepNames: tschema == parent.Schema && tname == parent.Name,
	})
	if err != nil {
		return res, err
	}
	res.TargetTable = td.qualified()
	res.Warnings = append(res.Warnings, td.warnings...)
	res.BasebackupID, res.BasebackupLSN, res.BasebackupAt = first.pl.bb.ID, first.pl.bb.LSN, first.pl.bb.StartedAt
	res.Partitions = len(parts)
	var total int64
	var notes []string // what each partition contributes: for --dry-run and the script's header
	for _, lr := range parts {
		if lr.perm, err = columnMap(first.pl.shapes.target, lr.pl.shapes.target); err != nil {
			return res, fmt.Errorf("%w %s: partitions %s and %s: %v", ErrNotRestorable, pt.target, nameOf(first.node), nameOf(lr.node), err)
		}
		notes = append(notes, fmt.Sprintf("partition %s %s: basebackup %d at LSN %s, %d rows; then %d transactions (%d changes)",
			nameOf(lr.node), lr.node.Bound, lr.pl.bb.ID, catalog.FormatLSN(lr.pl.bb.LSN), lr.pl.bb.Rows, lr.pl.txs, lr.pl.changes))
		res.BaseRows += lr.pl.bb.Rows
		res.Transactions += lr.pl.txs
		res.Changes += lr.pl.changes
		total += lr.pl.bb.RawBytes + lr.pl.deltaBytes
	}
	td.warnings = append(td.warnings, notes...)
	if opts.DryRun {
		res.Warnings = append(res.Warnings, notes...)
		res.Duration = time.Since(start)
		return res, nil
	}

	prog := startProgress(opts.Progress, res.Table, total)
	defer prog.finish()
	planned := time.Now()
	nulls := make([]bool, len(first.pl.shapes.target.Columns))
	var expectRows int64
	// Every partition's reduced changes are held until the rows are
	// written: the budget is shared between them.
	memory := opts.Memory
	if memory > 0 {
		memory = max(memory/int64(len(parts)), 1<<20)
	}
	for _, lr := range parts {
		if lr.red, err = readDeltas(ctx, cat, lr.pl, nil, prog, memory, opts.TempDir); err != nil {
			return res, fmt.Errorf("partition %s: %w", nameOf(lr.node), err)
		}
		defer lr.red.close()
		if lr.rows, err = checkCounts(lr.pl, lr.red, opts.Verify); err != nil {
			return res, fmt.Errorf("partition %s: %w", nameOf(lr.node), err)
		}
		expectRows += lr.rows
		leafNulls, err := lr.red.nullColumns()
		if err != nil {
			return res, err
		}
		for j, i := range lr.perm {
			nulls[j] = nulls[j] || leafNulls[i]
		}
	}
	res.Timings.Plan, res.Timings.Deltas = planned.Sub(start), time.Since(planned)
	notNull := td.settleNotNull(nulls)
	td.warnings = append(td.warnings, notNull...)
	res.Warnings = append(res.Warnings, notNull...)

	src := &treeSource{td: td}
	for _, lr := range parts {
		src.leaves = append(src.leaves, treeLeaf{perm: lr.perm,
			d: &dataSource{cat: cat, pl: lr.pl, red: lr.red, td: lr.td, prog: prog}})
	}
	// The script's header speaks of the partitioned table.
	header := *first.pl
	header.source, header.upto, header.at, header.target = parent, pt.upto, pt.at, pt.target
	header.txs, header.changes = res.Transactions, res.Changes
	if err := load(ctx, cat, &opts, &header, td, src, expectRows, prog, &res); err != nil {
		return res, err
	}
	return finishResult(&opts, res, expectRows, start)
}

// planLeaf plans one leaf's restore at the partitioned table's target.
func planLeaf(ctx context.Context, cat *catalog.Catalog, opts Options, refs []catalog.TableRef, pt *partTarget, n catalog.PartitionNode) (*leafRestore, []string, error) {
	id, versions, ok, err := leafTable(ctx, cat, refs, n.OID, pt.upto)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, fmt.Errorf("%w %s: partition %s of %s is not in the archive: lbt saw no change of it and took no basebackup of it (lbt basebackup --table %s takes one of every partition)",
			ErrNotRestorable, pt.target, nameOf(n), nameOf(pt.node), nameOf(pt.node))
	}
	lo := opts
	lo.Table = versionAt(versions, pt.upto).QualifiedName()
	lo.LSN, lo.Until, lo.Xid = pt.upto, time.Time{}, 0
	pl, warnings, err := makePlan(ctx, cat, &lo)
	if err != nil {
		return nil, nil, fmt.Errorf("partition %s of %s: %w", nameOf(n), nameOf(pt.node), err)
	}
	if pl.tableID != id {
		return nil, nil, fmt.Errorf("partition %s of %s: the name %s found archived table %d, not %d: restore it with --lsn at another moment",
			nameOf(n), nameOf(pt.node), lo.Table, pl.tableID, id)
	}
	if err := checkPartitionHistory(ctx, cat, pl); err != nil {
		return nil, nil, fmt.Errorf("partition %s of %s: %w", nameOf(n), nameOf(pt.node), err)
	}
	td, err := newTableDef(ddlInput{shapes: pl.shapes, def: pl.bb.Definition, seqs: pl.bb.Sequences,
		schemaName: pl.source.Schema, name: pl.source.Name})
	if err != nil {
		return nil, nil, err
	}
	return &leafRestore{node: n, pl: pl, td: td}, warnings, nil
}

// columnMap places the columns of a leaf (b) in the order of the combined
// table (a), by name: the partitions of one table have the same columns,
// though not always in the same order.
func columnMap(a, b schema.Table) ([]int, error) {
	if len(a.Columns) != len(b.Columns) {
		return nil, fmt.Errorf("they have %d and %d columns at the target", len(a.Columns), len(b.Columns))
	}
	perm := make([]int, len(a.Columns))
	for j, c := range a.Columns {
		i := b.ColumnIndex(c.Name)
		if i < 0 {
			return nil, fmt.Errorf("column %s is not in both at the target", schema.QuoteIdent(c.Name))
		}
		if b.Columns[i].TypeOID != c.TypeOID || b.Columns[i].TypeMod != c.TypeMod {
			return nil, fmt.Errorf("column %s has types %s and %s at the target", schema.QuoteIdent(c.Name), c.TypeName, b.Columns[i].TypeName)
		}
		perm[j] = i
	}
	return perm, nil
}

// treeSource writes the rows of every leaf into the combined table.
type treeSource struct {
	td     *tableDef
	leaves []treeLeaf
}

type treeLeaf struct {
	d    *dataSource
	perm []int
}

func (s *treeSource) write(ctx context.Context, w io.Writer) (*dataStats, error) {
	// The leaves count the rows shown in the progress display.
	rw := newRowWriter(w, s.td, startProgress(nil, "", 0))
	for _, l := range s.leaves {
		m := &lineMapper{rw: rw, perm: l.perm}
		if _, err := l.d.write(ctx, m); err != nil {
			return nil, err
		}
		if len(m.lines.partial) > 0 {
			return nil, fmt.Errorf("restore: partition %s: last row has no end", l.d.pl.source.QualifiedName())
		}
	}
	if err := rw.flush(); err != nil {
		return nil, err
	}
	return rw.st, nil
}

// lineMapper takes a leaf's COPY text and writes each row with its fields
// in the combined table's order. COPY text escapes tabs and newlines inside
// values, so every tab separates fields and every newline ends a row.
type lineMapper struct {
	rw     *rowWriter
	perm   []int
	lines  lineSplitter
	fields [][]byte
}

func (m *lineMapper) Write(p []byte) (int, error) {
	if err := m.lines.write(p, m.row); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (m *lineMapper) row(line []byte) error {
	if len(m.perm) == 0 {
		// A table without columns: COPY writes an empty line per row.
		m.rw.counted()
		return m.rw.w.WriteByte('\n')
	}
	m.fields = splitFields(m.fields, line)
	if len(m.fields) != len(m.perm) {
		return fmt.Errorf("restore: a partition's row has %d columns, the table %d", len(m.fields), len(m.perm))
	}
	// Every column of a partitioned table is in each partition: perm has no
	// -1, and no missing value is needed.
	return m.rw.writeMapped(m.fields, m.perm, nil)
}
