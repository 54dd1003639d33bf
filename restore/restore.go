// Package restore rebuilds one table as it was at a chosen moment, from its
// newest basebackup at or before that moment and the changes archived after
// it, into a PostgreSQL database or as a plain SQL script.
//
// Changes are not replayed one statement at a time: they are reduced, in
// commit order, to their net effect on each row (its last image, or its
// deletion), and the basebackup's rows stream past that result into one
// COPY: rows the changes touched are left out, and the surviving images
// are added after them. docs/RESTORE.md describes the semantics and the
// limits.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/catalog"
	"lbt/schema"
)

// Options configures a restore. The target moment is Until, LSN or Xid; with
// none of them the latest archived state is restored.
type Options struct {
	Table string // SQL name of the table as it was named at the target

	Until time.Time // restore the state after the last transaction committed at or before it
	LSN   uint64    // restore the state after the transactions committed at or before it
	Xid   uint32    // restore the state right after this transaction

	TargetConn  *pgconn.Config // database to restore into (ignored with SQL)
	TargetTable string         // SQL name; default <table>_restored_<YYYYMMDDHHMMSS> (UTC), or the table's own name with SQL
	Replace     bool           // drop an existing target table first

	SQL io.Writer // write a SQL script here instead of restoring into a database

	// Where restores only the rows this SQL predicate holds for, evaluated
	// by the target server as they load; Columns only these columns (by
	// their names at the target). subset.go says how.
	Where   string
	Columns []string

	Verify   bool      // check the row count and the checksum on the target; a mismatch is a *VerificationError
	Progress io.Writer // progress display (a terminal); nil for none
	DryRun   bool      // resolve the plan and stop

	// Memory is about how many bytes the reduced changes may take in
	// memory; past it they spill to files in TempDir. 0 is no limit.
	Memory  int64
	TempDir string

	// Jobs is how many connections load the rows at once (1 or less: one,
	// in the transaction that creates the table). With more, the table is
	// loaded in a staging schema and moved into place by a final
	// transaction (see parallel.go); the table appears whole or not at all
	// either way.
	Jobs int

	Version string // lbt's version, for the script header
	Logger  hclog.Logger
}

// NewOptions returns the defaults: the latest state.
func NewOptions() Options {
	return Options{Logger: hclog.NewNullLogger(), Version: "dev"}
}

// Result describes a restore.
type Result struct {
	Table       string    // the source table, qualified, as named at the target
	TargetTable string    // qualified
	Target      string    // the target as requested
	TargetLSN   uint64    // transactions committed at or before this LSN are applied
	TargetTime  time.Time // the target moment

	BasebackupID  int64
	BasebackupLSN uint64 // changes from this LSN on were applied
	BasebackupAt  time.Time
	BaseRows      int64

	Partitions   int    // for a partitioned table: the partitions restored into it
	Transactions int64  // transactions of the table applied
	Changes      int64  // changes applied
	Rows         int64  // rows restored
	RowsSent     bool   // Rows counts the rows written, before the WHERE of a script's COPY keeps some
	Checksum     string // of the rows restored, computed as they were sent: see ChecksumSQL
	ChecksumSQL  string // the query that computes Rows and Checksum from the restored table
	Verified     bool

	Bytes    int64 // basebackup and deltas read, uncompressed
	Spills   int   // times the reduced changes outgrew Options.Memory and were merged into a file
	Duration time.Duration
	Timings  Timings
	Warnings []string
}

// Timings break a restore's duration down.
type Timings struct {
	Plan     time.Duration // catalog lookups
	Deltas   time.Duration // reading and reducing the changes
	Load     time.Duration // creating the table and streaming the rows into it
	Keys     time.Duration // NOT NULL, primary key, constraints, indexes, sequences
	Checksum time.Duration // with Verify: counting and checksumming the restored table on the target
}

// VerificationError reports a restore whose result differs from what the
// catalog says it must be. Nothing is committed to the target.
type VerificationError struct {
	Msg string
}

func (e *VerificationError) Error() string { return "verification failed: " + e.Msg }

// VerificationFailed tells the command line to exit with status 3.
func (e *VerificationError) VerificationFailed() bool { return true }

