package dump

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"lbt/schema"
)

// notPublished explains why a table is not in the publication, with
// advice PostgreSQL accepts: ALTER PUBLICATION ... ADD TABLE is refused on
// a FOR ALL TABLES publication, which leaves out a partitioned table whose
// partitions it publishes, and a partition whose changes it publishes as
// its root's.
func notPublished(ctx context.Context, tx pgx.Tx, oid uint32, name, publication string) error {
	pub := schema.QuoteIdent(publication)
	var allTables, viaRoot, partitioned bool
	var root string
	err := tx.QueryRow(ctx, `SELECT p.puballtables, p.pubviaroot, c.relkind = 'p',
			coalesce((SELECT quote_ident(n.nspname) || '.' || quote_ident(r.relname) FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
				WHERE r.oid = pg_partition_root(c.oid) AND r.oid <> c.oid), '')
		FROM pg_publication p, pg_class c WHERE p.pubname = $1 AND c.oid = $2`, publication, oid).Scan(&allTables, &viaRoot, &partitioned, &root)
	if err != nil {
		return fmt.Errorf("look up publication %s: %w", pub, err)
	}
	switch {
	case partitioned && !viaRoot:
		return fmt.Errorf("%w: %s is a partitioned table: publication %s publishes its partitions, each archived on its own; back up the partitions (lbt basebackup --table %s does, each under one snapshot)",
			ErrNotPublished, name, pub, name)
	case root != "" && viaRoot:
		return fmt.Errorf("%w: %s is a partition of %s, whose changes publication %s publishes as the root's (publish_via_partition_root): back up %s",
			ErrNotPublished, name, root, pub, root)
	case allTables:
		return fmt.Errorf("%w: %s is not in publication %s FOR ALL TABLES (a temporary, unlogged or system table is never published)", ErrNotPublished, name, pub)
	}
	return fmt.Errorf("%w: %s is not in publication %s, so its changes are not archived; add it with ALTER PUBLICATION %s ADD TABLE %s",
		ErrNotPublished, name, pub, pub, name)
}
