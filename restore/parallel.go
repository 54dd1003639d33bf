package restore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"lbt/schema"
)

// A restore with several jobs cannot load the table in the transaction that
// creates it: other connections do not see a table before its creation
// commits. So the table is created, and committed, in a staging schema of
// its own (lbt_restore_<random>) under its target name; the jobs load it
// there, each on its own connection and in its own transaction; and one
// final transaction moves it into the target schema (ALTER TABLE ... SET
// SCHEMA, which takes its owned sequences along), builds the keys,
// constraints and indexes, sets the sequences, checks it and commits. The
// table under its target name appears whole or not at all, as with one
// job; what others can see meanwhile is the staging schema, and on failure
// it is dropped with everything in it. A schema or types the restore
// created for the table stay (they are committed with the staging table).
//
// The rows are read once, by one producer, as with one job, and handed out
// in blocks of whole lines to whichever connection is ready, so that each
// row is written exactly once whatever the order of the basebackup's files
// and the reduced changes; what runs in parallel is the server's side of
// the COPY (parsing, heap and WAL writes), its most expensive part, and
// the checksum of the rows: each job hashes the blocks it takes, and the
// checksum, a sum, is the sum of the jobs' (md5 is half of the producer's
// work with 1 KB rows, which would otherwise run on one core). The
// rows are not written frozen (COPY FREEZE needs the table created in the
// loading transaction), and the indexes are built in the final
// transaction, with parallel workers where the server has them.

// stagingPrefix begins the name of a parallel restore's staging schema.
const stagingPrefix = "lbt_restore_"

// fanOutBlock is about how many bytes of COPY text one connection takes at
// a time.
const fanOutBlock = 1 << 20

// loadParallel is loadDatabase on o.Jobs connections.
func loadParallel(ctx context.Context, o *Options, td *tableDef, d rowSource, expectRows int64) (out loadResult, err error) {
	start := time.Now()
	conn, err := connectTarget(ctx, o)
	if err != nil {
		return out, err
	}
	defer closeTarget(conn)
	var version int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return out, fmt.Errorf("target database: %w", err)
	}
	staging, err := stagingName()
	if err != nil {
		return out, err
	}
	if err := createStaging(ctx, conn, o, td, staging); err != nil {
		return out, err
	}
	defer func() {
		if err != nil {
			if derr := dropStaging(conn, o, staging); derr != nil {
				err = fmt.Errorf("%w; and the staging schema %s could not be dropped (drop it: DROP SCHEMA %s CASCADE): %v",
					err, staging, schema.QuoteIdent(staging), derr)
			}
		}
	}()
	st, err := copyParallel(ctx, o, td, staging, d)
	if err != nil {
		return out, err
	}
	out.rows = st.rows
	out.load = time.Since(start)

	tx, err := beginSession(ctx, conn, td)
	if err != nil {
		return out, err
	}
	defer tx.Rollback(context.Background())
	if version >= 110000 {
		// Parallel index builds (PostgreSQL 11): the jobs' cores are free now.
		if err := execTx(ctx, tx, fmt.Sprintf("SET LOCAL max_parallel_maintenance_workers = %d", o.Jobs-1)); err != nil {
			return out, err
		}
	}
	if err := replaceTarget(ctx, tx, o, td, true); err != nil {
		return out, err
	}
	moved := &tableDef{schema: staging, name: td.name}
	if err := freeIdentityNames(ctx, tx, moved.qualified(), td.schema); err != nil {
		return out, err
	}
	if err := execTx(ctx, tx, "ALTER TABLE "+moved.qualified()+" SET SCHEMA "+schema.QuoteIdent(td.schema)); err != nil {
		return out, err
	}
	if err := execTx(ctx, tx, "DROP SCHEMA "+schema.QuoteIdent(staging)); err != nil {
		return out, err
	}
	if err := finishTable(ctx, tx, o, td, st, expectRows, &out); err != nil {
		return out, err
	}
	if err := tx.Commit(ctx); err != nil {
		return out, fmt.Errorf("target database: commit: %w", err)
	}
	return out, nil
}

