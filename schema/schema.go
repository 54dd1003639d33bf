// Package schema describes tables as lbt archives them: their columns as the
// replication stream reports them, the versions a table goes through as DDL
// changes it, SQL identifiers, and the DDL that recreates a table.
package schema

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Column is one column of a table as pgoutput's Relation message describes it,
// with the type's SQL name resolved on the source when lbt could.
type Column struct {
	Name     string `json:"name"`
	TypeOID  uint32 `json:"type_oid"`
	TypeMod  int32  `json:"typmod"`
	TypeName string `json:"type_name,omitempty"` // format_type(oid, typmod), e.g. "character varying(20)"
	Key      bool   `json:"key,omitempty"`       // part of the replica identity

	// What the source catalog says beyond the stream, when lbt read it:
	// the column's pg_attribute.attnum (0 unknown), which tells a column
	// dropped and added again under its name from the same column; its NOT
	// NULL and DEFAULT; and, after ADD COLUMN with a constant default
	// (PostgreSQL's fast default, atthasmissing), the value that rows
	// written before the column existed read (attmissingval), as text.
	AttNum     int16  `json:"attnum,omitempty"`
	NotNull    bool   `json:"not_null,omitempty"`
	Default    string `json:"default,omitempty"`
	HasMissing bool   `json:"has_missing,omitempty"`
	Missing    string `json:"missing,omitempty"`
}

// Table is a table's shape at one point of its history.
type Table struct {
	Schema          string
	Name            string
	ReplicaIdentity byte // 'd' default, 'n' nothing, 'f' full, 'i' index
	Columns         []Column
	PrimaryKey      []string // from the source catalog when known
}

// tableJSON is Table with the replica identity as a letter, readable in
// the catalog's JSON.
type tableJSON struct {
	Schema          string   `json:"schema"`
	Name            string   `json:"name"`
	ReplicaIdentity string   `json:"replica_identity,omitempty"` // d, n, f or i
	Columns         []Column `json:"columns"`
	PrimaryKey      []string `json:"primary_key,omitempty"`
}

