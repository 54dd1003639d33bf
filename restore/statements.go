package restore

// The statements that create, fill and finish the restored table, in the
// order a restore runs them.

import (
	"fmt"
	"strings"

	"lbt/schema"
)

// The restored table is created with the columns it had at the target, and
// with what the basebackup's definition says of them where they still
// exist: types, NOT NULL, defaults, identity, collations, the primary key,
// constraints and indexes. Constraints and indexes come from the
// definition's SQL text; they name columns as they were at the basebackup,
// so the table is created and loaded with those names, the constraints and
// indexes are added, and renamed columns get their target names last
// (RENAME COLUMN rewrites the constraints and indexes). A constraint or
// index that names a column dropped since, or whose type changed since, is
// left out with a warning.

// createStatements are the statements that create the empty table and its
// sequences.
func (t *tableDef) createStatements() []string {
	var out []string
	for _, s := range t.sequences {
		if s.identity {
			continue
		}
		out = append(out, fmt.Sprintf("CREATE SEQUENCE %s AS %s INCREMENT BY %d MINVALUE %d MAXVALUE %d START WITH %d",
			s.qualified(), s.Type, s.Increment, s.MinValue, s.MaxValue, s.Start))
	}
	var cols []string
	for k, c := range t.columns {
		d := schema.QuoteIdent(c.work) + " " + c.typ
		if c.collation != "" {
			d += " COLLATE " + c.collation
		}
		if c.notNull && c.identity == "" {
			d += " NOT NULL"
		}
		switch {
		case c.generated != "":
			d += " GENERATED ALWAYS AS (" + c.generated + ") STORED"
		case c.identity != "":
			kind := "BY DEFAULT"
			if c.identity == "a" {
				kind = "ALWAYS"
			}
			d += " GENERATED " + kind + " AS IDENTITY"
			for _, s := range t.sequences {
				if s.col == k && s.identity {
					d += fmt.Sprintf(" (INCREMENT BY %d MINVALUE %d MAXVALUE %d START WITH %d)", s.Increment, s.MinValue, s.MaxValue, s.Start)
				}
			}
		case c.dflt != "":
			d += " DEFAULT " + c.dflt
		}
		cols = append(cols, d)
	}
	out = append(out, "CREATE TABLE "+t.qualified()+" (\n    "+strings.Join(cols, ",\n    ")+"\n)")
	for _, s := range t.sequences {
		if !s.identity {
			out = append(out, fmt.Sprintf("ALTER SEQUENCE %s OWNED BY %s.%s", s.qualified(), t.qualified(), schema.QuoteIdent(t.columns[s.col].work)))
		}
	}
	return out
}

// copyStatement is the COPY that loads the restored values.
func (t *tableDef) copyStatement() string {
	var cols []string
	for _, k := range t.copyCols {
		cols = append(cols, schema.QuoteIdent(t.columns[k].work))
	}
	if len(cols) == 0 {
		// A table without columns: each row is an empty line.
		return "COPY " + t.qualified() + " FROM STDIN"
	}
	return "COPY " + t.qualified() + " (" + strings.Join(cols, ", ") + ") FROM STDIN"
}

// checksumColumns are the restored table's columns the checksum covers:
// those the COPY fills, by their final names.
func (t *tableDef) checksumColumns() []string {
	var out []string
	for _, k := range t.copyCols {
		if t.kept(t.columns[k]) {
			out = append(out, t.columns[k].name)
		}
	}
	return out
}

// streamedChecksum reports whether the checksum of the rows sent is the
// one the server computes from the restored table: not when the server
// converts older values of a retyped column (integer 5 read as
// numeric(10,2) is 5.00). why says which columns.
func (t *tableDef) streamedChecksum() (ok bool, why string) {
	if t.subset() {
		return false, "--where and --columns leave out some of the rows or columns sent"
	}
	if len(t.retyped) == 0 {
		return true, ""
	}
	var cols []string
	for _, c := range t.retyped {
		cols = append(cols, schema.QuoteIdent(c))
	}
	return false, "the type of " + strings.Join(cols, ", ") + " changed since the basebackup, and the server converts the older values"
}

// dataStats is what the data written says about the columns.
type dataStats struct {
	rows     int64
	sum      uint64  // the rows' checksum (rowSum)
	seqMax   []int64 // by tableDef.sequences index: largest (smallest, for descending sequences) value
	seqFound []bool
}

// settleNotNull decides NOT NULL before the table is created, so that the
// COPY checks it on the way instead of a scan after it. Rows from the
// basebackup satisfy the NOT NULL its definition has; a column that
// receives NULLs from the changes (the source dropped NOT NULL after the
// basebackup) is restored without it. nulls says, by restored value index,
// which columns the changes' rows have NULLs in.
func (t *tableDef) settleNotNull(nulls []bool) []string {
	var warnings []string
	for k, c := range t.columns {
		if c.notNull && c.copyIdx >= 0 && nulls[c.copyIdx] {
			t.columns[k].notNull = false
			warnings = append(warnings, fmt.Sprintf("column %s is NOT NULL in the basebackup but NULL in rows changed since: restored without NOT NULL", schema.QuoteIdent(c.name)))
		}
	}
	return warnings
}

// keyStatement adds the primary key, after the rows are in.
func (t *tableDef) keyStatement() string {
	if t.primaryKey == "" {
		return ""
	}
	return "ALTER TABLE " + t.qualified() + " ADD " + t.primaryKey
}

// extraStatements are the constraints and indexes other than the primary
// key, one statement each.
func (t *tableDef) extraStatements() []string {
	var out []string
	for _, c := range t.constraints {
		out = append(out, "ALTER TABLE "+t.qualified()+" ADD "+c)
	}
	return append(out, t.indexes...)
}

// renameStatements give renamed columns their target names, through
// temporary names when the renames would collide.
func (t *tableDef) renameStatements() []string {
	works := make([]string, len(t.columns))
	names := make([]string, len(t.columns))
	for k, c := range t.columns {
		works[k], names[k] = c.work, c.name
	}
	out := t.renameColumns(works, names)
	for k := range t.columns {
		t.columns[k].work = t.columns[k].name
	}
	return out
}

// setvalStatements move owned sequences to the basebackup's value, or past
// the largest value restored in their column, whichever is further.
func (t *tableDef) setvalStatements(st *dataStats) []string {
	var out []string
	for i, s := range t.sequences {
		v, called := s.LastValue, s.IsCalled
		if st.seqFound[i] {
			m := st.seqMax[i]
			if (s.Increment > 0 && (m > v || (m == v && !called))) || (s.Increment < 0 && (m < v || (m == v && !called))) {
				v, called = m, true
			}
		}
		v = max(s.MinValue, min(s.MaxValue, v))
		ref := "pg_catalog.pg_get_serial_sequence(" + schema.QuoteLiteral(t.qualified()) + ", " + schema.QuoteLiteral(t.columns[s.col].name) + ")"
		out = append(out, fmt.Sprintf("SELECT pg_catalog.setval(%s, %d, %t)", ref, v, called))
	}
	return out
}