// freeIdentityNames renames the identity sequences of the staging table
// whose names are taken in the target schema, as PostgreSQL would have
// named them there (a number appended), so that SET SCHEMA can move them.
func freeIdentityNames(ctx context.Context, tx pgx.Tx, table, nsp string) error {
	rows, err := tx.Query(ctx, `SELECT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
		WHERE d.classid = 'pg_class'::regclass AND d.refobjid = $1::regclass AND d.deptype = 'i' AND s.relkind = 'S'
		AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = s.relname AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $2))`, table, nsp)
	if err != nil {
		return fmt.Errorf("target database: identity sequences: %w", err)
	}
	taken, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("target database: identity sequences: %w", err)
	}
	staging := table[:strings.LastIndexByte(table, '.')]
	for _, name := range taken {
		for n := 1; ; n++ {
			free := withSuffix(name, fmt.Sprint(n))
			var exists bool
			err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL OR to_regclass($2) IS NOT NULL`,
				schema.QuoteIdent(nsp)+"."+schema.QuoteIdent(free), staging+"."+schema.QuoteIdent(free)).Scan(&exists)
			if err != nil {
				return fmt.Errorf("target database: %w", err)
			}
			if !exists {
				if err := execTx(ctx, tx, "ALTER SEQUENCE "+staging+"."+schema.QuoteIdent(name)+" RENAME TO "+schema.QuoteIdent(free)); err != nil {
					return err
				}
				break
			}
		}
	}
	return nil
}

// stagingName is a new staging schema's name.
func stagingName() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("staging schema name: %w", err)
	}
	return stagingPrefix + hex.EncodeToString(b[:]), nil
}

// createStaging creates, and commits, the target schema when missing, the
// types the table needs, and the table with its serial sequences in the
// staging schema.
func createStaging(ctx context.Context, conn *pgx.Conn, o *Options, td *tableDef, staging string) error {
	tx, err := beginSession(ctx, conn, td)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	// Refused now rather than after the load; dropped in the final
	// transaction, so that a failed restore leaves it.
	if err := replaceTarget(ctx, tx, o, td, false); err != nil {
		return err
	}
	if err := prepareTypes(ctx, tx, td); err != nil {
		return err
	}
	if err := execTx(ctx, tx, "CREATE SCHEMA "+schema.QuoteIdent(staging)); err != nil {
		return err
	}
	var stmts []string
	inStaging(td, staging, func() { stmts = td.createStatements() })
	for _, s := range stmts {
		if err := execTx(ctx, tx, s); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("target database: commit: %w", err)
	}
	return nil
}

// inStaging runs f with td's table and serial sequences named in the
// staging schema: they move to the target schema with the table. The
// sequences' names were made free there.
func inStaging(td *tableDef, staging string, f func()) {
	nsp := td.schema
	seqs := make([]string, len(td.sequences))
	td.schema = staging
	for i := range td.sequences {
		seqs[i] = td.sequences[i].nsp
		if !td.sequences[i].identity {
			td.renameSequenceSchema(i, staging)
		}
	}
	defer func() {
		td.schema = nsp
		for i := range td.sequences {
			if !td.sequences[i].identity {
				td.renameSequenceSchema(i, seqs[i])
			}
		}
	}()
	f()
}

// renameSequenceSchema places a serial column's sequence in schema nsp.
func (t *tableDef) renameSequenceSchema(i int, nsp string) {
	t.sequences[i].nsp = nsp
	t.renameSequence(i, t.sequences[i].rel)
}

// dropStaging drops what a failed parallel restore left in its staging
// schema.
func dropStaging(conn *pgx.Conn, o *Options, staging string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if conn.IsClosed() || conn.PgConn().IsBusy() {
		var err error
		if conn, err = connectTarget(ctx, o); err != nil {
			return err
		}
		defer closeTarget(conn)
	}
	_, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema.QuoteIdent(staging)+" CASCADE")
	return err
}

// copyParallel streams the rows into the staging table on o.Jobs
// connections, each in a transaction of its own, and returns what the rows
// said.
func copyParallel(ctx context.Context, o *Options, td *tableDef, staging string, d rowSource) (*dataStats, error) {
	var copySQL string
	inStaging(td, staging, func() { copySQL = td.copyStatement() })
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	blocks := make(chan []byte, o.Jobs)
	// Blocks the jobs have sent go back to the producer: a new 1 MiB
	// block for each would be cleared and collected again and again.
	free := make(chan []byte, o.Jobs+1)
	type loaded struct {
		rows int64
		sum  uint64
		err  error
	}
	done := make(chan loaded, o.Jobs)
	for range o.Jobs {
		go func() {
			n, sum, err := copyJob(ctx, o, td, copySQL, blocks, free)
			if err != nil {
				cancel(err)
			}
			done <- loaded{n, sum, err}
		}()
	}
	fan := &fanOut{ctx: ctx, out: blocks, free: free}
	st, err := d.write(ctx, fan)
	if err == nil {
		err = fan.close()
	} else {
		close(blocks)
	}
	if err != nil {
		cancel(err)
	}
	var copied int64
	var sum uint64
	var jobErr error
	for range o.Jobs {
		l := <-done
		copied += l.rows
		sum += l.sum
		if l.err != nil && (jobErr == nil || errors.Is(jobErr, context.Canceled)) {
			jobErr = l.err
		}
	}
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		return nil, err
	case jobErr != nil && !errors.Is(jobErr, context.Canceled):
		return nil, td.explainCopyError(jobErr)
	case err != nil:
		return nil, context.Cause(ctx)
	case jobErr != nil:
		return nil, jobErr
	case copied != st.rows:
		return nil, fmt.Errorf("target database: COPY took %d rows, %d were sent", copied, st.rows)
	}
	st.sum = sum
	return st, nil
}

// copyJob loads the blocks it takes from blocks on a connection of its
// own, and commits them; it gives each block back to free once sent. It
// returns the rows loaded and their checksum.
func copyJob(ctx context.Context, o *Options, td *tableDef, copySQL string, blocks <-chan []byte, free chan<- []byte) (int64, uint64, error) {
	conn, err := connectTarget(ctx, o)
	if err != nil {
		drain(blocks)
		return 0, 0, err
	}
	defer closeTarget(conn)
	tx, err := beginSession(ctx, conn, td)
	if err != nil {
		drain(blocks)
		return 0, 0, err
	}
	defer tx.Rollback(context.Background())
	r := &blockReader{ctx: ctx, in: blocks, free: free, columns: len(td.copyCols) > 0}
	tag, err := conn.PgConn().CopyFrom(ctx, r, copySQL)
	if err != nil {
		drain(blocks)
		return 0, 0, fmt.Errorf("target database: COPY: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("target database: commit: %w", err)
	}
	return tag.RowsAffected(), r.sum.sum, nil
}

// drain lets the producer go on when a job stopped taking blocks: what it
// would have written is lost anyway, since the restore fails.
func drain(blocks <-chan []byte) {
	go func() {
		for range blocks {
		}
	}()
}

// fanOut cuts the COPY text written to it into blocks of whole lines (a
// line of COPY text is a row: newlines inside values are escaped).
type fanOut struct {
	ctx  context.Context
	out  chan<- []byte
	free <-chan []byte // blocks sent, to reuse
	buf  []byte
}

func (f *fanOut) Write(p []byte) (int, error) {
	f.buf = append(f.buf, p...)
	if len(f.buf) < fanOutBlock {
		return len(p), nil
	}
	i := bytes.LastIndexByte(f.buf, '\n')
	if i < 0 {
		return len(p), nil // one long row so far
	}
	block := f.buf[:i+1]
	var next []byte
	select {
	case next = <-f.free:
	default:
		next = make([]byte, 0, fanOutBlock+len(p))
	}
	f.buf = append(next[:0], f.buf[i+1:]...)
	select {
	case f.out <- block:
		return len(p), nil
	case <-f.ctx.Done():
		return 0, context.Cause(f.ctx)
	}
}

// hashesRows says that the jobs checksum the rows (rowsHashedLater).
func (f *fanOut) hashesRows() {}

// close hands out the rest and tells the jobs that no more comes.
func (f *fanOut) close() error {
	defer close(f.out)
	if len(f.buf) == 0 {
		return nil
	}
	select {
	case f.out <- f.buf:
		return nil
	case <-f.ctx.Done():
		return context.Cause(f.ctx)
	}
}

// blockReader reads the blocks one job takes, adding their rows to its
// checksum, and gives each back to free once it is read: the COPY has
// copied it into its own buffer by then.
type blockReader struct {
	ctx     context.Context
	in      <-chan []byte
	free    chan<- []byte
	block   []byte // the block cur is the rest of
	cur     []byte
	columns bool // false: a table without columns, whose rows are empty lines
	sum     rowSum
	fields  [][]byte
}

// hash adds the rows of a block, whole lines of COPY text, to r.sum.
func (r *blockReader) hash(block []byte) error {
	if len(block) > 0 && block[len(block)-1] != '\n' {
		return errors.New("restore: a block of rows ends inside a row")
	}
	for len(block) > 0 {
		i := bytes.IndexByte(block, '\n')
		r.fields = r.fields[:0]
		if r.columns {
			r.fields = splitFields(r.fields, block[:i])
		}
		if err := r.sum.addFields(r.fields); err != nil {
			return err
		}
		block = block[i+1:]
	}
	return nil
}

func (r *blockReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.block != nil {
			select {
			case r.free <- r.block[:0]:
			default:
			}
			r.block = nil
		}
		select {
		case b, ok := <-r.in:
			if !ok {
				return 0, io.EOF
			}
			if err := r.hash(b); err != nil {
				return 0, err
			}
			r.block, r.cur = b, b
		case <-r.ctx.Done():
			return 0, context.Cause(r.ctx)
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}
