package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/schema"
)

// expandPartitioned replaces each partitioned table among names that the
// publication does not carry itself (FOR ALL TABLES without
// publish_via_partition_root publishes only the leaves, and lbt archives
// each leaf on its own) by its leaves, so that lbt basebackup --table of a
// partitioned table backs up every partition under one snapshot. A
// partitioned table the publication carries (publish_via_partition_root)
// is archived as one table and backed up as one. It returns the other
// names and the leaves apart.
func expandPartitioned(ctx context.Context, pc *pgconn.Config, publication string, names []string) (tables, leaves []string, err error) {
	cc, _ := pgx.ParseConfig("")
	cc.Config = *pc.Copy()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to source %s: %s", describeConn(pc), connectCause(err))
	}
	defer conn.Close(context.Background())
	for _, name := range names {
		nsp, rel, err := schema.ParseName(name)
		if err != nil {
			return nil, nil, usageError{err}
		}
		var oid uint32
		var partitioned, published bool
		err = conn.QueryRow(ctx, `SELECT c.oid, c.relkind = 'p',
				EXISTS (SELECT 1 FROM pg_publication_tables pt WHERE pt.pubname = $3 AND pt.schemaname = n.nspname AND pt.tablename = c.relname)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`, nsp, rel, publication).
			Scan(&oid, &partitioned, &published)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && (!partitioned || published)) {
			tables = append(tables, name) // dump names an unknown table itself
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("look up table %s: %w", name, err)
		}
		rows, err := conn.Query(ctx, `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
			FROM pg_partition_tree($1::oid::regclass) t JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE t.isleaf ORDER BY 1`, oid)
		if err != nil {
			return nil, nil, fmt.Errorf("list the partitions of %s: %w", name, err)
		}
		parts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, nil, fmt.Errorf("list the partitions of %s: %w", name, err)
		}
		if len(parts) == 0 {
			return nil, nil, usageError{fmt.Errorf("%s is a partitioned table without partitions: it holds no rows to back up", name)}
		}
		leaves = append(leaves, parts...)
	}
	return tables, leaves, nil
}
