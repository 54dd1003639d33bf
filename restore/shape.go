package restore

import (
	"lbt/catalog"
	"lbt/schema"
)

// The shapes a table went through between its basebackup and the target,
// and where each restored column is in each of them.
//
// A table's known shapes form a chain ordered by position in the stream:
// the schema versions the stream reported before the basebackup, the
// basebackup's own definition, then the versions reported after it up to
// the target. The restored table takes the last shape of the chain.
// Consecutive shapes are matched column by column: by the source's attnum
// where both know it, else:
//
//   - a column of the later shape is the column of the same name in the
//     earlier one (ALTER COLUMN TYPE keeps the name: the old values are
//     read by the new type's input function);
//   - otherwise, a column that keeps its position and its type while its
//     name changes, the old name gone and the new one absent before, is
//     the same column renamed (RENAME COLUMN);
//   - otherwise it is new (ADD COLUMN): in rows from before it, NULL, or
//     the value PostgreSQL gives them after a fast default (ADD COLUMN
//     with a constant DEFAULT: pg_attribute.attmissingval, which the
//     shape that first has the column records).
//
// A column of the earlier shape that matches nothing was dropped.
// Matches compose along the chain, so that a column renamed twice is still
// followed.

// shapes is the result of matching the chain.
type shapes struct {
	target   schema.Table
	versions map[int]versionMap // by schema version number
	def      []int              // for each target column, its field in the basebackup, or -1
	// missing is, for each target column, what rows from a shape that lacks
	// it read: NULL, or the column's fast default.
	missing []value
	// retyped are the target columns that had another type (or typmod)
	// in an earlier shape: their older values are read by the new type's
	// input function, and the server's text of them may differ from the
	// archive's.
	retyped []string
}

// stepMatch matches the columns of shape b to those of the shape a before
// it: for each column of b, its position in a, or -1.
func stepMatch(a, b schema.Table) []int {
	out := make([]int, len(b.Columns))
	for j, c := range b.Columns {
		// Where both shapes know the source's attnums, they say it: the same
		// attnum is the same column, whatever its name and position, and a
		// column of the same name with another attnum was dropped and
		// added again.
		if c.AttNum != 0 {
			if i := attnumIndex(a, c.AttNum); i >= 0 {
				out[j] = i
				continue
			}
			if i := a.ColumnIndex(c.Name); i >= 0 && a.Columns[i].AttNum != 0 {
				out[j] = -1
				continue
			}
		}
		out[j] = a.ColumnIndex(c.Name)
		if out[j] >= 0 || j >= len(a.Columns) {
			continue
		}
		old := a.Columns[j]
		if old.TypeOID == c.TypeOID && old.TypeMod == c.TypeMod && b.ColumnIndex(old.Name) < 0 {
			out[j] = j
		}
	}
	return out
}

func attnumIndex(t schema.Table, attnum int16) int {
	for i, c := range t.Columns {
		if c.AttNum == attnum {
			return i
		}
	}
	return -1
}

// buildShapes orders the shapes known between the basebackup (at bbLSN, of
// definition def) and upto, and matches every one to the last.
func buildShapes(versions []catalog.SchemaVersion, def schema.Table, bbLSN, upto uint64) (*shapes, error) {
	type node struct {
		version int // 0 for the basebackup's definition
		table   schema.Table
	}
	var chain []node
	for _, v := range versions {
		if v.FromLSN < bbLSN {
			chain = append(chain, node{v.Version, v.Table})
		}
	}
	// The definition's JSON does not keep the replica identity: it is the
	// one of the version in force when the basebackup was taken.
	if def.ReplicaIdentity == 0 && len(versions) > 0 {
		def.ReplicaIdentity = versionAt(versions, bbLSN).ReplicaIdentity
	}
	chain = append(chain, node{0, def})
	for _, v := range versions {
		if v.FromLSN >= bbLSN && v.FromLSN <= upto {
			chain = append(chain, node{v.Version, v.Table})
		}
	}
	last := len(chain) - 1
	target := chain[last].table
	// to[k][j]: position in chain[k] of the target's column j.
	to := make([][]int, len(chain))
	to[last] = make([]int, len(target.Columns))
	for j := range to[last] {
		to[last][j] = j
	}
	for k := last - 1; k >= 0; k-- {
		step := stepMatch(chain[k].table, chain[k+1].table)
		to[k] = make([]int, len(target.Columns))
		for j, i := range to[k+1] {
			if i < 0 {
				to[k][j] = -1
			} else {
				to[k][j] = step[i]
			}
		}
	}
	s := &shapes{target: target, versions: make(map[int]versionMap), missing: make([]value, len(target.Columns))}
	for j, c := range target.Columns {
		// The shape in which the column first appears says what the rows
		// from before it read.
		first := -1
		for k := last; k >= 0 && to[k][j] >= 0; k-- {
			first = k
		}
		s.missing[j] = value{kind: catalog.ValueNull}
		if m := chain[first].table.Columns[to[first][j]]; m.HasMissing {
			s.missing[j] = value{kind: catalog.ValueText, data: []byte(m.Missing)}
		}
		for k := range chain {
			if i := to[k][j]; i >= 0 {
				if o := chain[k].table.Columns[i]; o.TypeOID != c.TypeOID || o.TypeMod != c.TypeMod {
					s.retyped = append(s.retyped, c.Name)
					break
				}
			}
		}
	}
	for k, n := range chain {
		if n.version == 0 {
			s.def = to[k]
			continue
		}
		key := make([]bool, len(n.table.Columns))
		for i, c := range n.table.Columns {
			key[i] = c.Key
		}
		s.versions[n.version] = versionMap{cols: to[k], key: key}
	}
	// A table can have no columns (all dropped, for example by DROP
	// DOMAIN ... CASCADE) and still have rows: they are restored as such.
	return s, nil
}

// keyColumns returns the restored table's key columns, or nil when rows
// have no key and are matched by their whole content (REPLICA IDENTITY FULL
// without a primary key: the stream marks every column) or never change
// (inserts only).
func keyColumns(t schema.Table) []int {
	if len(t.PrimaryKey) == 0 && t.ReplicaIdentity == 'f' {
		return nil
	}
	k := t.KeyColumns()
	if len(k) == 0 || (len(t.PrimaryKey) == 0 && len(k) == len(t.Columns)) {
		return nil
	}
	return k
}
