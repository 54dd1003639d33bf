package inspect

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"lbt/catalog"
)

// TxOptions names one transaction: by its xid, or by the LSN of its commit.
type TxOptions struct {
	Xid uint32
	LSN uint64
}

// TxInfo is one archived transaction and everything it did.
type TxInfo struct {
	Time    time.Time
	Xid     uint32
	LSN     uint64 // commit LSN
	EndLSN  uint64
	Origin  string
	Actor   Actor
	Changes []Change // changes to every archived table, then messages
}

// TxReport is the answer of a tx query.
type TxReport struct {
	Txs   []TxInfo
	Notes []string
}

// Tx reports what one transaction did to the archived tables, and the
// logical messages it emitted. An xid names several transactions when the
// counter wrapped around; all are reported.
func (in *Inspector) Tx(ctx context.Context, opts TxOptions) (*TxReport, error) {
	r := &TxReport{}
	var found []catalog.Tx
	switch {
	case opts.LSN != 0:
		t, ok, err := in.txAtLSN(ctx, opts.LSN)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, inputErrorf("no transaction in the archive committed at LSN %s%s", catalog.FormatLSN(opts.LSN), in.coverage(ctx))
		}
		found = []catalog.Tx{t}
	case opts.Xid != 0:
		var err error
		if found, err = in.cat.TxsByXid(ctx, opts.Xid); err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, inputErrorf("no transaction with xid %d in the archive%s (only transactions that changed an archived table or emitted a transactional message are archived)", opts.Xid, in.coverage(ctx))
		}
		if len(found) > 1 {
			r.Notes = append(r.Notes, fmt.Sprintf("xid %d names %d archived transactions (the xid counter wrapped around): showing all; --lsn picks one", opts.Xid, len(found)))
		}
	default:
		return nil, inputErrorf("give an xid or a commit LSN")
	}
	var txs []TxInfo
	for _, t := range found {
		txs = append(txs, TxInfo{LSN: t.CommitLSN, EndLSN: t.EndLSN, Xid: t.Xid, Time: t.CommitTime, Origin: t.Origin})
	}
	for _, t := range txs {
		if err := in.fillTx(ctx, &t); err != nil {
			return nil, err
		}
		addActorHint(&r.Notes, t.Actor)
		r.Txs = append(r.Txs, t)
	}
	return r, nil
}

// txAtLSN returns the transaction that committed at lsn, or whose commit
// record holds it.
func (in *Inspector) txAtLSN(ctx context.Context, lsn uint64) (catalog.Tx, bool, error) {
	t, ok, err := in.cat.TxAt(ctx, lsn)
	if err != nil || ok {
		return t, ok, err
	}
	commit, ok, err := in.cat.TxContaining(ctx, lsn)
	if err != nil || !ok {
		return t, false, err
	}
	return in.cat.TxAt(ctx, commit)
}

// coverage describes the commit times the archive holds, for errors.
func (in *Inspector) coverage(ctx context.Context) string {
	first, last, ok, err := in.cat.CommitTimes(ctx)
	if err != nil || !ok {
		return " (the archive holds no transaction yet)"
	}
	return fmt.Sprintf(" (it holds transactions committed from %s to %s)", formatTime(first), formatTime(last))
}

// fillTx reads a transaction's changes and messages.
func (in *Inspector) fillTx(ctx context.Context, t *TxInfo) error {
	tables, _, err := in.cat.TxTables(ctx, t.LSN)
	if err != nil {
		return err
	}
	meta := txMeta{lsn: t.LSN, xid: t.Xid, time: t.Time}
	for _, tt := range tables {
		id := tt.TableID
		err := in.eachTxChange(ctx, id, t.LSN, nil, func(_ place, ch catalog.Change) error {
			v, err := in.version(ctx, id, ch.Schema)
			if err != nil {
				return err
			}
			t.Changes = append(t.Changes, changeFromRecord(v, meta, ch))
			return nil
		})
		if err != nil {
			return err
		}
	}
	msgs, err := in.cat.TxMessages(ctx, t.LSN)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Prefix == ActorPrefix {
			if !t.Actor.Known {
				t.Actor = parseActor(m.Content)
			}
			continue
		}
		t.Changes = append(t.Changes, Change{Time: t.Time, Xid: t.Xid, LSN: t.LSN, Op: OpMessage, Prefix: m.Prefix, Content: string(m.Content)})
	}
	for i := range t.Changes {
		t.Changes[i].Actor = t.Actor
	}
	return nil
}

// ChangesOptions asks which transactions changed a table. The filters
// find a mass change: Ops keeps the transactions that did any of those
// operations to the table, MinRows those that changed at least that many
// rows with them (with every operation when Ops is empty; a TRUNCATE counts
// once), Actor those whose recorded role is Actor.
type ChangesOptions struct {
	Table   string
	Range   Range
	Ops     []string // "insert", "update", "delete", "truncate"
	MinRows int64
	Actor   string
}

// changeFilter is ChangesOptions' filters, checked.
type changeFilter struct {
	ops     [4]bool // insert, update, delete, truncate
	anyOp   bool
	minRows int64
	actor   string
}

