package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/schema"
)

// loadResult is what a destination reports.
type loadResult struct {
	rows     int64
	checksum string
	warnings []string

	load, keys, checksumTime time.Duration
}

// sessionSettings make the server read the values as the source wrote
// them, whatever the target database's defaults are.
var sessionSettings = []string{
	"SET LOCAL DateStyle = ISO",
	"SET LOCAL IntervalStyle = postgres",
	"SET LOCAL client_min_messages = warning",
	// The primary key and indexes are built after the COPY: with room to
	// sort in memory, that is one pass over the table.
	"SET LOCAL maintenance_work_mem = '256MB'",
}

// outputSettings make the server read and write values as the source
// wrote them into the archive (an interval's text in IntervalStyle
// sql_standard means another value under postgres), and so the checksum
// query see the same text: the settings the basebackup recorded (none for
// one taken before lbt recorded them: then ISO and postgres, as before, and
// the target's own for the rest).
func outputSettings(src *schema.Source) []string {
	if src == nil {
		return nil
	}
	var out []string
	for _, s := range [][2]string{{"DateStyle", src.DateStyle}, {"IntervalStyle", src.IntervalStyle}, {"TimeZone", src.TimeZone},
		{"extra_float_digits", src.ExtraFloatDigits}, {"bytea_output", src.ByteaOutput}} {
		if s[1] != "" {
			out = append(out, "SET LOCAL "+s[0]+" = "+schema.QuoteLiteral(s[1]))
		}
	}
	return out
}

// loadDatabase creates and fills the table in one transaction of the
// target database: nothing is left behind when it fails. With o.Jobs > 1
// the rows go in on several connections (loadParallel), unless a subset
// is restored (--where, --columns: one connection, see Run).
func loadDatabase(ctx context.Context, o *Options, td *tableDef, d rowSource, expectRows int64) (loadResult, error) {
	if o.Jobs > 1 && !td.subset() {
		return loadParallel(ctx, o, td, d, expectRows)
	}
	var out loadResult
	start := time.Now()
	conn, err := connectTarget(ctx, o)
	if err != nil {
		return out, err
	}
	defer closeTarget(conn)
	tx, err := beginSession(ctx, conn, td)
	if err != nil {
		return out, err
	}
	defer tx.Rollback(context.Background())
	if err := replaceTarget(ctx, tx, o, td, true); err != nil {
		return out, err
	}
	if err := prepareTypes(ctx, tx, td); err != nil {
		return out, err
	}
	for _, s := range td.createStatements() {
		if err := execTx(ctx, tx, s); err != nil {
			return out, err
		}
	}

	// The table was created in this transaction: FREEZE writes the rows
	// as frozen, sparing the server a later pass over them.
	before, copyStmt, after := td.subsetCopy(" WITH (FREEZE)")
	for _, s := range before {
		if err := execTx(ctx, tx, s); err != nil {
			return out, err
		}
	}
	if td.where != "" {
		// One statement through the extended protocol: a predicate that
		// does not parse, names no column of the table, or smuggles in a
		// second statement is refused here, before any row is sent.
		if _, err := tx.Exec(ctx, "SELECT 1 FROM "+td.qualified()+" WHERE ("+td.where+") LIMIT 0"); err != nil {
			return out, fmt.Errorf("--where %q: %w", td.where, err)
		}
	}
	st, copied, err := copyIn(ctx, conn, copyStmt, d)
	if err != nil {
		return out, td.explainCopyError(err)
	}
	switch {
	case td.where != "" && copied > st.rows, td.where == "" && copied != st.rows:
		return out, fmt.Errorf("target database: COPY took %d rows, %d were sent", copied, st.rows)
	case td.where != "" && o.Verify && st.rows != expectRows:
		// The archive's counts are of the whole table: what they check
		// is the rows sent, before the predicate.
		return out, &VerificationError{Msg: fmt.Sprintf("%d rows were read from the archive for %s; the basebackup and the catalog's counts of inserts and deletes say %d (nothing was committed)", st.rows, td.qualified(), expectRows)}
	}
	for _, s := range after {
		if err := execTx(ctx, tx, s); err != nil {
			return out, err
		}
	}
	out.rows = copied
	out.load = time.Since(start)
	if err := finishTable(ctx, tx, o, td, st, expectRows, &out); err != nil {
		return out, err
	}
	if err := tx.Commit(ctx); err != nil {
		return out, fmt.Errorf("target database: commit: %w", err)
	}
	return out, nil
}

