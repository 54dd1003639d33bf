package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Querier is what the lookups here need of a connection or a transaction
// (*pgx.Conn, pgx.Tx).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// PublishedOIDsSQL selects the OIDs (column oid) of the tables the
// publication named by $1 carries. It is the one definition of the
// publication's tables, also for SQL that runs on the server itself
// (setup's lbt.actor_tables). Every name is qualified with pg_catalog, so
// that no search_path changes it.
const PublishedOIDsSQL = `SELECT c.oid FROM pg_catalog.pg_publication_tables pt
		JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname
		JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
		WHERE pt.pubname = $1`

// PublishedTable is a table of the publication as the source catalog says.
type PublishedTable struct {
	OID             uint32
	Name            string // qualified, quoted by the server (quote_ident)
	ReplicaIdentity byte   // pg_class.relreplident: d, n, f or i
	HasKey          bool   // a primary key or a replica-identity index
}

// PublishedTables lists the tables of the publication, by name. A
// publication that does not exist has none.
func PublishedTables(ctx context.Context, q Querier, publication string) ([]PublishedTable, error) {
	rows, err := q.Query(ctx, `SELECT c.oid, pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), c.relreplident::text,
			EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident))
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid IN (`+PublishedOIDsSQL+`) ORDER BY 2`, publication)
	if err != nil {
		return nil, fmt.Errorf("list the tables of publication %q: %w", publication, err)
	}
	var out []PublishedTable
	for rows.Next() {
		var t PublishedTable
		var ident string
		if err := rows.Scan(&t.OID, &t.Name, &ident, &t.HasKey); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list the tables of publication %q: %w", publication, err)
		}
		t.ReplicaIdentity = ident[0]
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the tables of publication %q: %w", publication, err)
	}
	return out, nil
}

// Publication is what the source says of a publication.
type Publication struct {
	Exists    bool
	AllTables bool // FOR ALL TABLES
}

// LookupPublication reads the named publication.
func LookupPublication(ctx context.Context, q Querier, name string) (Publication, error) {
	var p Publication
	err := q.QueryRow(ctx, `SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = $1`, name).Scan(&p.AllTables)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return p, nil
	case err != nil:
		return p, fmt.Errorf("look up publication %q: %w", name, err)
	}
	p.Exists = true
	return p, nil
}
