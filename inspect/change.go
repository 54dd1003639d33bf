package inspect

import (
	"slices"
	"time"

	"lbt/catalog"
	"lbt/schema"
)

// ValueKind says what a reported column value is.
type ValueKind byte

const (
	// Unknown: the archive does not hold the value, like the old values of
	// the first archived UPDATE of a row whose table has no REPLICA
	// IDENTITY FULL.
	Unknown ValueKind = iota
	Null
	Text
	// Unchanged: a TOASTed value the update did not touch; the stream does
	// not send it again.
	Unchanged
)

// Value is one column's value as PostgreSQL writes it in text form.
type Value struct {
	Kind ValueKind
	Text string
}

func (v Value) known() bool { return v.Kind == Null || v.Kind == Text }

func (v Value) same(o Value) bool { return v.Kind == o.Kind && v.Text == o.Text }

// Operations of a Change.
const (
	OpInsert   = "INSERT"
	OpUpdate   = "UPDATE"
	OpDelete   = "DELETE"
	OpTruncate = "TRUNCATE"
	OpMessage  = "MESSAGE"
)

// Change is one change to one row (or a TRUNCATE of its table, or a
// logical message) with the transaction that made it.
type Change struct {
	Time    time.Time
	Xid     uint32
	LSN     uint64 // commit LSN of the transaction
	Table   string // qualified SQL name; empty for a message
	Op      string // OpInsert, OpUpdate, OpDelete, OpTruncate or OpMessage
	Columns []string
	Key     map[string]string // the row's key after the change (before it, for a DELETE)
	Before  []Value           // one per column; nil when the row did not exist before
	After   []Value           // one per column; nil when it does not exist after
	Changed []string          // columns an UPDATE changed, where the old value is known
	Note    string            // such as a key change or the TRUNCATE options
	Actor   Actor
	Prefix  string // of a message
	Content string // of a message
}

// tupleValues converts a tuple to report values. For an old tuple of kind
// 'K', columns outside the key are absent rather than NULL.
func tupleValues(v *version, t catalog.Tuple, keyOnly bool) []Value {
	if t == nil {
		return nil
	}
	out := make([]Value, len(v.columns))
	for i := range out {
		if i >= len(t) || (keyOnly && !slices.Contains(v.keyIdx, i)) {
			continue
		}
		switch t[i].Kind {
		case catalog.ValueNull:
			out[i] = Value{Kind: Null}
		case catalog.ValueUnchanged:
			out[i] = Value{Kind: Unchanged}
		default:
			out[i] = Value{Kind: Text, Text: string(t[i].Data)}
		}
	}
	return out
}

func columnNames(def schema.Table) []string {
	names := make([]string, len(def.Columns))
	for i, c := range def.Columns {
		names[i] = c.Name
	}
	return names
}

// truncateNote describes a TRUNCATE's options.
func truncateNote(opts byte) string {
	note := "TRUNCATE of the table"
	if opts&1 != 0 {
		note += " CASCADE"
	}
	if opts&2 != 0 {
		note += " RESTART IDENTITY"
	}
	return note
}

// changeFromRecord reports one archived change on its own, with the old
// values its record carries and no earlier state.
func changeFromRecord(v *version, meta txMeta, ch catalog.Change) Change {
	c := Change{Time: meta.time, Xid: meta.xid, LSN: meta.lsn, Table: v.name, Columns: v.columns}
	switch ch.Tag {
	case catalog.TagInsert:
		c.Op = OpInsert
		c.After = tupleValues(v, ch.New, false)
		c.Key = tupleKey(v, ch.New)
	case catalog.TagUpdate:
		c.Op = OpUpdate
		c.After = tupleValues(v, ch.New, false)
		c.Key = tupleKey(v, ch.New)
		if ch.OldKind != catalog.OldNone {
			c.Before = tupleValues(v, ch.Old, ch.OldKind == catalog.OldKey)
			if old := tupleKey(v, ch.Old); old != nil && c.Key != nil && !old.equal(c.Key) {
				c.Note = "key changed from " + old.String()
			}
		} else {
			c.Before = make([]Value, len(v.columns)) // all unknown
		}
		c.Changed = changedColumns(c.Columns, c.Before, c.After)
	case catalog.TagDelete:
		c.Op = OpDelete
		c.Before = tupleValues(v, ch.Old, ch.OldKind == catalog.OldKey)
		c.Key = tupleKey(v, ch.Old)
	case catalog.TagTruncate:
		c.Op = OpTruncate
		c.Columns = nil
		c.Note = truncateNote(ch.Truncate)
	}
	return c
}

// changedColumns lists the columns whose value differs, where both the old
// and the new value are known.
func changedColumns(cols []string, before, after []Value) []string {
	var out []string
	for i, name := range cols {
		if i < len(before) && i < len(after) && before[i].known() && after[i].known() && !before[i].same(after[i]) {
			out = append(out, name)
		}
	}
	return out
}