// connectTarget opens a connection to the target database.
func connectTarget(ctx context.Context, o *Options) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("target connection: %w", err)
	}
	cc.Config = *o.TargetConn.Copy()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to target database: %w", err)
	}
	return conn, nil
}

func closeTarget(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn.Close(ctx)
}

// execTx runs one statement of the restore, naming it when it fails.
func execTx(ctx context.Context, tx pgx.Tx, sql string) error {
	if _, err := tx.Exec(ctx, sql); err != nil {
		return fmt.Errorf("target database: %s: %w", firstLine(sql), err)
	}
	return nil
}

// beginSession begins a transaction on conn with the settings the values
// are read with.
func beginSession(ctx context.Context, conn *pgx.Conn, td *tableDef) (pgx.Tx, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("target database: %w", err)
	}
	for _, s := range slices.Concat(sessionSettings, outputSettings(td.source)) {
		if err := execTx(ctx, tx, s); err != nil {
			tx.Rollback(context.Background())
			return nil, err
		}
	}
	return tx, nil
}

// replaceTarget refuses an existing target table, or with o.Replace drops
// it when drop is set.
func replaceTarget(ctx context.Context, tx pgx.Tx, o *Options, td *tableDef, drop bool) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, td.qualified()).Scan(&exists); err != nil {
		return fmt.Errorf("target database: %w", err)
	}
	switch {
	case !exists:
		return nil
	case !o.Replace:
		return fmt.Errorf("table %s already exists in the target database: name another with --target-table, or give --replace to drop it", td.qualified())
	case drop:
		return execTx(ctx, tx, "DROP TABLE "+td.qualified())
	}
	return nil
}

// prepareTypes creates the target schema when missing and the types the
// table needs, and gives serial columns' sequences names that are free (the
// original's may be in use beside it).
func prepareTypes(ctx context.Context, tx pgx.Tx, td *tableDef) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, td.schema).Scan(&exists); err != nil {
		return fmt.Errorf("target database: %w", err)
	}
	if !exists {
		if err := execTx(ctx, tx, "CREATE SCHEMA "+schema.QuoteIdent(td.schema)); err != nil {
			return err
		}
	}
	for _, s := range td.typesBefore {
		if err := execTx(ctx, tx, s); err != nil {
			return err
		}
	}
	for i, s := range td.sequences {
		if s.identity {
			continue
		}
		base := s.rel
		for n := 1; ; n++ {
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, td.sequences[i].qualified()).Scan(&exists); err != nil {
				return fmt.Errorf("target database: %w", err)
			}
			if !exists {
				break
			}
			td.renameSequence(i, withSuffix(base, fmt.Sprintf("_%d", n)))
		}
	}
	return nil
}

// finishTable does what follows the rows in the restore's transaction: the
// NOT VALID checks of domains it created, the primary key, the other
// constraints and indexes (each left out with a warning when the rows do
// not satisfy it), the columns' final names, the sequences, and the
// checksum (verified with o.Verify).
func finishTable(ctx context.Context, tx pgx.Tx, o *Options, td *tableDef, st *dataStats, expectRows int64, out *loadResult) error {
	exec := func(sql string) error {
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("target database: %s: %w", firstLine(sql), err)
		}
		return nil
	}
	for _, s := range td.typesAfter {
		if err := exec(s); err != nil {
			return err
		}
	}
	start := time.Now()

	if keys := td.keyStatement(); keys != "" {
		if err := exec(keys); err != nil {
			return err
		}
	}
	// A constraint or index the restored rows do not satisfy (the source
	// changed it after the basebackup) is left out rather than failing.
	for _, s := range td.extraStatements() {
		if err := exec("SAVEPOINT lbt_extra"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			out.warnings = append(out.warnings, fmt.Sprintf("left out: %s: %v", firstLine(s), err))
			if err := exec("ROLLBACK TO SAVEPOINT lbt_extra"); err != nil {
				return err
			}
			continue
		}
		if err := exec("RELEASE SAVEPOINT lbt_extra"); err != nil {
			return err
		}
	}
	for _, s := range td.renameStatements() {
		if err := exec(s); err != nil {
			return err
		}
	}
	for _, s := range td.setvalStatements(st) {
		if err := exec(s); err != nil {
			return err
		}
	}
	if drop := td.dropStatement(); drop != "" {
		if err := exec(drop); err != nil {
			return err
		}
	}
	out.keys = time.Since(start)
	start = time.Now()
	if ok, why := td.streamedChecksum(); ok {
		out.checksum = formatChecksum(st.sum)
		if o.Verify {
			if err := verifyTable(ctx, tx, td, st, expectRows); err != nil {
				return err
			}
		}
	} else {
		// The rows sent do not give the table's checksum: the server
		// computes it, in one pass.
		n, sum, err := tableChecksum(ctx, tx, td)
		if err != nil {
			return err
		}
		out.checksum = sum
		if !td.subset() {
			out.warnings = append(out.warnings, "checksum computed by the target server from the restored table: "+why)
		}
		if o.Verify && td.where == "" && n != expectRows {
			return rowCountError(td, n, expectRows)
		}
	}
	out.checksumTime = time.Since(start)
	return nil
}

