package restore

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

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

// column is one column of the restored table.
type column struct {
	name      string // at the target
	work      string // while loading: the basebackup's name, or a fresh one
	typ       string
	collation string
	notNull   bool
	dflt      string
	identity  string // "a", "d" or ""
	generated string // expression of a stored generated column
	copyIdx   int    // position in the COPY column list (= restored value index), -1 for generated
	fromDef   bool   // the column existed when the basebackup was taken
}

// sequence is a sequence owned by a restored column.
type sequence struct {
	schema.Sequence
	col      int // index in tableDef.columns
	identity bool
	// the restored serial column's sequence (not for identity columns,
	// whose sequence comes with the column)
	nsp, rel string
}

func (s *sequence) qualified() string {
	return schema.QuoteIdent(s.nsp) + "." + schema.QuoteIdent(s.rel)
}

// tableDef is everything needed to create the restored table.
type tableDef struct {
	schema, name string // target, unquoted
	columns      []column
	copyCols     []int // tableDef.columns index of each restored value
	primaryKey   string
	constraints  []string // ALTER TABLE ... ADD clauses
	indexes      []string // CREATE INDEX statements
	sequences    []sequence
	userTypes    []string // user-defined types the columns use that the restore does not create
	typesBefore  []string // create the extensions and types the table needs (typeStatements)
	typesAfter   []string // after the data: the NOT VALID checks of domains created
	types        schema.Definition
	source       *schema.Source
	where        string          // a subset restore's predicate (subset.go)
	keep         map[string]bool // a subset restore's columns, by target name; nil for all
	retyped      []string        // columns whose older values the server converts (shapes.retyped)
	warnings     []string
}

// ddlInput is what newTableDef needs.
type ddlInput struct {
	shapes     *shapes
	def        schema.Definition
	seqs       []schema.Sequence
	schemaName string // target
	name       string // target
	keepNames  bool   // the target is the table's own name: keep constraint, index and sequence names
}

func (t *tableDef) qualified() string {
	return schema.QuoteIdent(t.schema) + "." + schema.QuoteIdent(t.name)
}

