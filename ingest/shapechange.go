package ingest

import (
	"fmt"
	"strings"

	"lbt/schema"
	"lbt/source"
)

// inexactChange compares a table's new description with the one before it
// and says why the rows on the source may now differ from what the stream
// carried, or "" when the new shape follows exactly from the old one. The
// stream carries no rewrite of existing rows: an ALTER COLUMN TYPE (with or
// without USING), an ADD COLUMN whose volatile default gives every row its
// own value, a column dropped and added again under its name (a constant
// default is PostgreSQL's fast default: no rewrite, and the value older
// rows read is in the description). Anything not
// proven exact is reported: a new relfilenode that no TRUNCATE the stream
// carried made (truncXid is the xid of the last one since the old
// description, 0 for none) means the rows were rewritten.
//
// The descriptions are read on the source when the stream reaches a
// Relation message, so the new one may already show a later change: that
// is reported here, earlier than it happened, which only makes the span
// longer.
func inexactChange(old, cur schema.Table, oldSt, curSt source.Storage, truncXid uint32) string {
	var reasons []string
	name := cur.QualifiedName()
	rewritten := oldSt.Relfilenode != 0 && curSt.Relfilenode != 0 && oldSt.Relfilenode != curSt.Relfilenode
	byAttnum := map[int16]schema.Column{}
	for _, o := range old.Columns {
		if o.AttNum != 0 {
			byAttnum[o.AttNum] = o
		}
	}
	for _, c := range cur.Columns {
		o, found := columnNamed(old, c.Name)
		switch {
		case found && o.AttNum != 0 && c.AttNum != 0 && o.AttNum != c.AttNum:
			reasons = append(reasons, fmt.Sprintf("column %s was dropped and added again, which the stream does not carry for the existing rows of %s", schema.QuoteIdent(c.Name), name))
		case found && (o.TypeOID != c.TypeOID || o.TypeMod != c.TypeMod):
			reasons = append(reasons, fmt.Sprintf("ALTER TABLE changed the type of column %s from %s to %s and rewrote the rows of %s, which the stream does not carry",
				schema.QuoteIdent(c.Name), typeName(o), typeName(c), name))
		case found:
		case c.AttNum != 0 && byAttnum[c.AttNum].Name != "":
			// The same column renamed.
			if o := byAttnum[c.AttNum]; o.TypeOID != c.TypeOID || o.TypeMod != c.TypeMod {
				reasons = append(reasons, fmt.Sprintf("ALTER TABLE renamed column %s to %s, changed its type from %s to %s and rewrote the rows of %s, which the stream does not carry",
					schema.QuoteIdent(o.Name), schema.QuoteIdent(c.Name), typeName(o), typeName(c), name))
			}
		case rewritten && !c.HasMissing:
			// A new column with a fast default (atthasmissing) is exact: the
			// description records the value older rows read, and restore
			// gives it to them. Without one, a rewrite means a volatile
			// default.
			reasons = append(reasons, fmt.Sprintf("ALTER TABLE added column %s with a volatile default and rewrote the rows of %s with values the stream does not carry", schema.QuoteIdent(c.Name), name))
		}
	}
	if len(reasons) == 0 && rewritten && (truncXid == 0 || curSt.Xmin != truncXid) {
		reasons = append(reasons, fmt.Sprintf("the rows of %s were rewritten (VACUUM FULL, CLUSTER, or an ALTER TABLE that rewrites rows), which the stream does not carry", name))
	}
	return strings.Join(reasons, "; ")
}

func columnNamed(t schema.Table, name string) (schema.Column, bool) {
	if i := t.ColumnIndex(name); i >= 0 {
		return t.Columns[i], true
	}
	return schema.Column{}, false
}

func typeName(c schema.Column) string {
	if c.TypeName != "" {
		return c.TypeName
	}
	return fmt.Sprintf("type %d", c.TypeOID)
}
