package catalog

import (
	"context"
	"database/sql"
	"fmt"
)

// dbHandle is what the catalog's questions run on: the connection pool, or
// the one connection that holds a read snapshot.
type dbHandle interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// ReadSnapshot calls fn with a view of the catalog that answers every
// question from one moment: the first read fixes what the view sees, and
// nothing the daemon or a purge commits afterwards reaches it. A reader that
// asks several questions to make one plan (which basebackup, which blobs,
// how many changes) asks them of the view, so that a purge committed between
// two questions cannot give it rows from before and after it (docs/FORMAT.md,
// "Readers while purge runs").
//
// The view holds one of the catalog's connections until fn returns; a
// catalog opened for writing has only one, so fn must ask the view alone,
// never c, and return soon. The view cannot write.
func (c *Catalog) ReadSnapshot(ctx context.Context, fn func(view *Catalog) error) error {
	view, release, err := c.BeginRead(ctx)
	if err != nil {
		return err
	}
	defer release()
	return fn(view)
}

// BeginRead is ReadSnapshot for a reader that asks its questions over
// more than one call, as an Inspector does: the view answers from one
// moment until release is called. The view's Close must not be called.
func (c *Catalog) BeginRead(ctx context.Context) (view *Catalog, release func(), err error) {
	conn, err := c.pool.Conn(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("catalog read snapshot: %w", err)
	}
	// A deferred BEGIN: SQLite takes the snapshot at the first read and
	// keeps it until the ROLLBACK.
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("catalog read snapshot: %w", err)
	}
	view = &Catalog{db: conn, pool: c.pool, view: true, dir: c.dir, readOnly: true, keys: c.keys, fsys: c.fsys, store: c.store}
	release = func() {
		conn.ExecContext(context.Background(), "ROLLBACK")
		conn.Close()
	}
	return view, release, nil
}
