package inspect

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"lbt/catalog"
	"lbt/schema"
)

// DDLOptions asks for the schema changes of the archived tables.
type DDLOptions struct {
	Table string // SQL name; empty for every table
	Range Range
}

// Sources of a DDLEvent.
const (
	// SourceStream: a new definition of a table, as the replication stream
	// showed it before the table's next change.
	SourceStream = "stream"
	// SourceCaptured: a DDL command lbt setup --capture-ddl recorded on the
	// source, with its text and role.
	SourceCaptured = "captured"
)

// DDLEvent is one schema change.
type DDLEvent struct {
	Time   time.Time // zero when unknown (a table's definition when the archive began)
	Xid    uint32
	LSN    uint64
	Table  string // the table, or for a captured command the object it changed
	Source string // SourceStream or SourceCaptured
	Change string // "first seen", "definition changed", or the command tag, like ALTER TABLE
	Detail string // what changed in the definition, or the object's type
	Query  string // the statement text of a captured command
	Actor  Actor
}

// DDLReport is the answer of a ddl query.
type DDLReport struct {
	Events []DDLEvent // in commit order
	Notes  []string
}

// ddlMessage is the content of an 'lbt.ddl' message; package setup writes it.
type ddlMessage struct {
	actorMessage
	Tag        string `json:"tag"`
	ObjectType string `json:"object_type"`
	Object     string `json:"object"`
	Query      string `json:"query"`
}

// DDL lists the definitions of the archived tables as the stream showed
// them, and the DDL commands captured on the source, in commit order. A new
// definition is attributed to the role of the captured command on that
// table that preceded it.
func (in *Inspector) DDL(ctx context.Context, opts DDLOptions) (*DDLReport, error) {
	if err := opts.Range.check(); err != nil {
		return nil, err
	}
	r := &DDLReport{}
	var ids []int64
	var ns, rel string
	if opts.Table != "" {
		var err error
		if ids, err = in.findTables(ctx, opts.Table); err != nil {
			return nil, err
		}
		ns, rel, _ = schema.ParseName(opts.Table)
	} else {
		refs, err := in.cat.Tables(ctx)
		if err != nil {
			return nil, err
		}
		for _, ref := range refs {
			ids = append(ids, ref.ID)
		}
	}

	captured, err := in.capturedDDL(ctx, opts.Range)
	if err != nil {
		return nil, err
	}
	if opts.Table != "" {
		captured = slices.DeleteFunc(captured, func(e DDLEvent) bool {
			n, t, ok := ddlObjectTable(e)
			return !ok || n != ns || t != rel
		})
	}

	var events []DDLEvent
	for _, id := range ids {
		versions, err := in.cat.SchemaVersions(ctx, id)
		if err != nil {
			return nil, err
		}
		for i, v := range versions {
			e := DDLEvent{LSN: v.FromLSN, Table: v.QualifiedName(), Source: SourceStream}
			var prev uint64
			if i == 0 {
				e.Change = "first seen"
				e.Detail = describeTable(v.Table)
			} else {
				prev = versions[i-1].FromLSN
				e.Change = "definition changed"
				e.Detail = describeChange(versions[i-1].Table, v.Table)
			}
			tx, ok, err := in.cat.NewestTx(ctx, v.FromLSN, v.FromLSN)
			if err != nil {
				return nil, err
			}
			if ok {
				e.Xid, e.Time = tx.Xid, tx.CommitTime
			}
			if e.Time.IsZero() && !opts.Range.Since.IsZero() || !e.Time.IsZero() && !opts.Range.contains(e.Time) {
				continue
			}
			// The author: the last captured command on this table between
			// the previous definition and this one.
			for j := len(captured) - 1; j >= 0; j-- {
				c := captured[j]
				n, t, ok := ddlObjectTable(c)
				// A table's first definition is the work of a CREATE, not
				// of whatever else preceded it.
				if ok && c.LSN <= v.FromLSN && c.LSN > prev && n == v.Schema && t == v.Name && (i > 0 || strings.HasPrefix(c.Change, "CREATE")) {
					e.Actor = c.Actor
					break
				}
			}
			events = append(events, e)
		}
	}
	events = append(events, captured...)
	slices.SortStableFunc(events, func(a, b DDLEvent) int {
		switch {
		case a.LSN < b.LSN:
			return -1
		case a.LSN > b.LSN:
			return 1
		case a.Source != b.Source: // the command before the definition it made
			return strings.Compare(a.Source, b.Source)
		}
		return 0
	})
	r.Events = events
	if len(captured) == 0 {
		r.Notes = append(r.Notes, "no DDL command captured here: definitions come from the stream alone, without the statement or its author (lbt setup --capture-ddl records them)")
	}
	return r, nil
}

// capturedDDL reads the 'lbt.ddl' messages of the transactions in a range.
func (in *Inspector) capturedDDL(ctx context.Context, rng Range) ([]DDLEvent, error) {
	// Bound the scan of tx_message by LSN, through tx_range.
	lo, hi, ok, err := in.cat.TxWindow(ctx, rng.Since, rng.Until)
	if err != nil || !ok {
		return nil, err
	}
	msgs, err := in.cat.PrefixMessages(ctx, DDLPrefix, lo, hi)
	if err != nil {
		return nil, err
	}
	var out []DDLEvent
	for _, msg := range msgs {
		content := msg.Content
		e := DDLEvent{LSN: msg.CommitLSN, Xid: msg.Xid, Time: msg.CommitTime, Source: SourceCaptured}
		if !rng.contains(e.Time) {
			continue
		}
		var m ddlMessage
		if err := json.Unmarshal(content, &m); err != nil {
			e.Change, e.Detail = "unreadable", fmt.Sprintf("message %q: %v", content, err)
		} else {
			e.Change, e.Table, e.Detail, e.Query = m.Tag, m.Object, m.ObjectType, m.Query
			e.Actor = parseActor(content)
		}
		out = append(out, e)
	}
	return out, nil
}