// Run restores the table.
func Run(ctx context.Context, cat *catalog.Catalog, opts Options) (Result, error) {
	start := time.Now()
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if err := opts.validate(); err != nil {
		return Result{}, err
	}
	pt, err := resolvePartitioned(ctx, cat, &opts)
	if err != nil {
		return Result{}, err
	}
	if pt != nil {
		if opts, err = partitionedOptions(pt, opts); err != nil {
			return Result{}, err
		}
		if pt.node.OID != pt.tree.Root || !pt.tree.ViaRoot {
			if opts.Where != "" || len(opts.Columns) > 0 {
				return Result{}, fmt.Errorf("%s is a partitioned table, restored partition by partition: --where and --columns restore one table; give them with a partition, or restore the whole tree without them", opts.Table)
			}
			return runPartitioned(ctx, cat, opts, pt, start)
		}
	}
	pl, warnings, files, err := planTableAndOpen(ctx, cat, &opts)
	if err != nil {
		return Result{}, err
	}
	defer files.close()
	if pt != nil {
		warnings = append(warnings, pt.warnings...)
		warnings = append(warnings, viaRootWarning)
	}
	planned := time.Now()
	res := Result{
		Table: pl.source.QualifiedName(), Target: pl.target, TargetLSN: pl.upto, TargetTime: pl.at,
		BasebackupID: pl.bb.ID, BasebackupLSN: pl.bb.LSN, BasebackupAt: pl.bb.StartedAt, BaseRows: pl.bb.Rows,
		Transactions: pl.txs, Changes: pl.changes, Warnings: warnings,
	}
	tschema, tname, err := targetName(&opts, pl.source, pl.at)
	if err != nil {
		return res, err
	}
	td, err := newTableDef(ddlInput{
		shapes: pl.shapes, def: pl.bb.Definition, seqs: pl.bb.Sequences,
		schemaName: tschema, name: tname, keepNames: tschema == pl.source.Schema && tname == pl.source.Name,
	})
	if err != nil {
		return res, err
	}
	if err := td.setSubset(pl.source.QualifiedName(), opts.Where, opts.Columns); err != nil {
		return res, err
	}
	res.TargetTable = td.qualified()
	res.Warnings = append(res.Warnings, td.warnings...)
	if opts.Jobs > 1 && td.subset() && opts.SQL == nil {
		// The subset's column renames run while its one COPY does.
		res.Warnings = append(res.Warnings, "--jobs is not used with --where or --columns: one connection loads the rows")
	}
	if opts.DryRun {
		res.Duration = time.Since(start)
		return res, nil
	}

	prog := startProgress(opts.Progress, res.Table, pl.bb.RawBytes+pl.deltaBytes)
	defer prog.finish()
	red, err := readDeltas(ctx, cat, pl, files.src, prog, opts.Memory, opts.TempDir)
	if err != nil {
		return res, err
	}
	defer red.close()
	res.Timings.Plan, res.Timings.Deltas = planned.Sub(start), time.Since(planned)
	expectRows, err := checkCounts(pl, red, opts.Verify)
	if err != nil {
		return res, err
	}
	nulls, err := red.nullColumns()
	if err != nil {
		return res, err
	}
	notNull := td.settleNotNull(nulls)
	td.warnings = append(td.warnings, notNull...)
	res.Warnings = append(res.Warnings, notNull...)
	d := &dataSource{cat: cat, pl: pl, red: red, td: td, prog: prog, bases: files.bases}
	if err := load(ctx, cat, &opts, pl, td, d, expectRows, prog, &res); err != nil {
		return res, err
	}
	res.RowsSent = opts.SQL != nil && td.where != ""
	res.ChecksumSQL = ChecksumSQL(td.qualified(), td.checksumColumns())
	res.Spills = red.spills
	return finishResult(&opts, res, expectRows, start)
}

// load writes the script (header heads it) or loads the target database
// with d's rows, and records in res what it did.
func load(ctx context.Context, cat *catalog.Catalog, opts *Options, header *plan, td *tableDef, d rowSource, expectRows int64, prog *progress, res *Result) error {
	var out loadResult
	var err error
	if opts.SQL != nil {
		out, err = writeScript(ctx, cat, opts, header, td, d)
	} else {
		out, err = loadDatabase(ctx, opts, td, d, expectRows)
	}
	prog.finish()
	res.Warnings = append(res.Warnings, out.warnings...)
	if err != nil {
		return err
	}
	res.Rows, res.Checksum, res.Verified = out.rows, out.checksum, opts.Verify
	res.Timings.Load, res.Timings.Keys, res.Timings.Checksum = out.load, out.keys, out.checksumTime
	res.Bytes = prog.bytesDone()
	return nil
}

