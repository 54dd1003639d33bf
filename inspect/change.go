package inspect

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
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

// writeChanges writes changes as History and TxReport do: each change
// with its values, one line per column in the table and in CSV, one JSON
// object per change.
func writeChanges(w io.Writer, f Format, changes []Change) error {
	switch f {
	case FormatJSON:
		return writeJSONLines(w, len(changes), func(i int) *jsonObject { return changeJSON(changes[i]) })
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.Write(append([]string{"time", "xid", "lsn", "table", "op", "note"}, append(actorCSVHeader(),
			"column", "key", "changed", "before_kind", "before", "after_kind", "after", "message_prefix", "message_content")...))
		for _, c := range changes {
			head := append([]string{formatTime(c.Time), strconv.FormatUint(uint64(c.Xid), 10), catalog.FormatLSN(c.LSN), c.Table, c.Op, c.Note}, actorCSV(c.Actor)...)
			if c.Op == OpMessage || len(c.Columns) == 0 {
				cw.Write(append(slices.Clone(head), "", "", "", "", "", "", "", c.Prefix, c.Content))
				continue
			}
			for i, col := range c.Columns {
				_, inKey := c.Key[col]
				bk, bv := csvValue(c.Before, i)
				ak, av := csvValue(c.After, i)
				cw.Write(append(slices.Clone(head), col, csvBool(inKey), csvBool(slices.Contains(c.Changed, col)), bk, bv, ak, av, "", ""))
			}
		}
		cw.Flush()
		return cw.Error()
	}
	ew := &errWriter{w: w}
	for i, c := range changes {
		if i > 0 {
			ew.printf("\n")
		}
		ew.printf("%s  %s", formatTime(c.Time), c.Op)
		if c.Table != "" {
			ew.printf(" %s", c.Table)
		}
		ew.printf("  xid %d  lsn %s  by %s\n", c.Xid, catalog.FormatLSN(c.LSN), c.Actor)
		if c.Note != "" {
			ew.printf("  %s\n", c.Note)
		}
		if c.Op == OpMessage {
			ew.printf("  message %s: %s\n", c.Prefix, textValue(Value{Kind: Text, Text: c.Content}, 200))
			continue
		}
		if len(c.Columns) == 0 || (c.Before == nil && c.After == nil) {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		switch {
		case c.Before != nil && c.After != nil && slices.ContainsFunc(c.Before, Value.known):
			fmt.Fprintf(tw, "   \tcolumn\tbefore\tafter\n")
			for i, col := range c.Columns {
				mark := " "
				if slices.Contains(c.Changed, col) {
					mark = "*"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", mark, col, textValue(c.Before[i], 60), textValue(c.After[i], 60))
			}
		default:
			vals, what := c.After, "value"
			if c.Before != nil && vals != nil {
				what = "value after"
			} else if vals == nil {
				vals, what = c.Before, "value before"
			}
			fmt.Fprintf(tw, "   \tcolumn\t%s\n", what)
			for i, col := range c.Columns {
				fmt.Fprintf(tw, "   \t%s\t%s\n", col, textValue(vals[i], 60))
			}
		}
		if err := tw.Flush(); err != nil && ew.err == nil {
			ew.err = err
		}
	}
	return ew.err
}

func changeJSON(c Change) *jsonObject {
	o := &jsonObject{}
	o.field("time", formatTime(c.Time))
	o.field("xid", c.Xid)
	o.field("lsn", catalog.FormatLSN(c.LSN))
	o.field("table", c.Table)
	o.field("op", c.Op)
	if c.Op == OpMessage {
		o.field("prefix", c.Prefix)
		o.field("content", c.Content)
		o.field("actor", c.Actor)
		return o
	}
	key := &jsonObject{}
	for _, name := range orderedKeys(c.Columns, c.Key) {
		key.field(name, c.Key[name])
	}
	if c.Key == nil {
		o.field("key", nil)
	} else {
		o.raw("key", key.bytes())
	}
	o.raw("before", valuesJSON(c.Columns, c.Before))
	o.raw("after", valuesJSON(c.Columns, c.After))
	unchanged := []string{}
	for i, v := range c.After {
		if v.Kind == Unchanged {
			unchanged = append(unchanged, c.Columns[i])
		}
	}
	o.field("unchanged", unchanged)
	changed := c.Changed
	if changed == nil {
		changed = []string{}
	}
	o.field("changed", changed)
	o.field("note", c.Note)
	o.field("actor", c.Actor)
	return o
}

// orderedKeys returns a key's column names in table order.
func orderedKeys(cols []string, key map[string]string) []string {
	var out []string
	for _, c := range cols {
		if _, ok := key[c]; ok {
			out = append(out, c)
		}
	}
	if len(out) != len(key) {
		out = out[:0]
		for c := range key {
			out = append(out, c)
		}
		slices.Sort(out)
	}
	return out
}

// valuesJSON writes known values as an object in column order: text as a
// string, NULL as null; unknown and unchanged values are left out.
func valuesJSON(cols []string, vals []Value) []byte {
	if vals == nil {
		return []byte("null")
	}
	o := &jsonObject{}
	for i, v := range vals {
		switch v.Kind {
		case Null:
			o.field(cols[i], nil)
		case Text:
			o.field(cols[i], v.Text)
		}
	}
	return o.bytes()
}
