package schema

import "strings"

// Definition is everything needed to recreate a table as it was when a
// basebackup was taken, read from the source catalog under the dump's
// snapshot.
type Definition struct {
	// Table is the table as the stream names its columns: the columns a
	// basebackup's COPY holds, in order (generated columns excluded).
	Table Table `json:"table"`
	// Columns are all columns in attnum order, generated ones included.
	Columns     []ColumnDef  `json:"columns"`
	Constraints []Constraint `json:"constraints"` // primary key, unique, check, exclusion (foreign keys are left out: the restored table stands alone)
	Indexes     []string     `json:"indexes"`     // CREATE INDEX statements of indexes that back no constraint

	// Since format version 3; absent in definitions written before.

	// Source is the server and session the basebackup was read with: the
	// text form of values depends on its settings.
	Source *Source `json:"source,omitempty"`
	// Types are the user-defined types the columns need, each after the
	// types it needs itself.
	Types []TypeDef `json:"types,omitempty"`
	// Extensions are the extensions the columns' types (or the types they
	// are built on) belong to.
	Extensions []Extension `json:"extensions,omitempty"`
}

// Source describes the source server and the settings of the session that
// wrote a basebackup's text; the stream's text is written with the same
// role's defaults.
type Source struct {
	ServerVersion    string `json:"server_version"`     // server_version, e.g. "15.8 (Debian 15.8-1)"
	Encoding         string `json:"encoding"`           // the database's encoding, e.g. UTF8
	Collate          string `json:"collate"`            // the database's LC_COLLATE
	Ctype            string `json:"ctype"`              // the database's LC_CTYPE
	TimeZone         string `json:"timezone"`           // the session's TimeZone: timestamptz values are written in it
	DateStyle        string `json:"datestyle"`          // e.g. "ISO, MDY"
	IntervalStyle    string `json:"intervalstyle"`      // e.g. postgres
	ExtraFloatDigits string `json:"extra_float_digits"` // e.g. 1
	ByteaOutput      string `json:"bytea_output"`       // hex or escape
	LcMonetary       string `json:"lc_monetary"`        // money values are written in it
}

// TypeDef is a user-defined type a column uses, with what recreating it
// takes.
type TypeDef struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	// Kind is "enum", "domain", "composite" or "range".
	Kind string `json:"kind"`
	// Labels of an enum, in their order.
	Labels []string `json:"labels,omitempty"`
	// Base of a domain (format_type, with typmod), NotNull, Default and
	// Collation (quoted, when not the base type's).
	Base      string `json:"base,omitempty"`
	NotNull   bool   `json:"not_null,omitempty"`
	Default   string `json:"default,omitempty"`
	Collation string `json:"collation,omitempty"`
	// Checks of a domain, in name order; NotValid marks those added with
	// NOT VALID, which older values may violate.
	Checks []TypeCheck `json:"checks,omitempty"`
	// Attributes of a composite type, in order.
	Attributes []TypeAttribute `json:"attributes,omitempty"`
	// Subtype of a range (format_type), and its options as CREATE TYPE
	// takes them: subtype_opclass, collation, canonical, subtype_diff
	// (quoted names, empty when the default).
	Subtype        string `json:"subtype,omitempty"`
	SubtypeOpclass string `json:"subtype_opclass,omitempty"`
	Canonical      string `json:"canonical,omitempty"`
	SubtypeDiff    string `json:"subtype_diff,omitempty"`
	// Extension names the extension that owns the type; such a type is
	// created by CREATE EXTENSION, not by lbt.
	Extension string `json:"extension,omitempty"`
}

// QualifiedName is the type's quoted, schema-qualified name.
func (t TypeDef) QualifiedName() string { return QuoteIdent(t.Schema) + "." + QuoteIdent(t.Name) }

// TypeCheck is a domain's CHECK constraint.
type TypeCheck struct {
	Name     string `json:"name"`
	Def      string `json:"def"` // pg_get_constraintdef: CHECK (...), with NOT VALID when so
	NotValid bool   `json:"not_valid,omitempty"`
}

// TypeAttribute is an attribute of a composite type.
type TypeAttribute struct {
	Name      string `json:"name"`
	Type      string `json:"type"`                // format_type
	Collation string `json:"collation,omitempty"` // quoted, when not the type's
}

// Extension is an installed extension.
type Extension struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Schema  string `json:"schema"`
}

// ColumnDef is one column's full definition.
type ColumnDef struct {
	Name      string `json:"name"`
	Type      string `json:"type"` // format_type, e.g. "numeric(10,2)"
	NotNull   bool   `json:"not_null,omitempty"`
	Default   string `json:"default,omitempty"`   // pg_get_expr of the default
	Identity  string `json:"identity,omitempty"`  // "a" ALWAYS, "d" BY DEFAULT, "" none
	Generated string `json:"generated,omitempty"` // expression of a STORED generated column
	Collation string `json:"collation,omitempty"` // non-default collation, quoted
}

// Constraint is a table constraint as pg_get_constraintdef prints it.
type Constraint struct {
	Name string `json:"name"`
	Def  string `json:"def"` // e.g. "PRIMARY KEY (id)"
}

// Sequence is the state of a sequence owned by a table's column.
type Sequence struct {
	Name      string `json:"name"`   // qualified, quoted
	Column    string `json:"column"` // the owning column
	LastValue int64  `json:"last_value"`
	IsCalled  bool   `json:"is_called"`
	Increment int64  `json:"increment"`
	MinValue  int64  `json:"min_value"`
	MaxValue  int64  `json:"max_value"`
	Start     int64  `json:"start"`
	Type      string `json:"type"` // bigint, integer, smallint
	// Identity marks an identity column's own sequence (since format
	// version 3). A serial column later made an identity column keeps its
	// old sequence owned too; restore needs only the identity's.
	Identity bool `json:"identity,omitempty"`
}

// textParams are the settings lbt's sessions on the source start with, so
// that the text the server writes of a value says exactly what the value
// is, whatever the server's, database's or role's defaults: DateStyle SQL
// or Postgres write a timestamptz with a zone abbreviation ("IST"), which
// reads back as another zone's; IntervalStyle sql_standard writes
// "-1 2:03:04" for -1 day -2:03:04, which reads back as -1 day +2:03:04
// under postgres; extra_float_digits below 1 (the default before
// PostgreSQL 12) rounds floats. TimeZone stays the source's: ISO writes
// the offset.
var textParams = [][2]string{{"DateStyle", "ISO"}, {"IntervalStyle", "postgres"}, {"extra_float_digits", "3"}}

// SetTextParams sets textParams in a connection's startup parameters,
// replacing what the configuration gave for them.
func SetTextParams(params map[string]string) {
	for _, p := range textParams {
		for k := range params {
			if strings.EqualFold(k, p[0]) {
				delete(params, k)
			}
		}
		params[p[0]] = p[1]
	}
}
