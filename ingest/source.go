package ingest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/schema"
	"lbt/source"
)

// fatalError marks an error that retrying cannot fix: the operator must act.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

func fatalf(format string, args ...any) error { return fatalError{fmt.Errorf(format, args...)} }

// IsFatal reports whether err needs the operator rather than a retry.
func IsFatal(err error) bool {
	var f fatalError
	return errors.As(err, &f)
}

var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// sourceInfo is what lbt learns about the source at connect time.
type sourceInfo struct {
	systemID      string
	timeline      int32
	database      string
	serverVersion int // server_version_num
	user          string
}

// checkSource verifies that the source can feed lbt at all, with one clear
// message per thing the operator must fix.
func checkSource(ctx context.Context, conn *pgx.Conn) (sourceInfo, error) {
	var info sourceInfo
	set, err := source.ReadSettings(ctx, conn)
	if err != nil {
		return info, err
	}
	info.serverVersion, info.database, info.user = set.ServerVersion, set.Database, set.User
	if set.WALLevel != "logical" {
		return info, fatalf("source has wal_level=%s: set wal_level = logical in postgresql.conf and restart PostgreSQL", set.WALLevel)
	}
	if info.serverVersion < 100000 {
		return info, fatalf("source runs PostgreSQL %d: lbt needs PostgreSQL 10 or newer", info.serverVersion/10000)
	}
	if !set.CanReplicate {
		return info, fatalf("role %q lacks the REPLICATION attribute: run ALTER ROLE %s REPLICATION as a superuser", info.user, schema.QuoteIdent(info.user))
	}
	return info, nil
}

// ensurePublication uses the named publication, creating it FOR ALL TABLES
// when it is missing.
func ensurePublication(ctx context.Context, conn *pgx.Conn, name string) (created bool, err error) {
	if p, err := source.LookupPublication(ctx, conn, name); err != nil || p.Exists {
		return false, err
	}
	if _, err := conn.Exec(ctx, "CREATE PUBLICATION "+schema.QuoteIdent(name)+" FOR ALL TABLES"); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return false, fatalf("publication %q does not exist and role cannot create it FOR ALL TABLES (needs superuser): as a superuser run CREATE PUBLICATION %s FOR ALL TABLES, or set publication to an existing one",
				name, schema.QuoteIdent(name))
		}
		return false, fatalf("create publication %q: %w", name, err)
	}
	return true, nil
}

// checkSlot looks up the slot and refuses one that lbt cannot use.
func checkSlot(ctx context.Context, conn *pgx.Conn, name, database string) (source.Slot, error) {
	s, err := source.LookupSlot(ctx, conn, name)
	if err != nil || !s.Exists {
		return s, err
	}
	switch {
	case s.Type != "logical":
		return s, fatalf("replication slot %q is a physical slot: set slotname to another name", name)
	case s.Plugin != "pgoutput":
		return s, fatalf("replication slot %q uses plugin %s, lbt needs pgoutput: set slotname to another name", name, orNone(s.Plugin))
	case s.Database != database:
		return s, fatalf("replication slot %q belongs to database %s, not %s: set slotname to another name", name, orNone(s.Database), database)
	}
	return s, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// replicaIdentityProblem says what is wrong with a table whose UPDATEs and
// DELETEs cannot reach lbt, and how to fix it; "" when nothing is.
func replicaIdentityProblem(name string, replident byte, hasKey bool) string {
	switch {
	case replident == 'f':
		return ""
	case replident == 'n':
		return fmt.Sprintf("table %s has REPLICA IDENTITY NOTHING: its UPDATEs and DELETEs fail on the source while it is published; fix: add a primary key, or ALTER TABLE %s REPLICA IDENTITY FULL", name, name)
	case !hasKey:
		return fmt.Sprintf("table %s has no primary key or replica-identity index: its UPDATEs and DELETEs fail on the source while it is published; fix: add a primary key, or ALTER TABLE %s REPLICA IDENTITY FULL", name, name)
	}
	return ""
}

// protoVersion is the newest pgoutput protocol the server speaks that lbt
// decodes. Streaming of in-progress transactions is not requested, so
// versions 2 and 3 carry the same messages as version 1.
func protoVersion(serverVersion int) int {
	switch {
	case serverVersion >= 150000:
		return 3
	case serverVersion >= 140000:
		return 2
	default:
		return 1
	}
}

// pluginArgs are the START_REPLICATION options; pglogrepl pastes them verbatim.
func pluginArgs(serverVersion int, publication string) []string {
	args := []string{
		"proto_version '" + strconv.Itoa(protoVersion(serverVersion)) + "'",
		"publication_names '" + strings.ReplaceAll(schema.QuoteIdent(publication), "'", "''") + "'",
	}
	if serverVersion >= 140000 {
		args = append(args, "messages 'true'")
	}
	return args
}
