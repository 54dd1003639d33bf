package inspect

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dustin/go-humanize"

	"lbt/catalog"
)

// Format is how a report is written.
type Format string

// Output formats.
const (
	// FormatTable is an aligned table for people.
	FormatTable Format = "table"
	// FormatJSON is one JSON object per line, with stable field names,
	// times in RFC 3339 with microseconds and LSNs like 0/16B3748.
	FormatJSON Format = "json"
	// FormatCSV is CSV with a header line.
	FormatCSV Format = "csv"
)

// ParseFormat checks a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatTable, FormatJSON, FormatCSV:
		return f, nil
	case "":
		return FormatTable, nil
	}
	return "", inputErrorf("format %q: use table, json or csv", s)
}

// Write writes the history in format f.
func (h *History) Write(w io.Writer, f Format) error { return writeChanges(w, f, h.Changes) }

// Write writes the transactions in format f.
func (r *TxReport) Write(w io.Writer, f Format) error {
	var all []Change
	for _, t := range r.Txs {
		all = append(all, t.Changes...)
	}
	if f == FormatTable {
		ew := &errWriter{w: w}
		for i, t := range r.Txs {
			if i > 0 {
				ew.printf("\n")
			}
			ew.printf("transaction xid %d, commit LSN %s (end %s), committed %s, by %s", t.Xid, catalog.FormatLSN(t.LSN), catalog.FormatLSN(t.EndLSN), formatTime(t.Time), t.Actor)
			if t.Origin != "" {
				ew.printf(", origin %s", t.Origin)
			}
			ew.printf(": %d changes\n", len(t.Changes))
			if ew.err == nil {
				ew.err = writeChanges(w, f, t.Changes)
			}
		}
		return ew.err
	}
	return writeChanges(w, f, all)
}

// errWriter keeps the first write error, so that a report is written
// without checking each line.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

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

// textValue writes a value for people: NULL, (unchanged) and ? (unknown)
// bare, text quoted when it could be mistaken for those or holds spaces
// at its ends or control characters, and shortened to max runes.
func textValue(v Value, max int) string {
	switch v.Kind {
	case Null:
		return "NULL"
	case Unchanged:
		return "(unchanged)"
	case Unknown:
		return "?"
	}
	s := v.Text
	short := false
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max])
		short = true
	}
	if s == "" || s == "NULL" || s == "?" || s == "(unchanged)" || strings.TrimSpace(s) != s || strings.IndexFunc(s, unicode.IsControl) >= 0 || strings.HasPrefix(s, `"`) {
		s = strconv.Quote(s)
	}
	if short {
		s += fmt.Sprintf("… (%d bytes)", len(v.Text))
	}
	return s
}

func csvValue(vals []Value, i int) (kind, text string) {
	if vals == nil {
		return "", ""
	}
	switch vals[i].Kind {
	case Null:
		return "null", ""
	case Unchanged:
		return "unchanged", ""
	case Text:
		return "value", vals[i].Text
	}
	return "unknown", ""
}

