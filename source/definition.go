package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"lbt/schema"
)

// ErrNoTable reports a table that does not exist on the source (any more).
var ErrNoTable = errors.New("no such table on the source")

// TableDefinition is a table's full definition, as a basebackup records
// it, and how to read its rows.
type TableDefinition struct {
	schema.Definition
	Partitioned bool
	Relfilenode uint32 // the table's storage at the snapshot
}

// DescribeDefinition reads a table's full definition and its owned
// sequences from the source catalog, under the snapshot of tx. A table
// that does not exist is ErrNoTable; one that logical replication does
// not carry is an error.
func DescribeDefinition(ctx context.Context, tx pgx.Tx, oid uint32) (TableDefinition, []schema.Sequence, error) {
	var def TableDefinition
	var nsp, rel, relkind, persistence, ident string
	err := tx.QueryRow(ctx, `SELECT n.nspname, c.relname, c.relkind::text, c.relpersistence::text, c.relreplident::text, c.relfilenode
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, oid).
		Scan(&nsp, &rel, &relkind, &persistence, &ident, &def.Relfilenode)
	if errors.Is(err, pgx.ErrNoRows) {
		return def, nil, fmt.Errorf("%w: the table with OID %d was dropped", ErrNoTable, oid)
	}
	if err != nil {
		return def, nil, fmt.Errorf("look up table %d: %w", oid, err)
	}
	switch {
	case relkind != "r" && relkind != "p":
		return def, nil, fmt.Errorf("%s is not a table (relkind %s)", rel, relkind)
	case persistence != "p":
		return def, nil, fmt.Errorf("%s is a temporary or unlogged table: logical replication does not carry it, so lbt cannot back it up", rel)
	}
	def.Partitioned = relkind == "p"
	def.Table = schema.Table{Schema: nsp, Name: rel, ReplicaIdentity: ident[0]}

	// What the archiver reads of each column too (Lookup.DescribeRelation),
	// so that its first description compares equal.
	missing := `false, ''`
	if serverMajor(tx.Conn()) >= 11 {
		missing = `a.atthasmissing, coalesce((a.attmissingval::text::text[])[1], '')`
	}
	rows, err := tx.Query(ctx, `SELECT a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), a.attnotnull,
			coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity::text, a.attgenerated::text, a.attnum, `+missing+`,
			CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0
				THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation)
				ELSE '' END
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, oid)
	if err != nil {
		return def, nil, fmt.Errorf("read columns: %w", err)
	}
	for rows.Next() {
		var c schema.ColumnDef
		var typOID uint32
		var typmod int32
		var attnum int16
		var hasMissing bool
		var missingVal string
		if err := rows.Scan(&c.Name, &typOID, &typmod, &c.Type, &c.NotNull, &c.Default, &c.Identity, &c.Generated, &attnum, &hasMissing, &missingVal, &c.Collation); err != nil {
			rows.Close()
			return def, nil, fmt.Errorf("read columns: %w", err)
		}
		if c.Generated != "" {
			c.Generated, c.Default = c.Default, "" // the expression is stored as the default
		} else {
			col := schema.Column{Name: c.Name, TypeOID: typOID, TypeMod: typmod, TypeName: c.Type,
				AttNum: attnum, NotNull: c.NotNull, Default: c.Default, HasMissing: hasMissing}
			if hasMissing {
				col.Missing = missingVal
			}
			def.Table.Columns = append(def.Table.Columns, col)
		}
		def.Columns = append(def.Columns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return def, nil, fmt.Errorf("read columns: %w", err)
	}

	// Which columns the stream marks as the replica identity, and the primary key.
	rows, err = tx.Query(ctx, `SELECT i.indisprimary, i.indisreplident, a.attname FROM pg_index i
		JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND (i.indisprimary OR i.indisreplident) ORDER BY i.indisprimary DESC, k.n`, oid)
	if err != nil {
		return def, nil, fmt.Errorf("read keys: %w", err)
	}
	identCols := map[string]bool{}
	for rows.Next() {
		var primary, replident bool
		var col string
		if err := rows.Scan(&primary, &replident, &col); err != nil {
			rows.Close()
			return def, nil, fmt.Errorf("read keys: %w", err)
		}
		if primary {
			def.Table.PrimaryKey = append(def.Table.PrimaryKey, col)
		}
		if (ident == "d" && primary) || (ident == "i" && replident) {
			identCols[col] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return def, nil, fmt.Errorf("read keys: %w", err)
	}
	for i := range def.Table.Columns {
		def.Table.Columns[i].Key = ident == "f" || identCols[def.Table.Columns[i].Name]
	}

	rows, err = tx.Query(ctx, `SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = $1 AND contype IN ('p', 'u', 'c', 'x') ORDER BY contype = 'p' DESC, conname`, oid)
	if err != nil {
		return def, nil, fmt.Errorf("read constraints: %w", err)
	}
	for rows.Next() {
		var c schema.Constraint
		if err := rows.Scan(&c.Name, &c.Def); err != nil {
			rows.Close()
			return def, nil, fmt.Errorf("read constraints: %w", err)
		}
		def.Constraints = append(def.Constraints, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return def, nil, fmt.Errorf("read constraints: %w", err)
	}

	rows, err = tx.Query(ctx, `SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
		WHERE i.indrelid = $1 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
		ORDER BY i.indexrelid`, oid)
	if err != nil {
		return def, nil, fmt.Errorf("read indexes: %w", err)
	}
	def.Indexes, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return def, nil, fmt.Errorf("read indexes: %w", err)
	}

	if def.Source, err = readOutputSettings(ctx, tx); err != nil {
		return def, nil, err
	}
	if def.Types, def.Extensions, err = describeTypes(ctx, tx, oid); err != nil {
		return def, nil, err
	}
	seqs, err := ownedSequences(ctx, tx, oid)
	if err != nil {
		return def, nil, err
	}
	return def, seqs, nil
}

// readOutputSettings reads the server's version, the database's encoding
// and locale, and the session settings the text form of values depends on.
func readOutputSettings(ctx context.Context, tx pgx.Tx) (*schema.Source, error) {
	var s schema.Source
	err := tx.QueryRow(ctx, `SELECT current_setting('server_version'), pg_encoding_to_char(d.encoding), d.datcollate::text, d.datctype::text,
			current_setting('TimeZone'), current_setting('DateStyle'), current_setting('IntervalStyle'),
			current_setting('extra_float_digits'), current_setting('bytea_output'), current_setting('lc_monetary')
		FROM pg_database d WHERE d.datname = current_database()`).
		Scan(&s.ServerVersion, &s.Encoding, &s.Collate, &s.Ctype, &s.TimeZone, &s.DateStyle, &s.IntervalStyle,
			&s.ExtraFloatDigits, &s.ByteaOutput, &s.LcMonetary)
	if err != nil {
		return nil, fmt.Errorf("read server settings: %w", err)
	}
	return &s, nil
}

// ownedSequences reads the sequences owned by the table's columns (serial
// and identity columns). Sequences are not transactional: the value is the
// current one, which is at least what the snapshot saw.
func ownedSequences(ctx context.Context, tx pgx.Tx, oid uint32) ([]schema.Sequence, error) {
	rows, err := tx.Query(ctx, `SELECT s.oid, quote_ident(sn.nspname) || '.' || quote_ident(s.relname), a.attname,
			sq.seqincrement, sq.seqmin, sq.seqmax, sq.seqstart, format_type(sq.seqtypid, NULL), d.deptype = 'i' 
		FROM pg_depend d
		JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
		JOIN pg_namespace sn ON sn.oid = s.relnamespace
		JOIN pg_sequence sq ON sq.seqrelid = s.oid
		JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND d.deptype IN ('a', 'i')
		ORDER BY a.attnum, d.deptype = 'i' DESC`, oid)
	if err != nil {
		return nil, fmt.Errorf("read owned sequences: %w", err)
	}
	type seqRow struct {
		oid uint32
		s   schema.Sequence
	}
	var found []seqRow
	for rows.Next() {
		var r seqRow
		if err := rows.Scan(&r.oid, &r.s.Name, &r.s.Column, &r.s.Increment, &r.s.MinValue, &r.s.MaxValue, &r.s.Start, &r.s.Type, &r.s.Identity); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read owned sequences: %w", err)
		}
		found = append(found, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read owned sequences: %w", err)
	}
	var out []schema.Sequence
	for _, r := range found {
		if err := tx.QueryRow(ctx, "SELECT last_value, is_called FROM "+r.s.Name).Scan(&r.s.LastValue, &r.s.IsCalled); err != nil {
			return nil, fmt.Errorf("read sequence %s: %w", r.s.Name, err)
		}
		out = append(out, r.s)
	}
	return out, nil
}