func (o ChangesOptions) filter() (changeFilter, error) {
	f := changeFilter{minRows: o.MinRows, actor: o.Actor}
	if o.MinRows < 0 {
		return f, inputErrorf("--min-rows %d: want a count of rows, 0 or more", o.MinRows)
	}
	for _, op := range o.Ops {
		i := slices.Index([]string{"insert", "update", "delete", "truncate"}, strings.ToLower(strings.TrimSpace(op)))
		if i < 0 {
			return f, inputErrorf("--op %q: want insert, update, delete or truncate", op)
		}
		f.ops[i], f.anyOp = true, true
	}
	if !f.anyOp {
		f.ops = [4]bool{true, true, true, true}
	}
	return f, nil
}

// rows is how many of the table's rows the transaction changed with the
// filter's operations; ok is false when it did none of them.
func (f changeFilter) rows(t catalog.TableTx) (n int64, ok bool) {
	for i, c := range [4]int64{t.Inserts, t.Updates, t.Deletes, t.Truncates} {
		if f.ops[i] && c > 0 {
			n, ok = n+c, true
		}
	}
	return n, ok
}

// TxSummary is what one transaction did to one table.
type TxSummary struct {
	Time      time.Time
	Xid       uint32
	LSN       uint64
	Actor     Actor
	Inserts   int
	Updates   int
	Deletes   int
	Truncates int
}

// ChangesReport is the answer of a changes query.
type ChangesReport struct {
	Table string
	Txs   []TxSummary
	Notes []string
}

// Changes lists the transactions that changed a table, oldest first, with
// their counts, from the catalog alone.
func (in *Inspector) Changes(ctx context.Context, opts ChangesOptions) (*ChangesReport, error) {
	if err := opts.Range.check(); err != nil {
		return nil, err
	}
	filter, err := opts.filter()
	if err != nil {
		return nil, err
	}
	r := &ChangesReport{}
	t, err := in.resolveTable(ctx, opts.Table, &r.Notes)
	if err != nil {
		return nil, err
	}
	r.Table = t.name
	txs, err := in.tableTxCounts(ctx, t.id, opts.Range)
	if err != nil {
		return nil, fmt.Errorf("catalog changes of %s: %w", t.name, err)
	}
	for _, tx := range txs {
		if n, ok := filter.rows(tx); !ok || n < filter.minRows {
			continue
		}
		s := TxSummary{LSN: tx.CommitLSN, Xid: tx.Xid, Time: tx.CommitTime,
			Inserts: int(tx.Inserts), Updates: int(tx.Updates), Deletes: int(tx.Deletes), Truncates: int(tx.Truncates)}
		actor, ok, err := in.cat.FirstMessage(ctx, tx.CommitLSN, ActorPrefix)
		if err != nil {
			return nil, fmt.Errorf("catalog changes of %s: %w", t.name, err)
		}
		if ok {
			s.Actor = parseActor(actor)
		}
		if filter.actor != "" && s.Actor.Role != filter.actor {
			continue
		}
		addActorHint(&r.Notes, s.Actor)
		r.Txs = append(r.Txs, s)
	}
	if len(r.Txs) == 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("no change to %s in the archive%s%s", t.name, rangeText(opts.Range), filter.text()))
	}
	return r, nil
}

// text describes the filters for a note, "" without any.
func (f changeFilter) text() string {
	var parts []string
	if f.anyOp {
		var ops []string
		for i, name := range []string{"INSERT", "UPDATE", "DELETE", "TRUNCATE"} {
			if f.ops[i] {
				ops = append(ops, name)
			}
		}
		parts = append(parts, "with "+strings.Join(ops, " or "))
	}
	if f.minRows > 0 {
		parts = append(parts, fmt.Sprintf("changing at least %d rows", f.minRows))
	}
	if f.actor != "" {
		parts = append(parts, "by role "+f.actor)
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, ", ")
}

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

// Write writes the transactions in format f.
func (r *ChangesReport) Write(w io.Writer, f Format) error {
	return writeRows(w, f, r.columns(), r.Txs)
}

// columns are the fields of a changes report, in every format.
func (r *ChangesReport) columns() []column[TxSummary] {
	return []column[TxSummary]{
		textColumn("time", "TIME", func(s TxSummary) string { return formatTime(s.Time) }),
		intColumn("xid", "XID", func(s TxSummary) int64 { return int64(s.Xid) }),
		textColumn("lsn", "LSN", func(s TxSummary) string { return catalog.FormatLSN(s.LSN) }),
		textColumn("table", "", func(TxSummary) string { return r.Table }),
		intColumn("inserts", "INSERTS", func(s TxSummary) int64 { return int64(s.Inserts) }),
		intColumn("updates", "UPDATES", func(s TxSummary) int64 { return int64(s.Updates) }),
		intColumn("deletes", "DELETES", func(s TxSummary) int64 { return int64(s.Deletes) }),
		intColumn("truncates", "TRUNCATES", func(s TxSummary) int64 { return int64(s.Truncates) }),
		actorColumn(func(s TxSummary) Actor { return s.Actor }),
	}
}
