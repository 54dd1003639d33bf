package source

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"lbt/schema"
)

// Storage is a table's storage on the source: its relfilenode, which a
// rewrite of its rows (ALTER TABLE ... TYPE, ADD COLUMN with a volatile
// default, VACUUM FULL, CLUSTER, TRUNCATE) replaces, and the xid that last
// wrote its pg_class row, which tells whether a TRUNCATE the stream carried
// made that relfilenode.
type Storage struct {
	Relfilenode uint32
	Xmin        uint32
}

// DescribeRelation completes t, a table as a Relation message of the
// stream gives it (names, type OIDs and modifiers, key flags), from the
// source catalog: the SQL names of the column types and the primary key,
// which the stream does not carry and restore needs to create the table
// anywhere, years later; and what tells whether a change of the table can
// be followed exactly: each column's attnum, NOT NULL, DEFAULT and
// fast-default value, and the table's storage (zero when the table was
// dropped meanwhile). It is one statement, one round trip: the archiver
// runs it at every Relation message.
func (l *Lookup) DescribeRelation(ctx context.Context, oid uint32, t *schema.Table) (Storage, error) {
	var st Storage
	oids := make([]uint32, len(t.Columns))
	mods := make([]int32, len(t.Columns))
	for i, c := range t.Columns {
		oids[i], mods[i] = c.TypeOID, c.TypeMod
	}
	// atthasmissing came with PostgreSQL 11; before it, ADD COLUMN with a
	// default rewrote the table.
	hasMissing, missing := `false`, `''::text`
	if serverMajor(l.conn) >= 11 {
		hasMissing, missing = `a.atthasmissing`, `coalesce((a.attmissingval::text::text[])[1], '')`
	}
	var typeNames, pk, names, defaults, missingVals []string
	var attnums []int16
	var notNulls, hasMissings []bool
	var relfilenode *uint32
	var xmin *int64
	err := l.conn.QueryRow(ctx, `SELECT
			ARRAY(SELECT pg_catalog.format_type(u.o, u.m) FROM unnest($2::oid[], $3::int[]) WITH ORDINALITY AS u(o, m, n) ORDER BY u.n),
			ARRAY(SELECT a.attname::text FROM pg_catalog.pg_index i
				JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
				JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
				WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.n),
			(SELECT c.relfilenode FROM pg_catalog.pg_class c WHERE c.oid = $1),
			(SELECT c.xmin::text::bigint FROM pg_catalog.pg_class c WHERE c.oid = $1),
			cols.*
		FROM (SELECT array_agg(a.attname::text), array_agg(a.attnum), array_agg(a.attnotnull),
				array_agg(coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')), array_agg(`+hasMissing+`), array_agg(`+missing+`)
			FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped) cols`, oid, oids, mods).
		Scan(&typeNames, &pk, &relfilenode, &xmin, &names, &attnums, &notNulls, &defaults, &hasMissings, &missingVals)
	if err != nil {
		return st, fmt.Errorf("describe %s: %w", t.QualifiedName(), err)
	}
	if len(typeNames) != len(t.Columns) {
		return st, fmt.Errorf("resolve column types of %s: %d names for %d columns", t.QualifiedName(), len(typeNames), len(t.Columns))
	}
	for i := range t.Columns {
		t.Columns[i].TypeName = typeNames[i]
	}
	t.PrimaryKey = pk
	byName := make(map[string]int, len(t.Columns))
	for i, c := range t.Columns {
		byName[c.Name] = i
	}
	for i, name := range names {
		j, ok := byName[name]
		if !ok {
			continue // generated columns are not in the stream
		}
		col := &t.Columns[j]
		col.AttNum, col.NotNull, col.Default, col.HasMissing = attnums[i], notNulls[i], defaults[i], hasMissings[i]
		if col.HasMissing {
			col.Missing = missingVals[i]
		}
	}
	if relfilenode != nil && xmin != nil {
		st.Relfilenode, st.Xmin = *relfilenode, uint32(*xmin)
	}
	return st, nil
}