func newTableDef(in ddlInput) (*tableDef, error) {
	td := &tableDef{schema: in.schemaName, name: in.name, source: in.def.Source, retyped: in.shapes.retyped, types: in.def}
	td.typesBefore, td.typesAfter = typeStatements(in.def)
	// A definition written before format version 3 does not record the
	// types: they must exist in the target. Columns added since the
	// basebackup may use types it does not have.
	recorded := in.def.Source != nil
	td.userTypes = uncreatableTypes(in.def)
	target := in.shapes.target
	defCols := in.def.Table.Columns

	// The basebackup's column definitions by name.
	full := map[string]schema.ColumnDef{}
	for _, c := range in.def.Columns {
		full[c.Name] = c
	}
	// Which basebackup columns are gone, and which changed type.
	kept := map[string]bool{}
	gone := map[string]bool{}
	for j, i := range in.shapes.def {
		if i >= 0 {
			kept[defCols[i].Name] = true
			d, t := defCols[i], target.Columns[j]
			if d.TypeOID != t.TypeOID || d.TypeMod != t.TypeMod {
				gone[d.Name] = true
			}
		}
	}
	for _, c := range defCols {
		if !kept[c.Name] {
			gone[c.Name] = true
		}
	}

	// Working names: the basebackup's for its columns; new columns keep
	// their target names unless one is taken.
	used := map[string]bool{}
	for _, c := range in.def.Columns {
		used[c.Name] = true
	}
	// Generated columns follow the basebackup column they followed.
	genAfter := map[string][]schema.ColumnDef{} // "" = first
	prev := ""
	for _, c := range in.def.Columns {
		if c.Generated != "" {
			genAfter[prev] = append(genAfter[prev], c)
			continue
		}
		prev = c.Name
	}
	addGenerated := func(after string) {
		for _, g := range genAfter[after] {
			if names := mentions(g.Generated, gone); names != "" {
				td.warnings = append(td.warnings, fmt.Sprintf("generated column %s left out: its expression uses %s, dropped or changed since the basebackup", schema.QuoteIdent(g.Name), names))
				continue
			}
			td.columns = append(td.columns, column{name: g.Name, work: g.Name, typ: g.Type, collation: g.Collation,
				notNull: g.NotNull, generated: g.Generated, copyIdx: -1, fromDef: true})
		}
	}
	addGenerated("")
	for j, tc := range target.Columns {
		c := column{name: tc.Name, work: tc.Name, typ: tc.TypeName, copyIdx: j}
		if i := in.shapes.def[j]; i >= 0 {
			d := full[defCols[i].Name]
			c.work, c.fromDef = d.Name, true
			c.notNull = d.NotNull
			if !gone[d.Name] {
				c.typ, c.collation, c.dflt, c.identity = d.Type, d.Collation, d.Default, d.Identity
			}
		} else {
			// Added since the basebackup: NOT NULL and DEFAULT as the stream's
			// description read them on the source. A nextval() default would
			// take numbers from the original's sequence: left out.
			c.notNull = tc.NotNull
			if !strings.Contains(tc.Default, "nextval(") {
				c.dflt = tc.Default
			}
			if used[c.work] {
				for n := 1; used[c.work]; n++ {
					c.work = fmt.Sprintf("%s_lbt_new%d", tc.Name, n)
				}
			}
		}
		used[c.work] = true
		if c.typ == "" {
			return nil, fmt.Errorf("the archive has no type name for column %s of %s (schema versions recorded before type names were kept): take a new basebackup", schema.QuoteIdent(tc.Name), target.QualifiedName())
		}
		if tc.TypeOID >= firstNormalObjectID && (!c.fromDef || !recorded) {
			td.userTypes = appendUnique(td.userTypes, c.typ)
		}
		td.copyCols = append(td.copyCols, len(td.columns))
		td.columns = append(td.columns, c)
		if c.fromDef {
			addGenerated(c.work)
		}
	}

	// Owned sequences.
	for _, s := range in.seqs {
		col := -1
		for k, c := range td.columns {
			if c.fromDef && c.work == s.Column && c.generated == "" {
				col = k
			}
		}
		if col < 0 || gone[s.Column] {
			td.warnings = append(td.warnings, fmt.Sprintf("sequence %s left out: its column %s was dropped or changed since the basebackup", s.Name, schema.QuoteIdent(s.Column)))
			continue
		}
		seq := sequence{Sequence: s, col: col, identity: td.columns[col].identity != ""}
		// A serial column made an identity column later still owns its
		// serial sequence, which nothing uses: only the identity's own
		// sequence comes along (recorded since format version 3; before,
		// the first one of the column).
		if seq.identity && (identitySeq(in.seqs, s.Column) && !s.Identity || td.hasIdentitySequence(col)) {
			td.warnings = append(td.warnings, fmt.Sprintf("sequence %s left out: column %s is an identity column, with a sequence of its own", s.Name, schema.QuoteIdent(td.columns[col].name)))
			continue
		}
		if !seq.identity {
			seq.nsp, seq.rel = td.schema, withSuffix(td.name+"_"+td.columns[col].name, "_seq")
			if in.keepNames {
				nsp, rel, err := schema.ParseName(s.Name)
				if err != nil {
					return nil, fmt.Errorf("basebackup sequence %q: %w", s.Name, err)
				}
				seq.nsp, seq.rel = nsp, rel
			}
		}
		td.sequences = append(td.sequences, seq)
		if !seq.identity {
			td.renameSequence(len(td.sequences)-1, seq.rel)
		}
	}
	// A default that takes values from a sequence the table does not own
	// (or owned, but left out) would not exist in another database.
	for k, c := range td.columns {
		if strings.HasPrefix(c.dflt, "nextval(") && !td.ownsSequence(k) {
			td.warnings = append(td.warnings, fmt.Sprintf("default of column %s kept as it was: %s", schema.QuoteIdent(c.name), c.dflt))
		}
	}

	// Primary key: the target's, by working names; the basebackup's own
	// text (which may have INCLUDE columns) when it is the same key.
	if len(target.PrimaryKey) > 0 {
		work := td.workNames(target.PrimaryKey)
		if len(work) != len(target.PrimaryKey) {
			return nil, fmt.Errorf("a primary key column of %s is not among its columns", target.QualifiedName())
		}
		var cols []string
		for _, n := range work {
			cols = append(cols, schema.QuoteIdent(n))
		}
		pk := "PRIMARY KEY (" + strings.Join(cols, ", ") + ")"
		for _, c := range in.def.Constraints {
			if !strings.HasPrefix(c.Def, "PRIMARY KEY") {
				continue
			}
			if sameNames(in.def.Table.PrimaryKey, work) && mentions(c.Def, gone) == "" {
				pk = c.Def
			}
			if in.keepNames {
				pk = "CONSTRAINT " + schema.QuoteIdent(c.Name) + " " + pk
			}
		}
		td.primaryKey = pk
	}
	for _, c := range in.def.Constraints {
		if strings.HasPrefix(c.Def, "PRIMARY KEY") {
			continue
		}
		if names := mentions(c.Def, gone); names != "" {
			td.warnings = append(td.warnings, fmt.Sprintf("constraint %s left out: it uses %s, dropped or changed since the basebackup", schema.QuoteIdent(c.Name), names))
			continue
		}
		clause := c.Def
		if in.keepNames {
			clause = "CONSTRAINT " + schema.QuoteIdent(c.Name) + " " + clause
		}
		td.constraints = append(td.constraints, clause)
	}
	for _, ix := range in.def.Indexes {
		stmt, name, body, err := rewriteIndex(ix, td.qualified(), in.keepNames)
		if err != nil {
			td.warnings = append(td.warnings, fmt.Sprintf("index left out: %v", err))
			continue
		}
		if names := mentions(body, gone); names != "" {
			td.warnings = append(td.warnings, fmt.Sprintf("index %s left out: it uses %s, dropped or changed since the basebackup", name, names))
			continue
		}
		td.indexes = append(td.indexes, stmt)
	}
	return td, nil
}

