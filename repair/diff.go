package repair

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"lbt/catalog"
	"lbt/inspect"
	"lbt/restore"
)

// DiffOptions asks how a table differs between two moments. From and To
// are restore targets (Until, LSN or Xid; To without any is the latest
// archived state); Table is the SQL name the table had at them.
type DiffOptions struct {
	Table    string
	From, To restore.Options
}

// Kinds of a DiffRow.
const (
	Added   = "added"   // in the To state only
	Removed = "removed" // in the From state only
	Changed = "changed" // in both, with other values
)

// DiffRow is one row that differs: by key, or in a table without a key,
// copies of one row.
type DiffRow struct {
	Kind    string
	Key     map[string]string // nil without a key
	From    []restore.Field   // nil when added
	To      []restore.Field   // nil when removed
	Changed []string          // columns whose values differ (changed rows)
	Copies  int               // of the row, in a table without a key; 1 with one
}

// DiffReport is the net difference of a table between two moments.
type DiffReport struct {
	Table    string
	Columns  []string
	Keyed    bool
	From, To restore.State
	Rows     []DiffRow // ordered by key

	u *tableUndo
}

// Diff computes the table at both moments and compares them per key (as a
// multiset without a key). Both states are computed as restore does; the
// From state's rows are held in memory while the To state streams past.
func Diff(ctx context.Context, cat *catalog.Catalog, o DiffOptions) (*DiffReport, error) {
	o.From.Table, o.To.Table = o.Table, o.Table
	from, err := restore.Shape(ctx, cat, o.From)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	to, err := restore.Shape(ctx, cat, o.To)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	if from.TableID != to.TableID {
		return nil, inputErrorf("the name %s was two different tables at the two moments (lbt inspect tables lists them): diff compares one table", o.Table)
	}
	if !sameColumns(from.Columns, to.Columns) || !slices.Equal(from.Key, to.Key) {
		return nil, inputErrorf("the definition of %s changed between the two moments: diff compares rows of one shape (lbt inspect ddl --table %s shows the change)", to.Table, o.Table)
	}
	rows := map[string][]restore.Field{}
	count := map[string]int{}
	if from, err = restore.Scan(ctx, cat, o.From, func(row []restore.Field) error {
		k := encodeKey(row, nil)
		rows[k] = row
		count[k]++
		return nil
	}); err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	var added [][]restore.Field
	addedCount := map[string]int{}
	if to, err = restore.Scan(ctx, cat, o.To, func(row []restore.Field) error {
		k := encodeKey(row, nil)
		if count[k] > 0 {
			if count[k]--; count[k] == 0 {
				delete(count, k)
			}
			return nil
		}
		if addedCount[k] == 0 {
			added = append(added, row)
		}
		addedCount[k]++
		return nil
	}); err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	r := &DiffReport{Table: to.Table, Keyed: to.Key != nil, From: from, To: to,
		u: &tableUndo{name: to.Table, cols: to.Columns, key: to.Key}}
	for _, c := range to.Columns {
		r.Columns = append(r.Columns, c.Name)
	}
	type entry struct {
		sortKey string
		row     DiffRow
	}
	var out []entry
	if to.Key == nil {
		for k, n := range count {
			out = append(out, entry{k, DiffRow{Kind: Removed, From: rows[k], Copies: n}})
		}
		for _, row := range added {
			k := encodeKey(row, nil)
			out = append(out, entry{k, DiffRow{Kind: Added, To: row, Copies: addedCount[k]}})
		}
	} else {
		byKey := map[string]*DiffRow{}
		get := func(row []restore.Field) *DiffRow {
			k := encodeKey(row, to.Key)
			d, ok := byKey[k]
			if !ok {
				d = &DiffRow{Copies: 1, Key: map[string]string{}}
				for _, i := range to.Key {
					d.Key[to.Columns[i].Name] = row[i].Text
				}
				byKey[k] = d
			}
			return d
		}
		for k := range count {
			get(rows[k]).From = rows[k]
		}
		for _, row := range added {
			get(row).To = row
		}
		for k, d := range byKey {
			switch {
			case d.From == nil:
				d.Kind = Added
			case d.To == nil:
				d.Kind = Removed
			default:
				d.Kind = Changed
				for i, c := range to.Columns {
					if d.From[i] != d.To[i] {
						d.Changed = append(d.Changed, c.Name)
					}
				}
			}
			out = append(out, entry{k, *d})
		}
	}
	slices.SortFunc(out, func(a, b entry) int { return compareKeys(a.sortKey, b.sortKey) })
	for _, e := range out {
		r.Rows = append(r.Rows, e.row)
	}
	return r, nil
}

// Format is an output format of a DiffReport.
type Format string

// The formats, as inspect's --format names them.
const (
	FormatTable Format = "table"
	FormatJSON  Format = "json"
	FormatCSV   Format = "csv"
)

