// Package source asks the PostgreSQL server lbt archives about itself:
// how to connect to it, its settings, the publication's tables, the
// replication slot (its creation and the WAL it keeps), the tables by name
// and OID, and their descriptions, for the basebackup and for the
// archiver following the stream (Lookup). Every question lbt asks of the
// source's catalog is here; what lbt does with the answers is its
// callers', as are the statements that change or copy something (setup's
// capture triggers, the basebackup's snapshot and COPY).
package source

import (
	"context"
	"fmt"
)

// Settings is what the source says of itself at connect time.
type Settings struct {
	WALLevel      string
	ServerVersion int // server_version_num
	Database      string
	User          string
	CanReplicate  bool // the role has REPLICATION or is a superuser
}

// ReadSettings reads the source's settings.
func ReadSettings(ctx context.Context, q Querier) (Settings, error) {
	var s Settings
	err := q.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('server_version_num')::int,
		current_database(), current_user,
		(SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)`).
		Scan(&s.WALLevel, &s.ServerVersion, &s.Database, &s.User, &s.CanReplicate)
	if err != nil {
		return s, fmt.Errorf("query source settings: %w", err)
	}
	return s, nil
}