// firstNormalObjectID is PostgreSQL's first OID for user objects.
const firstNormalObjectID = 16384

func (t *tableDef) columnByName(name string) int {
	for k, c := range t.columns {
		if c.name == name {
			return k
		}
	}
	return -1
}

func (t *tableDef) workNames(names []string) []string {
	var out []string
	for _, n := range names {
		if k := t.columnByName(n); k >= 0 {
			out = append(out, t.columns[k].work)
		}
	}
	return out
}

// identitySeq reports whether one of seqs is marked as the identity
// sequence of column.
func identitySeq(seqs []schema.Sequence, column string) bool {
	for _, s := range seqs {
		if s.Column == column && s.Identity {
			return true
		}
	}
	return false
}

func (t *tableDef) hasIdentitySequence(col int) bool {
	for _, s := range t.sequences {
		if s.col == col && s.identity {
			return true
		}
	}
	return false
}

func (t *tableDef) ownsSequence(col int) bool {
	for _, s := range t.sequences {
		if s.col == col && !s.identity {
			return true
		}
	}
	return false
}

func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// defaultTargetName is the name a restore gets beside the original:
// <table>_restored_<YYYYMMDDHHMMSS> of the target moment, in UTC, within
// PostgreSQL's 63 bytes.
func defaultTargetName(table string, at time.Time) string {
	suffix := "_restored_" + at.UTC().Format("20060102150405")
	return withSuffix(table, suffix)
}

// withSuffix appends suffix to name, shortening name to keep the result
// within 63 bytes.
func withSuffix(name, suffix string) string {
	n := 63 - len(suffix)
	if len(name) > n {
		for n > 0 && !utf8.RuneStart(name[n]) {
			n--
		}
		name = name[:n]
	}
	return name + suffix
}
