package restore

import (
	"fmt"
	"slices"
	"strings"

	"lbt/schema"
)

// A subset restore (Options.Where, Options.Columns) is the full restore
// with two things left to the target server, so that it equals the
// SELECT on the source at that moment by PostgreSQL's own rules rather
// than by a reimplementation of them:
//
//   - the predicate is the COPY's WHERE clause (PostgreSQL 12 and newer),
//     evaluated by the server on each row as it arrives, with the columns
//     under their names at the target moment; rows it rejects are never
//     stored;
//   - the columns not asked for are loaded with the others and dropped
//     before the commit (a drop is a change of the table's definition, not
//     a rewrite): the predicate, the key and the constraints may use them.
//
// The row count and the checksum are then those of the subset, computed
// by the server from the restored table.

// setSubset records a subset restore on the table: where is an SQL
// predicate, columns the names of the columns to keep (all when empty),
// source the table's name, for errors.
func (t *tableDef) setSubset(source, where string, columns []string) error {
	t.where = strings.TrimSpace(where)
	if len(columns) == 0 {
		return nil
	}
	t.keep = map[string]bool{}
	for _, name := range columns {
		k := t.columnByName(name)
		if k < 0 {
			return fmt.Errorf("--columns: %s had no column %s at the target moment; its columns were %s", source, schema.QuoteIdent(name), strings.Join(t.columnNames(), ", "))
		}
		t.keep[name] = true
	}
	return nil
}

// subset reports whether the restore keeps only some rows or columns.
func (t *tableDef) subset() bool { return t.where != "" || t.keep != nil }

func (t *tableDef) kept(c column) bool { return t.keep == nil || t.keep[c.name] }

func (t *tableDef) columnNames() []string {
	var out []string
	for _, c := range t.columns {
		out = append(out, schema.QuoteIdent(c.name))
	}
	return out
}

// subsetCopy is the COPY of a subset restore and the statements around
// it: the predicate names columns as they were named at the target, so
// columns renamed since the basebackup carry those names while it runs.
func (t *tableDef) subsetCopy(options string) (before []string, copyStmt string, after []string) {
	if t.where == "" {
		return nil, t.copyStatement() + options, nil
	}
	works := make([]string, len(t.columns))
	names := make([]string, len(t.columns))
	for k, c := range t.columns {
		works[k], names[k] = c.work, c.name
	}
	before = t.renameColumns(works, names)
	var cols []string
	for _, k := range t.copyCols {
		cols = append(cols, schema.QuoteIdent(t.columns[k].name))
	}
	copyStmt = "COPY " + t.qualified()
	if len(cols) > 0 {
		copyStmt += " (" + strings.Join(cols, ", ") + ")"
	}
	copyStmt += " FROM STDIN" + options + " WHERE " + t.where
	return before, copyStmt, t.renameColumns(names, works)
}

// dropStatement drops the columns --columns did not name, after the keys,
// constraints and sequence values that may use them are settled.
func (t *tableDef) dropStatement() string {
	if t.keep == nil {
		return ""
	}
	var drops []string
	for _, c := range t.columns {
		if !t.kept(c) {
			drops = append(drops, "DROP COLUMN "+schema.QuoteIdent(c.name))
		}
	}
	if len(drops) == 0 {
		return ""
	}
	return "ALTER TABLE " + t.qualified() + " " + strings.Join(drops, ", ")
}

// renameColumns renames the table's columns from their names in from to
// those in to (by tableDef.columns index), through temporary names when
// the renames would collide.
func (t *tableDef) renameColumns(from, to []string) []string {
	var renamed []int
	for k := range from {
		if from[k] != to[k] {
			renamed = append(renamed, k)
		}
	}
	collide := false
	for _, k := range renamed {
		if slices.Contains(from, to[k]) {
			collide = true
		}
	}
	cur := slices.Clone(from)
	var out []string
	rename := func(k int, name string) {
		out = append(out, fmt.Sprintf("ALTER TABLE %s RENAME COLUMN %s TO %s", t.qualified(), schema.QuoteIdent(cur[k]), schema.QuoteIdent(name)))
		cur[k] = name
	}
	if collide {
		for n, k := range renamed {
			rename(k, fmt.Sprintf("lbt_rename_%d", n))
		}
	}
	for _, k := range renamed {
		rename(k, to[k])
	}
	return out
}