// DescribeCurrent reads a table's columns as the stream would send them
// (not dropped, not generated, in attnum order) and its storage from the
// source catalog, for a table the stream has not described since it
// changed: after a captured ALTER TABLE, or at a periodic look. prev gives
// the replica identity and the primary key, which the comparison of
// descriptions does not use. ok is false when the table no longer exists.
func (l *Lookup) DescribeCurrent(ctx context.Context, oid uint32, prev schema.Table) (t schema.Table, st Storage, ok bool, err error) {
	t = schema.Table{Schema: prev.Schema, Name: prev.Name, ReplicaIdentity: prev.ReplicaIdentity}
	generated := `false`
	if m := serverMajor(l.conn); m == 0 || m >= 12 {
		generated = `a.attgenerated <> ''`
	}
	var names []string
	var typeOIDs []uint32
	var typeMods []int32
	err = l.conn.QueryRow(ctx, `SELECT n.nspname, c.relname,
			ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND NOT `+generated+` ORDER BY a.attnum),
			ARRAY(SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND NOT `+generated+` ORDER BY a.attnum),
			ARRAY(SELECT a.atttypmod FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND NOT `+generated+` ORDER BY a.attnum)
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, oid).
		Scan(&t.Schema, &t.Name, &names, &typeOIDs, &typeMods)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, st, false, nil
	}
	if err != nil {
		return t, st, false, fmt.Errorf("describe %s: %w", prev.QualifiedName(), err)
	}
	for i, name := range names {
		t.Columns = append(t.Columns, schema.Column{Name: name, TypeOID: typeOIDs[i], TypeMod: typeMods[i]})
	}
	if st, err = l.DescribeRelation(ctx, oid, &t); err != nil {
		return t, st, false, err
	}
	t.PrimaryKey = prev.PrimaryKey
	return t, st, true, nil
}

// neverRewritten holds for a permanent table c whose storage is the one it
// was created with (a new table's relfilenode is its OID). A table created
// UNLOGGED, whose rows never reached the stream, gets new storage when
// ALTER TABLE SET LOGGED makes it published; so does any other rewrite
// (VACUUM FULL, CLUSTER, a column type change), after which nothing is
// proven and the table needs a basebackup.
const neverRewritten = `c.relpersistence = 'p' AND c.relfilenode = c.oid`

// DescribeNew reads, as pgoutput would describe it, a table the stream
// has not shown yet, and completes it as DescribeRelation does; ok is
// false when it no longer exists, is no table the stream carries (a
// partitioned table, an unlogged or temporary one), or was rewritten
// since its creation.
func (l *Lookup) DescribeNew(ctx context.Context, oid uint32) (def schema.Table, ok bool, err error) {
	var ident, kind, persistence string
	var rewrittenNever bool
	err = l.conn.QueryRow(ctx, `SELECT n.nspname, c.relname, c.relreplident::text, c.relkind::text, c.relpersistence::text, `+neverRewritten+`
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, oid).
		Scan(&def.Schema, &def.Name, &ident, &kind, &persistence, &rewrittenNever)
	if errors.Is(err, pgx.ErrNoRows) {
		return def, false, nil
	}
	if err != nil {
		return def, false, fmt.Errorf("describe relation %d: %w", oid, err)
	}
	if kind != "r" || persistence != "p" || ident == "" || !rewrittenNever {
		return def, false, nil
	}
	def.ReplicaIdentity = ident[0]
	// The key flags pgoutput sets: the replica identity's columns.
	rows, err := l.conn.Query(ctx, `SELECT a.attname, a.atttypid, a.atttypmod,
			CASE $2::text
				WHEN 'f' THEN true
				WHEN 'd' THEN a.attnum = ANY (SELECT unnest(i.indkey) FROM pg_catalog.pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary)
				WHEN 'i' THEN a.attnum = ANY (SELECT unnest(i.indkey) FROM pg_catalog.pg_index i WHERE i.indrelid = a.attrelid AND i.indisreplident)
				ELSE false END
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, oid, ident)
	if err != nil {
		return def, false, fmt.Errorf("describe relation %d: %w", oid, err)
	}
	for rows.Next() {
		var c schema.Column
		if err := rows.Scan(&c.Name, &c.TypeOID, &c.TypeMod, &c.Key); err != nil {
			rows.Close()
			return def, false, fmt.Errorf("describe relation %d: %w", oid, err)
		}
		def.Columns = append(def.Columns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return def, false, fmt.Errorf("describe relation %d: %w", oid, err)
	}
	if _, err := l.DescribeRelation(ctx, oid, &def); err != nil {
		return def, false, err
	}
	return def, true, nil
}

// serverMajor is the major version of PostgreSQL on the other end of
// conn, from the server_version the server reports at connect time; 0 when
// unknown.
func serverMajor(conn *pgx.Conn) int {
	v := conn.PgConn().ParameterStatus("server_version")
	if end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' }); end >= 0 {
		v = v[:end]
	}
	n, _ := strconv.Atoi(v)
	return n
}