// verifyTable checks the restored table, in the restore's transaction, with
// one pass over it: its row count against the catalog's, and the checksum
// the server computes from the table against the one computed from the
// rows sent.
func verifyTable(ctx context.Context, tx pgx.Tx, td *tableDef, st *dataStats, expectRows int64) error {
	n, sum, err := tableChecksum(ctx, tx, td)
	if err != nil {
		return err
	}
	if n != expectRows {
		return rowCountError(td, n, expectRows)
	}
	if want := formatChecksum(st.sum); sum != want {
		return &VerificationError{Msg: fmt.Sprintf("%s has checksum %s on the target, the rows sent %s: the target server writes some values differently from the archive's text"+
			" (settings such as lc_monetary differ); restore without --verify and compare the rows with the source (nothing was committed)", td.qualified(), sum, want)}
	}
	return nil
}

func rowCountError(td *tableDef, n, expectRows int64) error {
	return &VerificationError{Msg: fmt.Sprintf("%s has %d rows; the basebackup and the catalog's counts of inserts and deletes say %d (nothing was committed)", td.qualified(), n, expectRows)}
}

// tableChecksum runs ChecksumSQL on the restored table (the session has
// the source's output settings).
func tableChecksum(ctx context.Context, tx pgx.Tx, td *tableDef) (int64, string, error) {
	var n int64
	var sum string
	if err := tx.QueryRow(ctx, ChecksumSQL(td.qualified(), td.checksumColumns())).Scan(&n, &sum); err != nil {
		return 0, "", fmt.Errorf("target database: checksum: %w", err)
	}
	return n, sum, nil
}

// explainCopyError turns the COPY's refusal of a value by a domain check
// that the source added NOT VALID (so that the source keeps older values
// that violate it) into what to do about it: the target's domain has that
// check, and PostgreSQL applies every check of a domain to every new value.
func (t *tableDef) explainCopyError(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23514" || pe.DataTypeName == "" {
		return err
	}
	dom, ok := notValidCheck(t.types, pe.SchemaName, pe.DataTypeName, pe.ConstraintName)
	if !ok {
		return err
	}
	return fmt.Errorf("cannot load %s: values of domain %s violate its check %s, which the source added NOT VALID after they were written, and the target database's domain has it too:"+
		" restore into a database without that domain (it is created there, with the check added after the data), for example with --sql into an empty database,"+
		" or drop the check in the target and add it back NOT VALID afterwards", t.qualified(), dom.QualifiedName(), schema.QuoteIdent(pe.ConstraintName))
}

// copyIn runs the COPY while the data source writes into it.
func copyIn(ctx context.Context, conn *pgx.Conn, sql string, d rowSource) (*dataStats, int64, error) {
	pr, pw := io.Pipe()
	type produced struct {
		st  *dataStats
		err error
	}
	done := make(chan produced, 1)
	go func() {
		st, err := d.write(ctx, pw)
		pw.CloseWithError(err)
		done <- produced{st, err}
	}()
	tag, err := conn.PgConn().CopyFrom(ctx, pr, sql)
	pr.Close() // unblocks the writer if the server stopped reading
	p := <-done
	if p.err != nil && !errors.Is(p.err, io.ErrClosedPipe) {
		return nil, 0, p.err
	}
	if err != nil {
		return nil, 0, fmt.Errorf("target database: COPY: %w", err)
	}
	return p.st, tag.RowsAffected(), nil
}

// renameSequence gives a restored serial column's sequence another name in
// its schema.
func (t *tableDef) renameSequence(i int, rel string) {
	s := &t.sequences[i]
	s.rel = rel
	t.columns[s.col].dflt = "nextval(" + schema.QuoteLiteral(s.qualified()) + "::regclass)"
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i] + " ..."
		}
	}
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
