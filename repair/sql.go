package repair

import (
	"fmt"
	"strings"

	"lbt/inspect"
	"lbt/restore"
	"lbt/schema"
)

// Statements are written with the values in PostgreSQL's text form, as the
// archive holds them, each cast to its column's type (format_type on the
// source), so that they compare and convert as the column's own values do.
// A column whose type has no equality operator (json, xml, the geometric
// types, arrays of them) is compared by its text.

// textCompared are the built-in types without a usable equality operator
// (box's = compares areas), and arrays of them, by OID.
var textCompared = map[uint32]bool{
	114: true, 199: true, // json, json[]
	142: true, 143: true, // xml, xml[]
	600: true, 1017: true, // point
	601: true, 1018: true, // lseg
	602: true, 1019: true, // path
	603: true, 1020: true, // box
	604: true, 1027: true, // polygon
	628: true, 629: true, // line
	718: true, 719: true, // circle
}

// quoteLiteral writes s as an SQL string literal (standard_conforming_strings on).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// literal writes a value as a typed SQL literal.
func literal(f restore.Field, c schema.Column) string {
	if f.Null {
		return "NULL"
	}
	if c.TypeName == "" {
		return quoteLiteral(f.Text)
	}
	return quoteLiteral(f.Text) + "::" + c.TypeName
}

// typed reports whether every present column's type name is known, so
// that literals outside VALUES (in INSERT ... SELECT) get their types.
func (u *tableUndo) typed(present []bool) bool {
	for i, c := range u.cols {
		if present[i] && c.TypeName == "" {
			return false
		}
	}
	return true
}

func (u *tableUndo) isKey(i int) bool {
	for _, k := range u.key {
		if k == i {
			return true
		}
	}
	return false
}

// match is the condition that the row is exactly row: every present
// column compared, NULL-safe. Key columns (never NULL) are compared with =,
// so that the key's index finds the row.
func (u *tableUndo) match(row []restore.Field, present []bool) string {
	var conds []string
	for i, c := range u.cols {
		if !present[i] {
			continue
		}
		col := schema.QuoteIdent(c.Name)
		switch {
		case u.isKey(i) && !row[i].Null:
			conds = append(conds, col+" = "+literal(row[i], c))
		case textCompared[c.TypeOID] && !row[i].Null:
			conds = append(conds, col+"::text IS NOT DISTINCT FROM "+quoteLiteral(row[i].Text))
		default:
			conds = append(conds, col+" IS NOT DISTINCT FROM "+literal(row[i], c))
		}
	}
	return strings.Join(conds, " AND ")
}

// keyMatch is the condition that the row has row's key.
func (u *tableUndo) keyMatch(row []restore.Field) string {
	var conds []string
	for _, k := range u.key {
		conds = append(conds, schema.QuoteIdent(u.cols[k].Name)+" = "+literal(row[k], u.cols[k]))
	}
	return strings.Join(conds, " AND ")
}

func (u *tableUndo) columnList(present []bool) string {
	var names []string
	for i, c := range u.cols {
		if present[i] {
			names = append(names, schema.QuoteIdent(c.Name))
		}
	}
	return strings.Join(names, ", ")
}

func (u *tableUndo) values(row []restore.Field, present []bool) string {
	var vals []string
	for i, c := range u.cols {
		if present[i] {
			vals = append(vals, literal(row[i], c))
		}
	}
	return strings.Join(vals, ", ")
}

// insert writes a plain INSERT of row. OVERRIDING SYSTEM VALUE puts back
// the values of identity columns GENERATED ALWAYS as they were.
func (u *tableUndo) insert(row []restore.Field, present []bool) string {
	return fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE VALUES (%s)", u.name, u.columnList(present), u.values(row, present))
}

// keyText names a row by its key, as lbt inspect history --key takes it.
func (u *tableUndo) keyText(row []restore.Field) string {
	m := map[string]string{}
	for _, k := range u.key {
		m[u.cols[k].Name] = row[k].Text
	}
	return inspect.FormatKey(m)
}