// Write writes the report: an aligned table for people, JSON lines or CSV.
func (r *DiffReport) Write(w io.Writer, f Format) error {
	switch f {
	case FormatJSON:
		bw := bufio.NewWriter(w)
		for _, d := range r.Rows {
			o := map[string]any{"change": d.Kind, "table": r.Table, "key": d.Key, "from": r.values(d.From), "to": r.values(d.To), "copies": d.Copies}
			if d.Changed == nil {
				o["changed"] = []string{}
			} else {
				o["changed"] = d.Changed
			}
			b, err := json.Marshal(o)
			if err != nil {
				return err
			}
			bw.Write(b)
			bw.WriteByte('\n')
		}
		return bw.Flush()
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.Write([]string{"change", "key", "copies", "column", "changed", "from_kind", "from", "to_kind", "to"})
		for _, d := range r.Rows {
			key := r.keyText(d)
			for i, c := range r.Columns {
				fk, fv := csvField(d.From, i)
				tk, tv := csvField(d.To, i)
				cw.Write([]string{d.Kind, key, strconv.Itoa(d.Copies), c, strconv.FormatBool(slices.Contains(d.Changed, c)), fk, fv, tk, tv})
			}
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s from %s to %s: %d row(s) differ\n", r.Table, r.From.Target, r.To.Target, len(r.Rows))
	for _, d := range r.Rows {
		head := strings.ToUpper(d.Kind) + "  " + r.keyText(d)
		if d.Copies > 1 {
			head += fmt.Sprintf("  (%d copies)", d.Copies)
		}
		fmt.Fprintf(tw, "%s\n", head)
		fmt.Fprintf(tw, "     column\tfrom\tto\n")
		for i, c := range r.Columns {
			mark := "  "
			if slices.Contains(d.Changed, c) {
				mark = "* "
			}
			fmt.Fprintf(tw, "  %s %s\t%s\t%s\n", mark, c, textField(d.From, i), textField(d.To, i))
		}
	}
	return tw.Flush()
}

func (r *DiffReport) keyText(d DiffRow) string {
	if d.Key != nil {
		return inspect.FormatKey(d.Key)
	}
	row := d.From
	if row == nil {
		row = d.To
	}
	return r.u.rowText(row)
}

func (r *DiffReport) values(row []restore.Field) map[string]any {
	if row == nil {
		return nil
	}
	m := map[string]any{}
	for i, c := range r.Columns {
		if row[i].Null {
			m[c] = nil
		} else {
			m[c] = row[i].Text
		}
	}
	return m
}

func csvField(row []restore.Field, i int) (kind, text string) {
	switch {
	case row == nil:
		return "", ""
	case row[i].Null:
		return "null", ""
	}
	return "value", row[i].Text
}

func textField(row []restore.Field, i int) string {
	switch {
	case row == nil:
		return ""
	case row[i].Null:
		return "NULL"
	}
	t := strings.NewReplacer("\n", `\n`, "\t", `\t`).Replace(row[i].Text)
	if len(t) > 60 {
		t = t[:57] + "..."
	}
	return t
}

// WriteSQL writes the statements that turn the table's To state into its
// From state (a rewind when From is earlier), guarded as undo's are: each
// changes its row only if the row is still as it was at To.
func (r *DiffReport) WriteSQL(w io.Writer, version string) error {
	bw := bufio.NewWriter(w)
	comment := commenter(bw)
	comment("lbt diff of %s: the statements that turn its state at %s (LSN %s)", r.Table, r.To.Target, catalog.FormatLSN(r.To.TargetLSN))
	comment("into its state at %s (LSN %s): %d row(s) differ.", r.From.Target, catalog.FormatLSN(r.From.TargetLSN), len(r.Rows))
	comment("Every statement changes its row only if the row is still as it was at the first state (every column")
	comment("compared, NULL-safe); a row changed since is left as it is. Sequences are not touched.")
	beginScript(bw, comment, version)
	all := make([]bool, len(r.Columns))
	for i := range all {
		all[i] = true
	}
	counts := map[string]int{}
	for _, d := range r.Rows {
		if d.To != nil {
			counts[encodeKey(d.To, nil)] = d.Copies
		}
	}
	var dels, upds, ins []string
	for _, d := range r.Rows {
		// The To state is "after", the From state "before": undoing the
		// difference gives the From state.
		c := rowChange{before: d.From, after: d.To, present: all}
		if !r.Keyed {
			c.delta = d.Copies
			c.key = encodeKey(d.From, nil)
			if d.Kind == Added {
				c.delta, c.key = -d.Copies, encodeKey(d.To, nil)
			}
			s := r.u.multisetStatement(nil, c, counts)
			if c.delta < 0 {
				dels = append(dels, s.SQL)
			} else {
				ins = append(ins, s.SQL)
			}
			continue
		}
		s := r.u.keyedStatement(nil, c)
		switch s.Op {
		case "DELETE":
			dels = append(dels, s.SQL)
		case "UPDATE":
			upds = append(upds, s.SQL)
		default:
			ins = append(ins, s.SQL)
		}
	}
	for _, s := range slices.Concat(dels, upds, ins) {
		fmt.Fprintf(bw, "%s;\n", s)
	}
	fmt.Fprintln(bw, "COMMIT;")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write SQL: %w", err)
	}
	return nil
}
