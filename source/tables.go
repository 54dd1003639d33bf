package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// TableOID finds the OID of the relation named nsp.rel; ok is false when
// there is none.
func TableOID(ctx context.Context, q Querier, nsp, rel string) (oid uint32, ok bool, err error) {
	err = q.QueryRow(ctx, `SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, nsp, rel).Scan(&oid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look up table %s.%s: %w", nsp, rel, err)
	}
	return oid, true, nil
}

// NamedTable is what tells how a table named on the command line is
// backed up.
type NamedTable struct {
	OID         uint32
	Partitioned bool // relkind p
	Published   bool // the publication carries it itself
}

// LookupTable reads the table named nsp.rel and whether the publication
// carries it; ok is false when there is none.
func LookupTable(ctx context.Context, q Querier, nsp, rel, publication string) (t NamedTable, ok bool, err error) {
	err = q.QueryRow(ctx, `SELECT c.oid, c.relkind = 'p', c.oid IN (`+PublishedOIDsSQL+`)
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $2 AND c.relname = $3`,
		publication, nsp, rel).Scan(&t.OID, &t.Partitioned, &t.Published)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, false, nil
	}
	if err != nil {
		return t, false, fmt.Errorf("look up table %s.%s: %w", nsp, rel, err)
	}
	return t, true, nil
}

// PartitionLeaves lists the qualified, quoted names of the leaves of the
// partition tree under the table oid, by name.
func PartitionLeaves(ctx context.Context, q Querier, oid uint32) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
		FROM pg_catalog.pg_partition_tree($1::oid::regclass) t JOIN pg_catalog.pg_class c ON c.oid = t.relid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE t.isleaf ORDER BY 1`, oid)
	if err != nil {
		return nil, fmt.Errorf("list the partitions of table %d: %w", oid, err)
	}
	leaves, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list the partitions of table %d: %w", oid, err)
	}
	return leaves, nil
}

// Relation is a relation of the source catalog, by OID.
type Relation struct {
	Schema, Name string
	Kind         byte // pg_class.relkind: r table, p partitioned table, ...
}

// Relations reads the relations with the given OIDs that exist now; an
// OID that is missing from the result names none.
func Relations(ctx context.Context, q Querier, oids []uint32) (map[uint32]Relation, error) {
	rows, err := q.Query(ctx, `SELECT c.oid, n.nspname, c.relname, c.relkind::text FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1)`, oids)
	if err != nil {
		return nil, fmt.Errorf("look up tables on the source: %w", err)
	}
	defer rows.Close()
	out := make(map[uint32]Relation, len(oids))
	for rows.Next() {
		var oid uint32
		var r Relation
		var kind string
		if err := rows.Scan(&oid, &r.Schema, &r.Name, &kind); err != nil {
			return nil, fmt.Errorf("look up tables on the source: %w", err)
		}
		r.Kind = kind[0]
		out[oid] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up tables on the source: %w", err)
	}
	return out, nil
}

// Membership says whether a publication carries a table.
type Membership struct {
	Name              string // the table's qualified name, quoted by the server
	PublicationExists bool
	Published         bool
}

// PublicationMembership reads whether the publication carries the table
// oid; ok is false when there is no such table.
func PublicationMembership(ctx context.Context, q Querier, oid uint32, publication string) (m Membership, ok bool, err error) {
	err = q.QueryRow(ctx, `SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname),
			EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1),
			c.oid IN (`+PublishedOIDsSQL+`)
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $2`, publication, oid).
		Scan(&m.Name, &m.PublicationExists, &m.Published)
	if errors.Is(err, pgx.ErrNoRows) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("look up table %d: %w", oid, err)
	}
	return m, true, nil
}

// Publishing is how a publication treats a table's partition tree.
type Publishing struct {
	AllTables   bool   // the publication is FOR ALL TABLES
	ViaRoot     bool   // publish_via_partition_root
	Partitioned bool   // the table is a partitioned table
	Root        string // the root of the tree the table is a partition of, quoted; "" when none
}

// TablePublishing reads how the publication treats the table oid, which
// tells why it does not carry it (PostgreSQL 13 or newer).
func TablePublishing(ctx context.Context, q Querier, oid uint32, publication string) (Publishing, error) {
	var p Publishing
	err := q.QueryRow(ctx, `SELECT p.puballtables, p.pubviaroot, c.relkind = 'p',
			coalesce((SELECT quote_ident(n.nspname) || '.' || quote_ident(r.relname) FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
				WHERE r.oid = pg_partition_root(c.oid) AND r.oid <> c.oid), '')
		FROM pg_publication p, pg_class c WHERE p.pubname = $1 AND c.oid = $2`, publication, oid).Scan(&p.AllTables, &p.ViaRoot, &p.Partitioned, &p.Root)
	if err != nil {
		return p, fmt.Errorf("look up publication %s: %w", publication, err)
	}
	return p, nil
}
