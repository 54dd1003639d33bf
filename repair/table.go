package repair

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"

	"lbt/catalog"
	"lbt/inspect"
	"lbt/restore"
	"lbt/schema"
)

// tableUndo undoes the transactions of one table.
type tableUndo struct {
	cat      *catalog.Catalog
	log      hclog.Logger
	id       int64
	txs      []*Tx // oldest first
	versions []catalog.SchemaVersion

	// The table now (at the latest archived state): statements use its
	// name, and rows are held in its column order.
	name  string
	cols  []schema.Column
	key   []int // nil: the rows are a multiset
	notes []string

	diffs map[*Tx][]rowChange
}

// rowChange is a transaction's net effect on one row: its image before and
// after (nil when absent), in the table's current column order. In a table
// without a key it is copies of one row: removed (delta > 0) or added
// (delta < 0) by the transaction.
type rowChange struct {
	key           string // encoded key (the whole row without a key)
	before, after []restore.Field
	delta         int
	present       []bool // by current column: whether the table had it at the transaction
}

func newTableUndo(ctx context.Context, cat *catalog.Catalog, log hclog.Logger, id int64, txs []*Tx) (*tableUndo, error) {
	versions, err := cat.SchemaVersions(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(versions) == 0 {
		return nil, fmt.Errorf("%w: table %d has no schema version", catalog.ErrCorrupt, id)
	}
	return &tableUndo{cat: cat, log: log, id: id, txs: txs, versions: versions, diffs: map[*Tx][]rowChange{}}, nil
}

// nameAt is the table's name in force at lsn.
func (u *tableUndo) nameAt(lsn uint64) string {
	v := u.versions[0]
	for _, s := range u.versions {
		if s.FromLSN <= lsn {
			v = s
		}
	}
	return v.Table.QualifiedName()
}

// plan computes the statements that undo the table's transactions, newest
// first, and marks the conflicts.
func (u *tableUndo) plan(ctx context.Context, in *inspect.Inspector, undone map[uint64]bool) ([]Statement, error) {
	// The table now: its shape is what the statements are written for.
	latest, err := u.shapeNow(ctx)
	if err != nil {
		return nil, err
	}
	u.name, u.cols, u.key = latest.Table, latest.Columns, latest.Key
	for _, tx := range u.txs {
		if err := u.diff(ctx, in, tx); err != nil {
			return nil, err
		}
	}
	// The rows now of every key the transactions changed.
	need := map[string]bool{}
	for _, d := range u.diffs {
		for _, c := range d {
			need[c.key] = true
		}
	}
	now := map[string][]restore.Field{}
	counts := map[string]int{}
	var want func(key []restore.Field) bool
	if u.key != nil {
		want = func(key []restore.Field) bool { return need[encodeKey(key, nil)] }
	}
	if _, err := restore.ScanKeys(ctx, u.cat, restore.Options{Table: u.name}, want, func(row []restore.Field) error {
		k := encodeKey(row, u.key)
		if need[k] {
			now[k] = row
			counts[k]++
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("%s now: %w", u.name, err)
	}

	u.log.Debug("undo: the table now", "table", u.name, "rows kept", len(now))
	var out []Statement
	for i := len(u.txs) - 1; i >= 0; i-- {
		tx := u.txs[i]
		changes := u.diffs[tx]
		var dels, upds, ins []Statement
		for _, c := range changes {
			if u.key == nil {
				s := u.multisetStatement(tx, c, counts)
				if c.delta < 0 {
					dels = append(dels, s)
				} else {
					ins = append(ins, s)
				}
				continue
			}
			s := u.keyedStatement(tx, c)
			if !sameRow(now[c.key], c.after, c.present) {
				s.Conflict = &Conflict{Tx: tx, Table: u.name, Key: s.Key, Later: u.later(ctx, in, tx, c, undone)}
			} else if c.before == nil {
				delete(now, c.key)
			} else {
				now[c.key] = c.before
			}
			switch s.Op {
			case "DELETE":
				dels = append(dels, s)
			case "UPDATE":
				upds = append(upds, s)
			default:
				ins = append(ins, s)
			}
		}
		out = append(append(append(out, dels...), upds...), ins...)
	}
	return out, nil
}

// shapeNow reads the table's current name, columns and key.
func (u *tableUndo) shapeNow(ctx context.Context) (restore.State, error) {
	name := u.versions[len(u.versions)-1].Table.QualifiedName()
	opts := restore.Options{Table: name}
	st, err := restore.Shape(ctx, u.cat, opts)
	if err != nil {
		return st, fmt.Errorf("%s now: %w", name, err)
	}
	if st.TableID != u.id {
		return st, fmt.Errorf("the name %s is now another table's; undo cannot tell them apart", name)
	}
	return st, nil
}

// diff computes a transaction's net effect on the table: the table just
// before it against the table right after it.
func (u *tableUndo) diff(ctx context.Context, in *inspect.Inspector, tx *Tx) error {
	name := u.nameAt(tx.CommitLSN)
	shape, err := restore.Shape(ctx, u.cat, restore.Options{Table: name, LSN: tx.CommitLSN - 1})
	if err != nil {
		return fmt.Errorf("undo of transaction %d needs %s as it was just before it: %w", tx.Xid, name, err)
	}
	// Only the rows the transaction changed are held, when its records
	// name them all by key.
	touched, err := u.touchedKeys(ctx, in, tx, shape)
	if err != nil {
		return err
	}
	u.log.Debug("undo: rows the transaction's records name", "table", name, "xid", tx.Xid, "rows", len(touched), "all", touched == nil)
	var want func(key []restore.Field) bool
	if touched != nil {
		want = func(key []restore.Field) bool { return touched[encodeKey(key, nil)] != nil }
	}
	var cols []schema.Column
	var key []int
	before := map[string][]restore.Field{}
	beforeCount := map[string]int{}
	stB, err := restore.ScanKeys(ctx, u.cat, restore.Options{Table: name, LSN: tx.CommitLSN - 1}, want, func(row []restore.Field) error {
		if touched != nil {
			touched[encodeKey(row, shape.Key)].before++
		}
		k := encodeKey(row, nil)
		before[k] = row
		beforeCount[k]++
		return nil
	})
	if err != nil {
		return fmt.Errorf("undo of transaction %d needs %s as it was just before it: %w", tx.Xid, name, err)
	}
	if stB.TableID != u.id {
		return fmt.Errorf("undo of transaction %d: the name %s was another table's just before it; undo cannot tell them apart", tx.Xid, name)
	}
	cols, key = stB.Columns, stB.Key
	// Rows are first held by their whole content, then matched by key:
	// most rows are the same on both sides and cancel out.
	var added [][]restore.Field
	addedCount := map[string]int{}
	stA, err := restore.ScanKeys(ctx, u.cat, restore.Options{Table: name, LSN: tx.CommitLSN}, want, func(row []restore.Field) error {
		if touched != nil {
			touched[encodeKey(row, shape.Key)].after++
		}
		k := encodeKey(row, nil)
		if beforeCount[k] > 0 {
			if beforeCount[k]--; beforeCount[k] == 0 {
				delete(beforeCount, k)
			}
			return nil
		}
		added = append(added, row)
		addedCount[k]++
		return nil
	})
	if err != nil {
		return fmt.Errorf("undo of transaction %d needs %s as it was right after it: %w", tx.Xid, name, err)
	}
	if err := checkTouched(touched, tx, name); err != nil {
		return err
	}
	for _, w := range append(stB.Warnings, stA.Warnings...) {
		if !slices.Contains(u.notes, w) {
			u.notes = append(u.notes, w)
		}
	}
	if !sameColumns(stA.Columns, cols) || !slices.Equal(stA.Key, key) {
		return inputErrorf("transaction %d changed the definition of %s: undo does not reverse schema changes (lbt restore --before-xid %d restores the table as it was)", tx.Xid, name, tx.Xid)
	}
	proj, present, err := u.projection(cols, key, tx)
	if err != nil {
		return err
	}
	var changes []rowChange
	if key == nil && slices.Contains(present, false) {
		return inputErrorf("%s has no key and columns were added since transaction %d: undo cannot match its rows", u.name, tx.Xid)
	}
	if key == nil {
		for k, n := range beforeCount {
			changes = append(changes, rowChange{key: encodeKey(proj(before[k]), nil), before: proj(before[k]), delta: n})
		}
		seen := map[string]bool{}
		for _, row := range added {
			k := encodeKey(row, nil)
			if seen[k] {
				continue
			}
			seen[k] = true
			changes = append(changes, rowChange{key: encodeKey(proj(row), nil), after: proj(row), delta: -addedCount[k]})
		}
	} else {
		byKey := map[string]*rowChange{}
		var order []string
		get := func(k string) *rowChange {
			c, ok := byKey[k]
			if !ok {
				c = &rowChange{key: k}
				byKey[k] = c
				order = append(order, k)
			}
			return c
		}
		for k := range beforeCount {
			row := proj(before[k])
			get(encodeKey(row, u.key)).before = row
		}
		for _, row := range added {
			row = proj(row)
			get(encodeKey(row, u.key)).after = row
		}
		for _, k := range order {
			changes = append(changes, *byKey[k])
		}
	}
	for i := range changes {
		changes[i].present = present
	}
	slices.SortFunc(changes, func(a, b rowChange) int { return compareKeys(a.key, b.key) })
	u.diffs[tx] = changes
	u.log.Debug("undo: net effect of a transaction", "table", name, "xid", tx.Xid, "lsn", catalog.FormatLSN(tx.CommitLSN), "rows", len(changes))
	return nil
}

// projection maps rows of the table at a transaction onto its current
// columns. Undo writes statements for the table as it is now: a column
// dropped or retyped since cannot be put back, and is refused.
func (u *tableUndo) projection(cols []schema.Column, key []int, tx *Tx) (func([]restore.Field) []restore.Field, []bool, error) {
	idx := make([]int, len(u.cols))
	present := make([]bool, len(u.cols))
	for i, c := range u.cols {
		idx[i] = -1
		for j, d := range cols {
			if d.Name == c.Name {
				if d.TypeOID != c.TypeOID || d.TypeMod != c.TypeMod {
					return nil, nil, inputErrorf("column %s of %s changed type since transaction %d: undo writes statements for the table as it is now (lbt restore --before-xid %d restores it as it was)", schema.QuoteIdent(c.Name), u.name, tx.Xid, tx.Xid)
				}
				idx[i], present[i] = j, true
			}
		}
	}
	for _, d := range cols {
		found := false
		for _, c := range u.cols {
			found = found || c.Name == d.Name
		}
		if !found {
			return nil, nil, inputErrorf("column %s of %s was dropped or renamed since transaction %d: undo writes statements for the table as it is now (lbt restore --before-xid %d restores it as it was)", schema.QuoteIdent(d.Name), u.name, tx.Xid, tx.Xid)
		}
	}
	var keyNames, nowKey []string
	for _, k := range key {
		keyNames = append(keyNames, cols[k].Name)
	}
	for _, k := range u.key {
		nowKey = append(nowKey, u.cols[k].Name)
	}
	if !slices.Equal(keyNames, nowKey) {
		return nil, nil, inputErrorf("the key of %s changed since transaction %d (%s then, %s now): undo matches rows by the current key", u.name, tx.Xid, orNone(keyNames), orNone(nowKey))
	}
	return func(row []restore.Field) []restore.Field {
		out := make([]restore.Field, len(idx))
		for i, j := range idx {
			if j < 0 {
				out[i] = restore.Field{Null: true} // added since: the statements leave it out
				continue
			}
			out[i] = row[j]
		}
		return out
	}, present, nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// later describes who changed a row after tx, from its history.
func (u *tableUndo) later(ctx context.Context, in *inspect.Inspector, tx *Tx, c rowChange, undone map[uint64]bool) string {
	row := c.after
	if row == nil {
		row = c.before
	}
	keyMap := map[string]string{}
	for _, k := range u.key {
		keyMap[u.cols[k].Name] = row[k].Text
	}
	h, err := in.History(ctx, inspect.HistoryOptions{Table: u.name, Key: inspect.FormatKey(keyMap), Range: inspect.Range{Since: tx.CommitTime}})
	if err != nil {
		return fmt.Sprintf("a later transaction (its history: %v)", err)
	}
	var parts []string
	n := 0
	for _, ch := range h.Changes {
		if ch.LSN <= tx.CommitLSN || undone[ch.LSN] {
			continue
		}
		if n++; n <= 3 {
			parts = append(parts, fmt.Sprintf("%s at %s (xid %d, LSN %s) by %s", ch.Op, formatTime(ch.Time), ch.Xid, catalog.FormatLSN(ch.LSN), ch.Actor))
		}
	}
	if n > 3 {
		parts = append(parts, fmt.Sprintf("and %d more", n-3))
	}
	if len(parts) == 0 {
		return "a later transaction"
	}
	return strings.Join(parts, "; ")
}

// encodeKey encodes the key columns of a row (every column when key is
// nil) as a map key: each value with its length, NULL apart.
func encodeKey(row []restore.Field, key []int) string {
	var b strings.Builder
	add := func(f restore.Field) {
		if f.Null {
			b.WriteString("N;")
			return
		}
		b.WriteString(strconv.Itoa(len(f.Text)))
		b.WriteByte(':')
		b.WriteString(f.Text)
	}
	if key == nil {
		for _, f := range row {
			add(f)
		}
	} else {
		for _, k := range key {
			add(row[k])
		}
	}
	return b.String()
}

// compareKeys orders encoded keys: shorter values first, so that integer
// keys come in numeric order.
func compareKeys(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// sameRow compares two rows on the present columns.
func sameRow(a, b []restore.Field, present []bool) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	for i := range a {
		if present[i] && a[i] != b[i] {
			return false
		}
	}
	return true
}

func sameColumns(a, b []schema.Column) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].TypeOID != b[i].TypeOID || a[i].TypeMod != b[i].TypeMod {
			return false
		}
	}
	return true
}

// touchedRow is what a transaction's records say of one key of the table,
// and what the two scans found.
type touchedRow struct {
	existedBefore bool // its first change was an UPDATE or a DELETE
	existsAfter   bool // its last change was an INSERT or an UPDATE to it
	before, after int  // rows with the key the scans found
}

// touchedKeys lists, by encoded key, the rows the transaction's records
// change in the table; nil when they cannot name them all (a TRUNCATE, a
// table without a key): then every row is compared.
func (u *tableUndo) touchedKeys(ctx context.Context, in *inspect.Inspector, tx *Tx, shape restore.State) (map[string]*touchedRow, error) {
	if shape.Key == nil {
		return nil, nil
	}
	rep, err := in.Tx(ctx, inspect.TxOptions{LSN: tx.CommitLSN})
	if err != nil {
		return nil, fmt.Errorf("undo of transaction %d: %w", tx.Xid, err)
	}
	keyNames := make([]string, len(shape.Key))
	for i, k := range shape.Key {
		keyNames[i] = shape.Columns[k].Name
	}
	// encode returns the encoded key of values by column name, false when
	// one is not known.
	encode := func(cols []string, vals []inspect.Value) (string, bool) {
		row := make([]restore.Field, len(keyNames))
		for i, n := range keyNames {
			j := slices.Index(cols, n)
			if j < 0 || j >= len(vals) || vals[j].Kind != inspect.Text {
				return "", false
			}
			row[i] = restore.Field{Text: vals[j].Text}
		}
		return encodeKey(row, nil), true
	}
	out := map[string]*touchedRow{}
	matched := int64(0)
	note := func(k string, first, exists bool) {
		r, ok := out[k]
		if !ok {
			r = &touchedRow{existedBefore: first}
			out[k] = r
		}
		r.existsAfter = exists
	}
	for _, t := range rep.Txs {
		if t.LSN != tx.CommitLSN {
			continue
		}
		for _, ch := range t.Changes {
			if ch.Table != shape.Table {
				continue
			}
			matched++
			switch ch.Op {
			case inspect.OpTruncate:
				return nil, nil
			case inspect.OpInsert:
				k, ok := encode(ch.Columns, ch.After)
				if !ok {
					return nil, nil
				}
				note(k, false, true)
			case inspect.OpDelete:
				k, ok := encode(ch.Columns, ch.Before)
				if !ok {
					return nil, nil
				}
				note(k, true, false)
			case inspect.OpUpdate:
				k, ok := encode(ch.Columns, ch.After)
				if !ok {
					return nil, nil
				}
				if old, ok := encode(ch.Columns, ch.Before); ok && old != k {
					// The key changed: the row leaves the old key and takes
					// the new one, which no row had.
					note(old, true, false)
					note(k, false, true)
					continue
				}
				note(k, true, true)
			}
		}
	}
	// The records found must be all the catalog counts for the table (a
	// table renamed in the transaction has records under another name):
	// else compare every row.
	for _, tt := range tx.Tables {
		if tt.TableID == u.id && tt.Total() != matched {
			return nil, nil
		}
	}
	return out, nil
}

// checkTouched makes sure the scans found every row the records name as
// they say: a key written differently in the records than in the rows
// would otherwise leave a change out of the undo unnoticed.
func checkTouched(touched map[string]*touchedRow, tx *Tx, table string) error {
	for _, r := range touched {
		if (r.existedBefore && r.before != 1) || (r.existsAfter && r.after != 1) {
			return fmt.Errorf("undo of transaction %d: %s: a row its records change is not where they say in the table before or after it; cannot undo it exactly", tx.Xid, table)
		}
	}
	return nil
}
