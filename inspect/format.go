package inspect

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
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

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// column is one field of a report's rows in every format: the table's
// column headed head, and the field called name in JSON and CSV, in the
// order of the report's columns. A column without a head is not in the
// table; one without a name is in the table alone.
type column[T any] struct {
	name string
	head string
	// text is the field's text in CSV, and in the table unless cell gives
	// another; json is its value in JSON, unless that is text as a string.
	text func(T) string
	json func(T) any
	cell func(T) string
	// actor, in place of the above: the actor's object in JSON, its six
	// fields in CSV (actorCSVHeader), its String in the table.
	actor func(T) Actor
}

// textColumn is a column whose value is its text in every format.
func textColumn[T any](name, head string, text func(T) string) column[T] {
	return column[T]{name: name, head: head, text: text}
}

// intColumn is a column of a number.
func intColumn[T any](name, head string, v func(T) int64) column[T] {
	return column[T]{name: name, head: head, text: func(r T) string { return itoa(v(r)) }, json: func(r T) any { return v(r) }}
}

// timeColumn is a column of a moment that may be unknown (zero): null in
// JSON, empty in CSV, - in the table.
func timeColumn[T any](name, head string, t func(T) time.Time) column[T] {
	return column[T]{name: name, head: head,
		text: func(r T) string { return formatTime(t(r)) },
		json: func(r T) any { return jsonTime(t(r)) },
		cell: func(r T) string { return orDash(formatTime(t(r))) }}
}

// actorColumn is the column of who made a transaction.
func actorColumn[T any](a func(T) Actor) column[T] {
	return column[T]{name: "actor", head: "WHO", actor: a}
}

// withCell gives the column another text in the table.
func (c column[T]) withCell(cell func(T) string) column[T] {
	c.cell = cell
	return c
}

// writeRows writes a report's rows in format f: one JSON object per line,
// CSV with a header line, or an aligned table with a heading line.
func writeRows[T any](w io.Writer, f Format, cols []column[T], rows []T) error {
	switch f {
	case FormatJSON:
		return writeJSONLines(w, len(rows), func(i int) *jsonObject {
			o := &jsonObject{}
			for _, c := range cols {
				switch {
				case c.name == "":
				case c.actor != nil:
					o.field(c.name, c.actor(rows[i]))
				case c.json != nil:
					o.field(c.name, c.json(rows[i]))
				default:
					o.field(c.name, c.text(rows[i]))
				}
			}
			return o
		})
	case FormatCSV:
		cw := csv.NewWriter(w)
		var fields []string
		for _, c := range cols {
			switch {
			case c.name == "":
			case c.actor != nil:
				fields = append(fields, actorCSVHeader()...)
			default:
				fields = append(fields, c.name)
			}
		}
		cw.Write(fields)
		for _, r := range rows {
			fields = fields[:0]
			for _, c := range cols {
				switch {
				case c.name == "":
				case c.actor != nil:
					fields = append(fields, actorCSV(c.actor(r))...)
				default:
					fields = append(fields, c.text(r))
				}
			}
			cw.Write(fields)
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var cells []string
	for _, c := range cols {
		if c.head != "" {
			cells = append(cells, c.head)
		}
	}
	io.WriteString(tw, strings.Join(cells, "\t")+"\n")
	for _, r := range rows {
		cells = cells[:0]
		for _, c := range cols {
			switch {
			case c.head == "":
			case c.actor != nil:
				cells = append(cells, c.actor(r).String())
			case c.cell != nil:
				cells = append(cells, c.cell(r))
			default:
				cells = append(cells, c.text(r))
			}
		}
		io.WriteString(tw, strings.Join(cells, "\t")+"\n")
	}
	return tw.Flush()
}
