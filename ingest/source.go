package ingest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
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
	var walLevel string
	var canReplicate bool
	err := conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('server_version_num')::int,
		current_database(), current_user,
		(SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)`).
		Scan(&walLevel, &info.serverVersion, &info.database, &info.user, &canReplicate)
	if err != nil {
		return info, fmt.Errorf("query source settings: %w", err)
	}
	if walLevel != "logical" {
		return info, fatalf("source has wal_level=%s: set wal_level = logical in postgresql.conf and restart PostgreSQL", walLevel)
	}
	if info.serverVersion < 100000 {
		return info, fatalf("source runs PostgreSQL %d: lbt needs PostgreSQL 10 or newer", info.serverVersion/10000)
	}
	if !canReplicate {
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

// slotInfo describes an existing replication slot.
type slotInfo struct {
	exists         bool
	confirmedFlush pglogrepl.LSN
}

// checkSlot looks up the slot and refuses one that lbt cannot use.
func checkSlot(ctx context.Context, conn *pgx.Conn, name, database string) (slotInfo, error) {
	var s slotInfo
	var plugin, slotType, db, confirmed *string
	err := conn.QueryRow(ctx, `SELECT plugin, slot_type, database, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, name).
		Scan(&plugin, &slotType, &db, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("look up replication slot %q: %w", name, err)
	}
	s.exists = true
	switch {
	case slotType == nil || *slotType != "logical":
		return s, fatalf("replication slot %q is a physical slot: set slotname to another name", name)
	case plugin == nil || *plugin != "pgoutput":
		return s, fatalf("replication slot %q uses plugin %s, lbt needs pgoutput: set slotname to another name", name, deref(plugin))
	case db == nil || *db != database:
		return s, fatalf("replication slot %q belongs to database %s, not %s: set slotname to another name", name, deref(db), database)
	}
	if confirmed != nil {
		s.confirmedFlush, err = pglogrepl.ParseLSN(*confirmed)
		if err != nil {
			return s, fmt.Errorf("replication slot %q: %w", name, err)
		}
	}
	return s, nil
}

func deref(s *string) string {
	if s == nil {
		return "(none)"
	}
	return *s
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

// storage is a table's storage on the source: its relfilenode, which a
// rewrite of its rows (ALTER TABLE ... TYPE, ADD COLUMN with a volatile
// default, VACUUM FULL, CLUSTER, TRUNCATE) replaces, and the xid that last
// wrote its pg_class row, which tells whether a TRUNCATE the stream carried
// made that relfilenode.
type storage struct {
	relfilenode uint32
	xmin        uint32
}

// describeTable resolves the SQL names of a table's column types and its
// primary key on the source. The stream only carries type OIDs; the names
// let restore create the table anywhere, years later. It also reads what
// tells whether a change of the table can be followed exactly: each
// column's attnum, NOT NULL, DEFAULT and fast-default value, and the
// table's storage.
func describeTable(ctx context.Context, conn *pgx.Conn, oid uint32, t *schema.Table) (storage, error) {
	var st storage
	if err := describeTypes(ctx, conn, oid, t); err != nil {
		return st, err
	}
	if err := describeColumns(ctx, conn, oid, t); err != nil {
		return st, err
	}
	var xmin int64
	err := conn.QueryRow(ctx, `SELECT relfilenode, xmin::text::bigint FROM pg_class WHERE oid = $1`, oid).Scan(&st.relfilenode, &xmin)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil // dropped meanwhile: nothing more to read
	}
	if err != nil {
		return st, fmt.Errorf("storage of %s: %w", t.QualifiedName(), err)
	}
	st.xmin = uint32(xmin)
	return st, nil
}

// describeColumns reads, for the columns the stream sent, their attnum,
// NOT NULL, DEFAULT and the value rows before a fast default read.
func describeColumns(ctx context.Context, conn *pgx.Conn, oid uint32, t *schema.Table) error {
	// atthasmissing came with PostgreSQL 11; before it, ADD COLUMN with a
	// default rewrote the table.
	missing := `false, ''`
	if v := conn.PgConn().ParameterStatus("server_version"); v != "" && !strings.HasPrefix(v, "10.") && !strings.HasPrefix(v, "9.") {
		missing = `a.atthasmissing, coalesce((a.attmissingval::text::text[])[1], '')`
	}
	rows, err := conn.Query(ctx, `SELECT a.attname, a.attnum, a.attnotnull, coalesce(pg_get_expr(d.adbin, d.adrelid), ''), `+missing+`
		FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, oid)
	if err != nil {
		return fmt.Errorf("columns of %s: %w", t.QualifiedName(), err)
	}
	defer rows.Close()
	byName := make(map[string]int, len(t.Columns))
	for i, c := range t.Columns {
		byName[c.Name] = i
	}
	for rows.Next() {
		var c schema.Column
		if err := rows.Scan(&c.Name, &c.AttNum, &c.NotNull, &c.Default, &c.HasMissing, &c.Missing); err != nil {
			return fmt.Errorf("columns of %s: %w", t.QualifiedName(), err)
		}
		i, ok := byName[c.Name]
		if !ok {
			continue // generated columns are not in the stream
		}
		col := &t.Columns[i]
		col.AttNum, col.NotNull, col.Default, col.HasMissing = c.AttNum, c.NotNull, c.Default, c.HasMissing
		if c.HasMissing {
			col.Missing = c.Missing
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("columns of %s: %w", t.QualifiedName(), err)
	}
	return nil
}

// describeTypes resolves the SQL names of the column types and the
// primary key.
func describeTypes(ctx context.Context, conn *pgx.Conn, oid uint32, t *schema.Table) error {
	oids := make([]uint32, len(t.Columns))
	mods := make([]int32, len(t.Columns))
	for i, c := range t.Columns {
		oids[i], mods[i] = c.TypeOID, c.TypeMod
	}
	rows, err := conn.Query(ctx, `SELECT format_type(o, m) FROM unnest($1::oid[], $2::int[]) WITH ORDINALITY AS u(o, m, n) ORDER BY n`, oids, mods)
	if err != nil {
		return fmt.Errorf("resolve column types of %s: %w", t.QualifiedName(), err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("resolve column types of %s: %w", t.QualifiedName(), err)
	}
	if len(names) != len(t.Columns) {
		return fmt.Errorf("resolve column types of %s: %d names for %d columns", t.QualifiedName(), len(names), len(t.Columns))
	}
	for i := range t.Columns {
		t.Columns[i].TypeName = names[i]
	}
	rows, err = conn.Query(ctx, `SELECT a.attname FROM pg_index i
		JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.n`, oid)
	if err != nil {
		return fmt.Errorf("primary key of %s: %w", t.QualifiedName(), err)
	}
	pk, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("primary key of %s: %w", t.QualifiedName(), err)
	}
	t.PrimaryKey = pk
	return nil
}
