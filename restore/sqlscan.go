package restore

// Reading the SQL text of the basebackup's definitions: which identifiers
// a constraint or index names, and an index statement rewritten for the
// restored table.

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

// mentions returns the names in set that sql uses as identifiers, or "".
// It errs on the side of finding a name: a function or keyword spelled
// like a dropped column also counts.
func mentions(sql string, set map[string]bool) string {
	if len(set) == 0 {
		return ""
	}
	var found []string
	for _, tok := range identTokens(sql) {
		if set[tok] {
			found = appendUnique(found, schema.QuoteIdent(tok))
		}
	}
	return strings.Join(found, ", ")
}

// identTokens returns the identifiers of an SQL text, unquoted: quoted
// identifiers as written, other words as they are (PostgreSQL's deparsed
// SQL prints identifiers that need no quotes in lower case). String
// literals are skipped.
func identTokens(sql string) []string {
	var out []string
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '\'':
			i++
			for i < len(sql) {
				if sql[i] == '\'' {
					if i+1 < len(sql) && sql[i+1] == '\'' {
						i += 2
						continue
					}
					break
				}
				i++
			}
			i++
		case c == '"':
			ident, n, ok := schema.ScanQuoted(sql[i:])
			if !ok { // unterminated: count the rest as the name, to err on the side of finding one
				ident, n = sql[i+1:], len(sql)-i
			}
			i += n
			out = append(out, ident)
		case isIdentStart(c):
			start := i
			for i < len(sql) && (isIdentStart(sql[i]) || (sql[i] >= '0' && sql[i] <= '9') || sql[i] == '$') {
				i++
			}
			out = append(out, sql[start:i])
		default:
			i++
		}
	}
	return out
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

// rewriteIndex makes a CREATE INDEX statement of the source table (as
// pg_get_indexdef prints it) create the index on table instead. Without
// keepName the index is unnamed, and PostgreSQL picks a free name. body is
// what follows the table name: the method, columns and predicate.
func rewriteIndex(stmt, table string, keepName bool) (out, name, body string, err error) {
	p := &sqlScanner{s: stmt}
	unique := false
	if !p.word("CREATE") {
		return "", "", "", fmt.Errorf("cannot read index definition %q", stmt)
	}
	if p.word("UNIQUE") {
		unique = true
	}
	if !p.word("INDEX") {
		return "", "", "", fmt.Errorf("cannot read index definition %q", stmt)
	}
	name, ok := p.ident()
	if !ok || !p.word("ON") {
		return "", "", "", fmt.Errorf("cannot read index definition %q", stmt)
	}
	p.word("ONLY")
	if _, ok := p.ident(); !ok {
		return "", "", "", fmt.Errorf("cannot read index definition %q", stmt)
	}
	if p.peek('.') {
		p.i++
		if _, ok := p.ident(); !ok {
			return "", "", "", fmt.Errorf("cannot read index definition %q", stmt)
		}
	}
	rest := strings.TrimSpace(stmt[p.i:])
	var b strings.Builder
	b.WriteString("CREATE ")
	if unique {
		b.WriteString("UNIQUE ")
	}
	b.WriteString("INDEX ")
	if keepName {
		b.WriteString(schema.QuoteIdent(name) + " ")
	}
	b.WriteString("ON " + table + " " + rest)
	return b.String(), schema.QuoteIdent(name), rest, nil
}

// sqlScanner reads the few tokens rewriteIndex needs.
type sqlScanner struct {
	s string
	i int
}

func (p *sqlScanner) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\n' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *sqlScanner) peek(c byte) bool {
	return p.i < len(p.s) && p.s[p.i] == c
}

// word consumes a keyword, case-insensitively, if it is next.
func (p *sqlScanner) word(w string) bool {
	p.skipSpace()
	end := p.i + len(w)
	if end > len(p.s) || !strings.EqualFold(p.s[p.i:end], w) {
		return false
	}
	if end < len(p.s) && (isIdentStart(p.s[end]) || (p.s[end] >= '0' && p.s[end] <= '9')) {
		return false
	}
	p.i = end
	return true
}

// ident consumes an identifier, quoted or not.
func (p *sqlScanner) ident() (string, bool) {
	p.skipSpace()
	if p.peek('"') {
		ident, n, ok := schema.ScanQuoted(p.s[p.i:])
		p.i += n
		return ident, ok
	}
	start := p.i
	for p.i < len(p.s) && (isIdentStart(p.s[p.i]) || (p.s[p.i] >= '0' && p.s[p.i] <= '9') || p.s[p.i] == '$') {
		p.i++
	}
	return p.s[start:p.i], p.i > start
}