// MarshalJSON writes the replica identity as its letter.
func (t Table) MarshalJSON() ([]byte, error) {
	j := tableJSON{Schema: t.Schema, Name: t.Name, Columns: t.Columns, PrimaryKey: t.PrimaryKey}
	if t.ReplicaIdentity != 0 {
		j.ReplicaIdentity = string(rune(t.ReplicaIdentity))
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (t *Table) UnmarshalJSON(b []byte) error {
	var j tableJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*t = Table{Schema: j.Schema, Name: j.Name, Columns: j.Columns, PrimaryKey: j.PrimaryKey}
	if j.ReplicaIdentity != "" {
		t.ReplicaIdentity = j.ReplicaIdentity[0]
	}
	return nil
}

// QualifiedName is the table's name as SQL, quoted where needed.
func (t Table) QualifiedName() string {
	return QuoteIdent(t.Schema) + "." + QuoteIdent(t.Name)
}

// SameShape reports whether two versions describe the same table: same
// name, identity and columns. A new schema version is recorded only when
// the shape changes.
func (t Table) SameShape(u Table) bool {
	return t.Schema == u.Schema && t.Name == u.Name && t.ReplicaIdentity == u.ReplicaIdentity &&
		slices.Equal(t.Columns, u.Columns) && slices.Equal(t.PrimaryKey, u.PrimaryKey)
}

// KeyColumns returns the positions of the columns that identify a row: the
// primary key when known, else the replica-identity columns. For a table
// with REPLICA IDENTITY FULL and no primary key, every column is the key
// and the row is identified by its whole content.
func (t Table) KeyColumns() []int {
	var idx []int
	// With REPLICA IDENTITY USING INDEX the old key tuple carries that index's
	// columns, not necessarily the primary key's.
	if len(t.PrimaryKey) > 0 && t.ReplicaIdentity != 'i' {
		for _, k := range t.PrimaryKey {
			for i, c := range t.Columns {
				if c.Name == k {
					idx = append(idx, i)
				}
			}
		}
		if len(idx) == len(t.PrimaryKey) {
			return idx
		}
		idx = idx[:0]
	}
	for i, c := range t.Columns {
		if c.Key {
			idx = append(idx, i)
		}
	}
	return idx
}

// CanReplicateChanges reports whether UPDATE and DELETE of this table reach
// the stream with enough to identify the row.
func (t Table) CanReplicateChanges() bool {
	switch t.ReplicaIdentity {
	case 'f':
		return true
	case 'n':
		return false
	}
	return len(t.KeyColumns()) > 0
}

// ColumnIndex returns the position of the named column, or -1.
func (t Table) ColumnIndex(name string) int {
	for i, c := range t.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// QuoteIdent quotes an identifier for SQL unless it is a plain lower-case
// identifier that needs no quotes.
func QuoteIdent(s string) string {
	if isPlainIdent(s) && !reserved[s] {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// QuoteLiteral quotes a string as an SQL literal that is safe whatever
// standard_conforming_strings says.
func QuoteLiteral(s string) string {
	if strings.Contains(s, `\`) {
		return `E'` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `'`, `''`) + `'`
	}
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}

func isPlainIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r == '_':
		case (r >= '0' && r <= '9') || r == '$':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// A few keywords that cannot stand unquoted as table or column names. It is
// fine to quote more than needed; this list only keeps common names readable.
var reserved = map[string]bool{
	"all": true, "analyse": true, "analyze": true, "and": true, "any": true, "array": true, "as": true,
	"asc": true, "both": true, "case": true, "cast": true, "check": true, "collate": true, "column": true,
	"constraint": true, "create": true, "current_date": true, "current_role": true, "current_time": true,
	"current_timestamp": true, "current_user": true, "default": true, "desc": true, "distinct": true,
	"do": true, "else": true, "end": true, "except": true, "false": true, "fetch": true, "for": true,
	"foreign": true, "from": true, "grant": true, "group": true, "having": true, "in": true, "initially": true,
	"intersect": true, "into": true, "leading": true, "limit": true, "localtime": true, "not": true,
	"null": true, "offset": true, "on": true, "only": true, "or": true, "order": true, "placing": true,
	"primary": true, "references": true, "returning": true, "select": true, "session_user": true,
	"some": true, "symmetric": true, "table": true, "then": true, "to": true, "trailing": true, "true": true,
	"union": true, "unique": true, "user": true, "using": true, "variadic": true, "when": true, "where": true,
	"window": true, "with": true,
}

// ParseName parses a table name written as in SQL: `schema.table`, with
// double quotes where needed. Unquoted parts fold to lower case, and an
// unqualified name means schema public.
func ParseName(s string) (schemaName, table string, err error) {
	parts, err := splitIdents(s)
	if err != nil {
		return "", "", fmt.Errorf("table name %q: %w", s, err)
	}
	switch len(parts) {
	case 1:
		return "public", parts[0], nil
	case 2:
		return parts[0], parts[1], nil
	default:
		return "", "", fmt.Errorf("table name %q: want schema.table or table", s)
	}
}

// ScanQuoted reads the double-quoted token at the start of s, SQL's quoted
// identifier, in which "" stands for one quote. It returns the token
// unquoted and the bytes it took, both quotes included; ok is false when s
// does not start with a quote or the closing one is missing. It is lbt's
// one reader of quoted identifiers (table names, --key, the SQL restore
// rewrites).
func ScanQuoted(s string) (text string, n int, ok bool) {
	if s == "" || s[0] != '"' {
		return "", 0, false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '"' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '"' {
			b.WriteByte('"')
			i++
			continue
		}
		return b.String(), i + 1, true
	}
	return "", 0, false
}

func splitIdents(s string) ([]string, error) {
	var parts []string
	i := 0
	for {
		if i >= len(s) {
			return nil, fmt.Errorf("empty name")
		}
		var part strings.Builder
		if s[i] == '"' {
			ident, n, ok := ScanQuoted(s[i:])
			if !ok {
				return nil, fmt.Errorf("unterminated quoted identifier")
			}
			if ident == "" {
				return nil, fmt.Errorf("zero-length quoted identifier")
			}
			part.WriteString(ident)
			i += n
		} else {
			start := i
			for i < len(s) && s[i] != '.' && s[i] != '"' {
				i++
			}
			word := strings.TrimSpace(s[start:i])
			if word == "" {
				return nil, fmt.Errorf("empty name")
			}
			if !utf8.ValidString(word) || strings.ContainsAny(word, " \t") {
				return nil, fmt.Errorf("%q needs double quotes", word)
			}
			part.WriteString(strings.ToLower(word))
		}
		parts = append(parts, part.String())
		if i == len(s) {
			return parts, nil
		}
		if s[i] != '.' {
			return nil, fmt.Errorf("unexpected %q after identifier", s[i])
		}
		i++
	}
}