// keyedStatement writes the reversal of one row change of a keyed table.
func (u *tableUndo) keyedStatement(tx *Tx, c rowChange) Statement {
	s := Statement{Tx: tx, Table: u.name, Rows: 1}
	switch {
	case c.before == nil: // inserted: delete it again
		s.Op, s.Key = "DELETE", u.keyText(c.after)
		s.SQL = fmt.Sprintf("DELETE FROM %s WHERE %s", u.name, u.match(c.after, c.present))
		s.Forced[0] = fmt.Sprintf("DELETE FROM %s WHERE %s", u.name, u.keyMatch(c.after))
		return s
	case c.after == nil: // deleted: insert the old row, if no row has its key
		s.Op, s.Key = "INSERT", u.keyText(c.before)
		if u.typed(c.present) {
			s.SQL = fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s WHERE NOT EXISTS (SELECT 1 FROM %s WHERE %s)",
				u.name, u.columnList(c.present), u.values(c.before, c.present), u.name, u.keyMatch(c.before))
		} else {
			s.SQL = u.insert(c.before, c.present) + " ON CONFLICT DO NOTHING"
		}
	default: // updated: back to the old image
		s.Op, s.Key = "UPDATE", u.keyText(c.before)
		var set []string
		for i, col := range u.cols {
			if c.present[i] && c.before[i] != c.after[i] {
				set = append(set, schema.QuoteIdent(col.Name)+" = "+literal(c.before[i], col))
			}
		}
		s.SQL = fmt.Sprintf("UPDATE %s SET %s WHERE %s", u.name, strings.Join(set, ", "), u.match(c.after, c.present))
	}
	// Forced: the old image by key, whatever the row is now, or inserted
	// when the row is gone.
	var set []string
	for i, col := range u.cols {
		if c.present[i] && !u.isKey(i) {
			set = append(set, schema.QuoteIdent(col.Name)+" = "+literal(c.before[i], col))
		}
	}
	if len(set) == 0 {
		s.Forced[0] = fmt.Sprintf("SELECT 1 FROM %s WHERE %s", u.name, u.keyMatch(c.before))
	} else {
		s.Forced[0] = fmt.Sprintf("UPDATE %s SET %s WHERE %s", u.name, strings.Join(set, ", "), u.keyMatch(c.before))
	}
	s.Forced[1] = u.insert(c.before, c.present)
	return s
}

// multisetStatement writes the reversal of a change to copies of one row
// of a table without a key, and checks it against counts, the copies of
// each row now, which it updates.
func (u *tableUndo) multisetStatement(tx *Tx, c rowChange, counts map[string]int) Statement {
	s := Statement{Tx: tx, Table: u.name}
	if c.delta < 0 { // added: delete that many copies
		n := -c.delta
		s.Op, s.Key, s.Rows = "DELETE", u.rowText(c.after), int64(n)
		s.SQL = fmt.Sprintf("DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s WHERE %s LIMIT %d))", u.name, u.name, u.match(c.after, c.present), n)
		s.Forced[0] = s.SQL
		if counts[c.key] < n {
			s.Conflict = &Conflict{Tx: tx, Table: u.name, Key: s.Key,
				Later: fmt.Sprintf("a later transaction (%d of the %d copies are left; the table has no key: lbt inspect history --table %s lists its changes)", counts[c.key], n, u.name)}
			return s
		}
		counts[c.key] -= n
		return s
	}
	// removed: insert that many copies again
	s.Op, s.Key, s.Rows = "INSERT", u.rowText(c.before), int64(c.delta)
	rows := make([]string, c.delta)
	for i := range rows {
		rows[i] = "(" + u.values(c.before, c.present) + ")"
	}
	s.SQL = fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE VALUES %s", u.name, u.columnList(c.present), strings.Join(rows, ", "))
	s.Forced[0] = s.SQL
	counts[c.key] += c.delta
	return s
}

// rowText names a row of a table without a key by its values.
func (u *tableUndo) rowText(row []restore.Field) string {
	m := map[string]string{}
	for i, c := range u.cols {
		if row[i].Null {
			m[c.Name] = "NULL"
			continue
		}
		m[c.Name] = row[i].Text
	}
	return "row " + inspect.FormatKey(m)
}