func csvBool(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func actorCSVHeader() []string {
	return []string{"actor_known", "role", "session_user", "application", "client_addr", "backend_pid"}
}

func actorCSV(a Actor) []string {
	if !a.Known {
		return []string{"false", "", "", "", "", ""}
	}
	return []string{"true", a.Role, a.SessionUser, a.Application, a.ClientAddr, strconv.Itoa(a.BackendPID)}
}

// MarshalJSON writes the actor as reports do: {"known":false} when unknown.
func (a Actor) MarshalJSON() ([]byte, error) {
	o := &jsonObject{}
	o.field("known", a.Known)
	if a.Known {
		o.field("role", a.Role)
		o.field("session_user", a.SessionUser)
		o.field("application", a.Application)
		if a.ClientAddr == "" {
			o.field("client_addr", nil)
		} else {
			o.field("client_addr", a.ClientAddr)
		}
		o.field("backend_pid", a.BackendPID)
	}
	return o.bytes(), o.err
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

// jsonObject builds a JSON object with its fields in the order added.
type jsonObject struct {
	buf bytes.Buffer
	err error
}

func (o *jsonObject) field(name string, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil && o.err == nil {
		o.err = err
	}
	o.raw(name, bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

func (o *jsonObject) raw(name string, v []byte) {
	if o.buf.Len() == 0 {
		o.buf.WriteByte('{')
	} else {
		o.buf.WriteByte(',')
	}
	k, _ := json.Marshal(name)
	o.buf.Write(k)
	o.buf.WriteByte(':')
	o.buf.Write(v)
}

func (o *jsonObject) bytes() []byte {
	if o.buf.Len() == 0 {
		return []byte("{}")
	}
	return append(o.buf.Bytes(), '}')
}

func writeJSONLines(w io.Writer, n int, line func(int) *jsonObject) error {
	for i := 0; i < n; i++ {
		o := line(i)
		if o.err != nil {
			return o.err
		}
		if _, err := w.Write(append(o.bytes(), '\n')); err != nil {
			return err
		}
	}
	return nil
}

func jsonTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return formatTime(t)
}

// Write writes the transactions in format f.
func (r *ChangesReport) Write(w io.Writer, f Format) error {
	switch f {
	case FormatJSON:
		return writeJSONLines(w, len(r.Txs), func(i int) *jsonObject {
			s := r.Txs[i]
			o := &jsonObject{}
			o.field("time", formatTime(s.Time))
			o.field("xid", s.Xid)
			o.field("lsn", catalog.FormatLSN(s.LSN))
			o.field("table", r.Table)
			o.field("inserts", s.Inserts)
			o.field("updates", s.Updates)
			o.field("deletes", s.Deletes)
			o.field("truncates", s.Truncates)
			o.field("actor", s.Actor)
			return o
		})
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.Write(append([]string{"time", "xid", "lsn", "table", "inserts", "updates", "deletes", "truncates"}, actorCSVHeader()...))
		for _, s := range r.Txs {
			cw.Write(append([]string{formatTime(s.Time), strconv.FormatUint(uint64(s.Xid), 10), catalog.FormatLSN(s.LSN), r.Table,
				strconv.Itoa(s.Inserts), strconv.Itoa(s.Updates), strconv.Itoa(s.Deletes), strconv.Itoa(s.Truncates)}, actorCSV(s.Actor)...))
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "TIME\tXID\tLSN\tINSERTS\tUPDATES\tDELETES\tTRUNCATES\tWHO\n")
	for _, s := range r.Txs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%s\n", formatTime(s.Time), s.Xid, catalog.FormatLSN(s.LSN), s.Inserts, s.Updates, s.Deletes, s.Truncates, s.Actor)
	}
	return tw.Flush()
}

// Write writes the tables in format f.
func (r *TablesReport) Write(w io.Writer, f Format) error {
	switch f {
	case FormatJSON:
		return writeJSONLines(w, len(r.Tables), func(i int) *jsonObject {
			t := r.Tables[i]
			o := &jsonObject{}
			o.field("table", t.Name)
			o.field("table_id", t.ID)
			o.field("oid", t.OID)
			former := t.FormerNames
			if former == nil {
				former = []string{}
			}
			o.field("former_names", former)
			o.field("schema_versions", t.SchemaVersions)
			o.field("basebackups", t.Basebackups)
			o.field("newest_basebackup", jsonTime(t.NewestBasebackup))
			if t.Basebackups > 0 {
				o.field("newest_basebackup_lsn", catalog.FormatLSN(t.NewestBasebackupLSN))
			} else {
				o.field("newest_basebackup_lsn", nil)
			}
			o.field("transactions", t.Transactions)
			o.field("inserts", t.Inserts)
			o.field("updates", t.Updates)
			o.field("deletes", t.Deletes)
			o.field("truncates", t.Truncates)
			o.field("first_change", jsonTime(t.FirstChange))
			o.field("last_change", jsonTime(t.LastChange))
			o.field("blobs", t.Blobs)
			o.field("delta_bytes", t.DeltaBytes)
			o.field("basebackup_bytes", t.BasebackupBytes)
			o.field("bytes", t.Bytes())
			return o
		})
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.Write([]string{"table", "table_id", "oid", "former_names", "schema_versions", "basebackups", "newest_basebackup", "newest_basebackup_lsn",
			"transactions", "inserts", "updates", "deletes", "truncates", "first_change", "last_change", "blobs", "delta_bytes", "basebackup_bytes", "bytes"})
		for _, t := range r.Tables {
			lsn := ""
			if t.Basebackups > 0 {
				lsn = catalog.FormatLSN(t.NewestBasebackupLSN)
			}
			cw.Write([]string{t.Name, itoa(t.ID), itoa(int64(t.OID)), strings.Join(t.FormerNames, " "), strconv.Itoa(t.SchemaVersions),
				strconv.Itoa(t.Basebackups), formatTime(t.NewestBasebackup), lsn, itoa(t.Transactions), itoa(t.Inserts), itoa(t.Updates),
				itoa(t.Deletes), itoa(t.Truncates), formatTime(t.FirstChange), formatTime(t.LastChange), itoa(t.Blobs), itoa(t.DeltaBytes),
				itoa(t.BasebackupBytes), itoa(t.Bytes())})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "TABLE\tBASEBACKUPS\tNEWEST BASEBACKUP\tTXS\tINS/UPD/DEL/TRUNC\tFIRST CHANGE\tLAST CHANGE\tSIZE\n")
	for _, t := range r.Tables {
		name := t.Name
		if len(t.FormerNames) > 0 {
			name += " (was " + strings.Join(t.FormerNames, ", ") + ")"
		}
		newest := "-"
		if t.Basebackups > 0 {
			newest = formatTime(t.NewestBasebackup)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d/%d/%d/%d\t%s\t%s\t%s\n", name, t.Basebackups, newest, t.Transactions,
			t.Inserts, t.Updates, t.Deletes, t.Truncates, orDash(formatTime(t.FirstChange)), orDash(formatTime(t.LastChange)), humanize.IBytes(uint64(t.Bytes())))
	}
	return tw.Flush()
}

// Write writes the schema changes in format f.
func (r *DDLReport) Write(w io.Writer, f Format) error {
	switch f {
	case FormatJSON:
		return writeJSONLines(w, len(r.Events), func(i int) *jsonObject {
			e := r.Events[i]
			o := &jsonObject{}
			o.field("time", jsonTime(e.Time))
			o.field("xid", e.Xid)
			o.field("lsn", catalog.FormatLSN(e.LSN))
			o.field("table", e.Table)
			o.field("source", e.Source)
			o.field("change", e.Change)
			o.field("detail", e.Detail)
			o.field("query", e.Query)
			o.field("actor", e.Actor)
			return o
		})
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.Write(append([]string{"time", "xid", "lsn", "table", "source", "change", "detail", "query"}, actorCSVHeader()...))
		for _, e := range r.Events {
			cw.Write(append([]string{formatTime(e.Time), strconv.FormatUint(uint64(e.Xid), 10), catalog.FormatLSN(e.LSN), e.Table, e.Source, e.Change, e.Detail, e.Query}, actorCSV(e.Actor)...))
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "TIME\tXID\tLSN\tTABLE\tCHANGE\tWHO\tDETAIL\n")
	for _, e := range r.Events {
		detail := e.Detail
		if e.Query != "" {
			detail = strings.Join(strings.Fields(e.Query), " ")
		}
		xid := "-"
		if e.Xid != 0 {
			xid = strconv.FormatUint(uint64(e.Xid), 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(formatTime(e.Time)), xid, catalog.FormatLSN(e.LSN), e.Table, e.Change, e.Actor, detail)
	}
	return tw.Flush()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