// finishResult checks the rows of a script against the catalog's count
// (a loaded table was checked in its transaction) and logs res's warnings.
func finishResult(opts *Options, res Result, expectRows int64, start time.Time) (Result, error) {
	res.Duration = time.Since(start)
	if opts.Verify && opts.SQL != nil && res.Rows != expectRows {
		return res, &VerificationError{Msg: fmt.Sprintf("the script holds %d rows; the catalog says %d", res.Rows, expectRows)}
	}
	for _, w := range res.Warnings {
		opts.Logger.Warn(w)
	}
	return res, nil
}

func (o *Options) validate() error {
	if o.Table == "" {
		return errors.New("no table given")
	}
	n := 0
	if !o.Until.IsZero() {
		n++
	}
	if o.LSN != 0 {
		n++
	}
	if o.Xid != 0 {
		n++
	}
	if n > 1 {
		return errors.New("give at most one of the target time, LSN and transaction")
	}
	if o.SQL == nil && o.TargetConn == nil && !o.DryRun {
		return errors.New("no target database and no SQL output")
	}
	return nil
}

// checkCounts compares the changes read with the catalog's counts (only
// with verify) and returns the number of rows the restore must produce.
func checkCounts(pl *plan, red *reducer, verify bool) (int64, error) {
	rows := pl.bb.Rows + pl.expected.Inserts - pl.expected.Deletes
	if pl.lastTrunc != 0 {
		rows = red.truncIns - red.truncDel + pl.afterTrunc
	}
	if !verify {
		return rows, nil
	}
	if red.total != pl.expected {
		return rows, &VerificationError{Msg: fmt.Sprintf("the deltas hold %+v, the catalog's transaction counts say %+v", red.total, pl.expected)}
	}
	if pl.lastTrunc != red.truncLSN {
		return rows, &VerificationError{Msg: fmt.Sprintf("the last TRUNCATE is at LSN %s in the deltas, at %s in the catalog", catalog.FormatLSN(red.truncLSN), catalog.FormatLSN(pl.lastTrunc))}
	}
	return rows, nil
}

// readDeltas reads the plan's blobs in commit order, from src or when nil
// from a source of its own, and reduces them.
func readDeltas(ctx context.Context, cat *catalog.Catalog, pl *plan, src *catalog.BlobSource, prog *progress, memory int64, tempDir string) (red *reducer, err error) {
	hint := int(min(pl.changes, 1<<24))
	if memory > 0 {
		hint = min(hint, int(memory/256))
	}
	red = newReducer(len(pl.shapes.target.Columns), pl.keyCols, pl.shapes.versions, hint)
	red.missing = pl.shapes.missing
	red.limitMemory(memory, tempDir)
	made := red // the error returns below return no reducer
	defer func() {
		if err != nil {
			made.close()
		}
	}()
	if len(pl.blobs) == 0 {
		return red, nil
	}
	if src == nil {
		src = catalog.NewBlobSource(ctx, cat.Store(), cat.Keys())
		defer src.Close()
	}
	// Decompress the next blobs while this one is reduced. The reducer
	// copies what it keeps, so buffers go back to be reused.
	type read struct {
		raw []byte
		err error
	}
	const ahead = 4
	ch := make(chan read, ahead)
	free := make(chan []byte, ahead+2)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(ch)
		for _, b := range pl.blobs {
			var buf []byte
			select {
			case buf = <-free:
			default:
			}
			raw, err := src.Read(b, buf)
			select {
			case ch <- read{raw, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for i := range pl.blobs {
		b := pl.blobs[i]
		r, ok := <-ch
		if !ok {
			return nil, ctx.Err()
		}
		if r.err != nil {
			return nil, r.err
		}
		for c, err := range catalog.Changes(b, r.raw, catalog.Filter{}) {
			if err != nil {
				return nil, err
			}
			if c.CommitLSN < pl.bb.LSN || c.CommitLSN > pl.upto {
				continue
			}
			if err := red.apply(c); err != nil {
				return nil, fmt.Errorf("%s: %w", pl.source.QualifiedName(), err)
			}
		}
		prog.add(int64(len(r.raw)), 0)
		select {
		case free <- r.raw:
		default:
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return red, nil
}

// targetName is the table a restore of source as of at creates: the one
// --target-table names, else beside the original with the moment in its
// name, else (a script) the source's own name.
func targetName(opts *Options, source schema.Table, at time.Time) (string, string, error) {
	switch {
	case opts.TargetTable != "":
		tschema, tname, err := schema.ParseName(opts.TargetTable)
		if err != nil {
			return "", "", fmt.Errorf("target table: %w", err)
		}
		return tschema, tname, nil
	case opts.SQL == nil:
		return source.Schema, defaultTargetName(source.Name, at), nil
	}
	return source.Schema, source.Name, nil
}
