package inspect

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"lbt/catalog"
	"lbt/schema"
)

// keyPart is one column=value of a --key.
type keyPart struct {
	name   string // as written, quotes removed; empty for the shorthand --key 42
	quoted bool   // the name was in double quotes: match it exactly
	value  string
}

// parseKey reads a row key written as col=value[,col=value...]. Names and
// values may be in double quotes, with "" for a quote inside, so that they
// can hold commas, equals signs or spaces; bare names fold to lower case
// as in SQL. A single bare value stands for the value of a one-column key.
func parseKey(s string) ([]keyPart, error) {
	bad := func(format string, args ...any) error {
		return inputErrorf("--key %q: %s (write it like 'id=42' or 'a=1,b=\"x,y\"')", s, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(s) == "" {
		return nil, bad("empty key")
	}
	var parts []keyPart
	i := 0
	for {
		first, firstQuoted, n, err := keyToken(s[i:], "=,")
		if err != nil {
			return nil, bad("%v", err)
		}
		i += n
		var p keyPart
		if i < len(s) && s[i] == '=' {
			if first == "" && !firstQuoted {
				return nil, bad("column name missing before '='")
			}
			i++
			value, _, n, err := keyToken(s[i:], ",=")
			if err != nil {
				return nil, bad("%v", err)
			}
			i += n
			if i < len(s) && s[i] == '=' {
				return nil, bad("'=' in the value of %s: put the value in double quotes", first)
			}
			p = keyPart{name: first, quoted: firstQuoted, value: value}
		} else {
			p = keyPart{value: first}
		}
		parts = append(parts, p)
		if i == len(s) {
			break
		}
		i++ // the comma
		if strings.TrimSpace(s[i:]) == "" {
			return nil, bad("nothing after the last comma")
		}
	}
	if len(parts) > 1 {
		for _, p := range parts {
			if p.name == "" && !p.quoted {
				return nil, bad("value %q has no column name", p.value)
			}
		}
	}
	for i, p := range parts {
		for _, q := range parts[:i] {
			if p.name != "" && q.name == p.name && q.quoted == p.quoted {
				return nil, bad("column %s given twice", p.name)
			}
		}
	}
	return parts, nil
}

// keyToken reads a bare or double-quoted token up to one of the stop bytes
// or the end, and returns it with the bytes consumed. Spaces around a bare
// token are dropped.
func keyToken(s, stops string) (tok string, quoted bool, n int, err error) {
	i := 0
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i < len(s) && s[i] == '"' {
		text, n, ok := schema.ScanQuoted(s[i:])
		if !ok {
			return "", false, 0, fmt.Errorf("unterminated double quote")
		}
		i += n
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i < len(s) && !strings.ContainsRune(stops, rune(s[i])) {
			return "", false, 0, fmt.Errorf("unexpected %q after a quoted token", s[i])
		}
		return text, true, i, nil
	}
	start := i
	for i < len(s) && !strings.ContainsRune(stops, rune(s[i])) {
		if s[i] == '"' {
			return "", false, 0, fmt.Errorf("double quote inside a bare token: quote the whole value")
		}
		i++
	}
	return strings.TrimSpace(s[start:i]), false, i, nil
}

// rowKey is a key resolved against a table: values by column name.
type rowKey map[string]string

func (k rowKey) String() string {
	names := make([]string, 0, len(k))
	for n := range k {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = schema.QuoteIdent(n) + "=" + quoteKeyValue(k[n])
	}
	return strings.Join(parts, ",")
}

func quoteKeyValue(v string) string {
	if v == "" || strings.ContainsAny(v, `,="`) || strings.TrimSpace(v) != v {
		return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
	}
	return v
}

func (k rowKey) equal(o rowKey) bool {
	if len(k) != len(o) {
		return false
	}
	for n, v := range k {
		if w, ok := o[n]; !ok || w != v {
			return false
		}
	}
	return true
}

// keyColumnNames returns the names of a definition's key columns.
func keyColumnNames(t schema.Table) []string {
	var names []string
	for _, i := range t.KeyColumns() {
		names = append(names, t.Columns[i].Name)
	}
	return names
}

// resolveKey maps the parts of a --key onto the key columns of a table's
// definitions, newest first. The key must name every key column of at
// least one definition.
func resolveKey(parts []keyPart, t *table) (rowKey, error) {
	newest := t.versions[len(t.versions)-1].Table
	keyCols := keyColumnNames(newest)
	if len(keyCols) == 0 {
		return nil, inputErrorf("table %s has no primary key or replica identity key, so rows have no key to look up: use lbt inspect changes --table %s", t.name, t.name)
	}
	example := func() string {
		var ex []string
		for _, c := range keyCols {
			ex = append(ex, schema.QuoteIdent(c)+"="+sampleKeyValue(newest.Columns[newest.ColumnIndex(c)].TypeOID))
		}
		return "'" + strings.Join(ex, ",") + "'"
	}
	if len(parts) == 1 && parts[0].name == "" && !parts[0].quoted {
		v := parts[0].value
		if newest.ColumnIndex(v) >= 0 || newest.ColumnIndex(strings.ToLower(v)) >= 0 {
			// --key id: a column name without a value, not the value "id".
			return nil, inputErrorf("--key %s names a column but gives no value: give --key %s", quoteKeyValue(v), example())
		}
		if len(keyCols) != 1 {
			return nil, inputErrorf("--key: the key of %s has %d columns (%s): give --key %s", t.name, len(keyCols), strings.Join(keyCols, ", "), example())
		}
		k := rowKey{keyCols[0]: v}
		if err := checkKeyValues(k, newest, t.name); err != nil {
			return nil, inputErrorf("--key: %v: give --key %s", err, example())
		}
		return k, nil
	}
	var firstErr error
	for i := len(t.versions) - 1; i >= 0; i-- {
		def := t.versions[i].Table
		k, err := matchKey(parts, def, t.name)
		if err == nil {
			err = checkKeyValues(k, def, t.name)
		}
		if err == nil {
			return k, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, inputErrorf("--key: %v: give --key %s", firstErr, example())
}

// Type OIDs of the built-in types whose key values checkKeyValues reads.
const (
	oidBool    = 16
	oidInt8    = 20
	oidInt2    = 21
	oidInt4    = 23
	oidOID     = 26
	oidNumeric = 1700
)

// sampleKeyValue is a value of the type for the examples of error messages.
func sampleKeyValue(typeOID uint32) string {
	switch typeOID {
	case oidInt2, oidInt4, oidInt8, oidOID, oidNumeric:
		return "42"
	case oidBool:
		return "true"
	}
	return "..."
}

// checkKeyValues checks the values of k against the types of def's key
// columns, and writes integers and booleans in the text form PostgreSQL
// outputs, which is what the archive holds and what rows are matched by: a
// value no row of that type can have is an error, not a row that never
// changed. Other types are matched as written.
func checkKeyValues(k rowKey, def schema.Table, name string) error {
	for col, v := range k {
		i := def.ColumnIndex(col)
		if i < 0 {
			continue
		}
		c := def.Columns[i]
		typ := c.TypeName
		if typ == "" {
			typ = "of type " + strconv.FormatUint(uint64(c.TypeOID), 10)
		}
		switch c.TypeOID {
		case oidInt2, oidInt4, oidInt8, oidOID:
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return fmt.Errorf("column %s of %s is %s, and %s is not an integer", schema.QuoteIdent(col), name, typ, quoteKeyValue(v))
			}
			k[col] = strconv.FormatInt(n, 10)
		case oidNumeric:
			// numeric reaches beyond float64: a value out of its range is
			// still a number.
			if _, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil && !errors.Is(err, strconv.ErrRange) {
				return fmt.Errorf("column %s of %s is %s, and %s is not a number", schema.QuoteIdent(col), name, typ, quoteKeyValue(v))
			}
		case oidBool:
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "t", "true", "yes", "on", "1":
				k[col] = "t"
			case "f", "false", "no", "off", "0":
				k[col] = "f"
			default:
				return fmt.Errorf("column %s of %s is %s, and %s is not a boolean", schema.QuoteIdent(col), name, typ, quoteKeyValue(v))
			}
		}
	}
	return nil
}

// matchKey resolves parts against one definition of the table called name.
func matchKey(parts []keyPart, def schema.Table, name string) (rowKey, error) {
	keyCols := keyColumnNames(def)
	key := "(" + strings.Join(keyCols, ", ") + ")"
	k := make(rowKey, len(parts))
	for _, p := range parts {
		col := p.name
		if !p.quoted && def.ColumnIndex(col) < 0 && def.ColumnIndex(strings.ToLower(col)) >= 0 {
			col = strings.ToLower(col)
		}
		if def.ColumnIndex(col) < 0 {
			return nil, fmt.Errorf("table %s has no column %s; its key is %s", name, schema.QuoteIdent(col), key)
		}
		if !slices.Contains(keyCols, col) {
			return nil, fmt.Errorf("column %s is not in the key %s of %s", schema.QuoteIdent(col), key, name)
		}
		if _, dup := k[col]; dup {
			return nil, fmt.Errorf("column %s given twice", schema.QuoteIdent(col))
		}
		k[col] = p.value
	}
	if len(k) != len(keyCols) {
		var missing []string
		for _, c := range keyCols {
			if _, ok := k[c]; !ok {
				missing = append(missing, schema.QuoteIdent(c))
			}
		}
		return nil, fmt.Errorf("the key %s of %s needs %s too", key, name, strings.Join(missing, ", "))
	}
	return k, nil
}

// keyHashes returns the row-key index hashes of a key under every definition of
// the table whose key columns it names, and whether each of those
// definitions can be looked up by hash at all.
func keyHashes(k rowKey, versions []catalog.SchemaVersion) (hashes []int64, indexed bool) {
	indexed = true
	for _, v := range versions {
		idx := v.KeyColumns()
		if len(idx) != len(k) {
			continue
		}
		vals := make([][]byte, 0, len(idx))
		for _, i := range idx {
			val, ok := k[v.Columns[i].Name]
			if !ok {
				break
			}
			vals = append(vals, []byte(val))
		}
		if len(vals) != len(idx) {
			continue
		}
		if !slices.IsSorted(idx) {
			// Ingest hashes key columns in column order and records no
			// hash for a key whose columns are in another order.
			indexed = false
		}
		h := catalog.KeyHash(vals)
		if !slices.Contains(hashes, h) {
			hashes = append(hashes, h)
		}
	}
	return hashes, indexed
}

// tupleKey returns the key of a tuple under its definition, or nil when a
// key column is missing or NULL.
func tupleKey(v *version, t catalog.Tuple) rowKey {
	if len(v.keyIdx) == 0 {
		return nil
	}
	k := make(rowKey, len(v.keyIdx))
	for _, i := range v.keyIdx {
		if i >= len(t) || t[i].Kind != catalog.ValueText {
			return nil
		}
		k[v.columns[i]] = string(t[i].Data)
	}
	return k
}

// tupleHasKey reports whether a tuple's key equals k, without allocating.
func tupleHasKey(v *version, t catalog.Tuple, k rowKey) bool {
	if len(v.keyIdx) != len(k) {
		return false
	}
	for _, i := range v.keyIdx {
		if i >= len(t) || t[i].Kind != catalog.ValueText {
			return false
		}
		if want, ok := k[v.columns[i]]; !ok || want != string(t[i].Data) {
			return false
		}
	}
	return true
}