// ddlObjectTable returns the table a captured command's object belongs to:
// the table itself, a column of it, or an object "name on table".
func ddlObjectTable(e DDLEvent) (ns, rel string, ok bool) {
	if e.Source != SourceCaptured {
		return "", "", false
	}
	ident := e.Table
	switch e.Detail {
	case "table":
	case "table column":
		i := strings.LastIndexByte(ident, '.')
		if i < 0 {
			return "", "", false
		}
		ident = ident[:i]
	case "trigger", "table constraint", "rule", "policy":
		_, after, found := strings.Cut(ident, " on ")
		if !found {
			return "", "", false
		}
		ident = after
	default:
		return "", "", false
	}
	ns, rel, err := schema.ParseName(ident)
	return ns, rel, err == nil
}

// describeTable lists a definition's columns and key.
func describeTable(t schema.Table) string {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = schema.QuoteIdent(c.Name) + " " + typeName(c)
	}
	s := "columns " + strings.Join(cols, ", ")
	if k := keyColumnNames(t); len(k) > 0 {
		s += "; key (" + quoteIdents(k) + ")"
	}
	return s
}

// describeChange says how a definition differs from the one before.
func describeChange(old, cur schema.Table) string {
	var parts []string
	if old.QualifiedName() != cur.QualifiedName() {
		parts = append(parts, "renamed from "+old.QualifiedName())
	}
	for _, c := range cur.Columns {
		i := old.ColumnIndex(c.Name)
		name := schema.QuoteIdent(c.Name)
		switch {
		case i < 0 || (old.Columns[i].AttNum != 0 && c.AttNum != 0 && old.Columns[i].AttNum != c.AttNum):
			added := "added " + name + " " + typeName(c)
			if i >= 0 {
				added = "dropped and added again " + name + " " + typeName(c)
			}
			if c.HasMissing {
				added += " (older rows read " + schema.QuoteLiteral(c.Missing) + ")"
			}
			parts = append(parts, added)
		case typeName(old.Columns[i]) != typeName(c):
			parts = append(parts, "changed "+name+" from "+typeName(old.Columns[i])+" to "+typeName(c))
		default:
			// What lbt reads on the source beyond the stream; unknown in
			// versions recorded before it did.
			o := old.Columns[i]
			if o.AttNum == 0 || c.AttNum == 0 {
				break
			}
			if o.NotNull != c.NotNull {
				parts = append(parts, map[bool]string{true: name + " SET NOT NULL", false: name + " DROP NOT NULL"}[c.NotNull])
			}
			if o.Default != c.Default {
				if c.Default == "" {
					parts = append(parts, name+" DROP DEFAULT")
				} else {
					parts = append(parts, name+" SET DEFAULT "+c.Default)
				}
			}
		}
	}
	for _, c := range old.Columns {
		if cur.ColumnIndex(c.Name) < 0 {
			parts = append(parts, "dropped "+schema.QuoteIdent(c.Name))
		}
	}
	if ok, ck := keyColumnNames(old), keyColumnNames(cur); !slices.Equal(ok, ck) {
		parts = append(parts, "key ("+quoteIdents(ok)+") became ("+quoteIdents(ck)+")")
	}
	if old.ReplicaIdentity != cur.ReplicaIdentity {
		parts = append(parts, fmt.Sprintf("replica identity %s became %s", identityName(old.ReplicaIdentity), identityName(cur.ReplicaIdentity)))
	}
	if len(parts) == 0 {
		return "column order or type modifiers changed"
	}
	return strings.Join(parts, "; ")
}

func typeName(c schema.Column) string {
	if c.TypeName != "" {
		return c.TypeName
	}
	return fmt.Sprintf("type %d", c.TypeOID)
}

func quoteIdents(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = schema.QuoteIdent(n)
	}
	return strings.Join(q, ", ")
}

func identityName(b byte) string {
	switch b {
	case 'd':
		return "DEFAULT"
	case 'n':
		return "NOTHING"
	case 'f':
		return "FULL"
	case 'i':
		return "USING INDEX"
	}
	return "unknown"
}

// Write writes the schema changes in format f.
func (r *DDLReport) Write(w io.Writer, f Format) error { return writeRows(w, f, ddlColumns, r.Events) }

// ddlColumns are the fields of a ddl report, in every format.
var ddlColumns = []column[DDLEvent]{
	timeColumn("time", "TIME", func(e DDLEvent) time.Time { return e.Time }),
	intColumn("xid", "XID", func(e DDLEvent) int64 { return int64(e.Xid) }).withCell(func(e DDLEvent) string {
		if e.Xid == 0 {
			return "-"
		}
		return strconv.FormatUint(uint64(e.Xid), 10)
	}),
	textColumn("lsn", "LSN", func(e DDLEvent) string { return catalog.FormatLSN(e.LSN) }),
	textColumn("table", "TABLE", func(e DDLEvent) string { return e.Table }),
	textColumn("source", "", func(e DDLEvent) string { return e.Source }),
	textColumn("change", "CHANGE", func(e DDLEvent) string { return e.Change }),
	textColumn("detail", "", func(e DDLEvent) string { return e.Detail }),
	textColumn("query", "", func(e DDLEvent) string { return e.Query }),
	actorColumn(func(e DDLEvent) Actor { return e.Actor }),
	// The statement when one was captured, on one line; else what changed.
	{head: "DETAIL", text: func(e DDLEvent) string {
		if e.Query != "" {
			return strings.Join(strings.Fields(e.Query), " ")
		}
		return e.Detail
	}},
}
