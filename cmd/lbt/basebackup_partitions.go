package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"lbt/schema"
	"lbt/source"
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
	conn, err := source.Connect(ctx, pc)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close(context.Background())
	for _, name := range names {
		nsp, rel, err := schema.ParseName(name)
		if err != nil {
			return nil, nil, usageError{err}
		}
		t, ok, err := source.LookupTable(ctx, conn, nsp, rel, publication)
		if err != nil {
			return nil, nil, err
		}
		if !ok || !t.Partitioned || t.Published {
			tables = append(tables, name) // dump names an unknown table itself
			continue
		}
		parts, err := source.PartitionLeaves(ctx, conn, t.OID)
		if err != nil {
			return nil, nil, err
		}
		if len(parts) == 0 {
			return nil, nil, usageError{fmt.Errorf("%s is a partitioned table without partitions: it holds no rows to back up", name)}
		}
		leaves = append(leaves, parts...)
	}
	return tables, leaves, nil
}
