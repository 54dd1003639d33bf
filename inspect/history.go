package inspect

import (
	"context"
	"fmt"
	"io"
	"math"

	"lbt/catalog"
)

// HistoryOptions asks for the history of a table's rows.
type HistoryOptions struct {
	Table string // SQL name, like public.t or "My Table"
	// Key selects one row: col=value[,col=value...]. Empty reports every
	// change of every row.
	Key   string
	Range Range
	// FullScan reads every blob of the table instead of looking the row up
	// in the row index. It answers the same, slowly: it exists to measure
	// the index against.
	FullScan bool
}

// NewHistoryOptions returns the defaults: every change, whole archive.
func NewHistoryOptions() HistoryOptions { return HistoryOptions{} }

// History is the answer of a history query.
type History struct {
	Table   string            // qualified SQL name
	Key     map[string]string // the key asked for; nil for every row
	Changes []Change          // oldest first
	Notes   []string
}

// History reports every change of one row (or of every row), oldest first.
// With a key, it follows the row across updates that change its key, and
// reports a TRUNCATE that removed it.
func (in *Inspector) History(ctx context.Context, opts HistoryOptions) (*History, error) {
	if err := opts.Range.check(); err != nil {
		return nil, err
	}
	h := &History{}
	var parts []keyPart
	if opts.Key != "" {
		var err error
		if parts, err = parseKey(opts.Key); err != nil {
			return nil, err
		}
	}
	t, err := in.resolveTable(ctx, opts.Table, &h.Notes)
	if err != nil {
		return nil, err
	}
	h.Table = t.name
	if opts.Key == "" {
		if err := in.allRows(ctx, t, opts.Range, h); err != nil {
			return nil, err
		}
	} else {
		key, err := resolveKey(parts, t)
		if err != nil {
			return nil, err
		}
		h.Key = key
		w := &rowWalker{in: in, ctx: ctx, t: t, rng: opts.Range, cur: key, h: h}
		_, indexed := keyHashes(key, t.versions)
		if !indexed && !opts.FullScan {
			h.Notes = append(h.Notes, fmt.Sprintf("the row index of %s cannot be used for this key (its columns are not in table order): reading every change of the table", t.name))
		}
		if opts.FullScan || !indexed {
			err = w.scan()
		} else {
			err = w.indexed()
		}
		if err != nil {
			return nil, err
		}
		if len(h.Changes) == 0 {
			h.Notes = append(h.Notes, fmt.Sprintf("no change to the row %s of %s in the archive%s", key, t.name, rangeText(opts.Range)))
		}
	}
	actors := make(map[uint64]Actor)
	for i := range h.Changes {
		c := &h.Changes[i]
		a, ok := actors[c.LSN]
		if !ok {
			if a, err = in.actorOf(ctx, c.LSN); err != nil {
				return nil, err
			}
			actors[c.LSN] = a
		}
		c.Actor = a
		addActorHint(&h.Notes, a)
	}
	return h, nil
}

func rangeText(r Range) string {
	switch {
	case r.Since.IsZero() && r.Until.IsZero():
		return ""
	case r.Until.IsZero():
		return " since " + formatTime(r.Since)
	case r.Since.IsZero():
		return " before " + formatTime(r.Until)
	}
	return " between " + formatTime(r.Since) + " and " + formatTime(r.Until)
}

// allRows reports every change of a table in the range, each with the old
// values its record carries.
func (in *Inspector) allRows(ctx context.Context, t *table, rng Range, h *History) error {
	txs, err := in.tableTxs(ctx, t.id, rng, false)
	if err != nil {
		return err
	}
	return in.eachTableChange(ctx, t.id, txs, nil, func(meta txMeta, ch catalog.Change) error {
		v, err := in.version(ctx, t.id, ch.Schema)
		if err != nil {
			return err
		}
		h.Changes = append(h.Changes, changeFromRecord(v, meta, ch))
		return nil
	})
}

// eachTableChange calls fn for every change of the transactions txs (in
// commit order) to a table, reading the table's blobs that hold them one
// after the other. With keys, it passes only the changes of rows with that
// key, and truncates.
func (in *Inspector) eachTableChange(ctx context.Context, tableID int64, txs []txMeta, keys catalog.KeyFunc, fn func(txMeta, catalog.Change) error) error {
	if len(txs) == 0 {
		return nil
	}
	blobs, err := in.cat.Blobs(ctx, tableID, txs[0].lsn, txs[len(txs)-1].lsn)
	if err != nil {
		return err
	}
	next := 0 // txs[next] is the transaction of the current record or a later one
	for ch, err := range in.src.Changes(blobs, catalog.Filter{Keys: keys}) {
		if err != nil {
			return err
		}
		for next < len(txs) && txs[next].lsn < ch.CommitLSN {
			next++
		}
		if next == len(txs) {
			return nil
		}
		if txs[next].lsn != ch.CommitLSN {
			continue
		}
		if err := fn(txs[next], ch); err != nil {
			return err
		}
	}
	return nil
}

// tableTxs lists the transactions that changed a table within a range, in
// commit order; truncatesOnly keeps those with a TRUNCATE.
func (in *Inspector) tableTxs(ctx context.Context, tableID int64, rng Range, truncatesOnly bool) ([]txMeta, error) {
	var out []txMeta
	if truncatesOnly {
		lsns, err := in.cat.TableTruncates(ctx, tableID, 0, math.MaxUint64)
		if err != nil {
			return nil, err
		}
		for _, lsn := range lsns {
			tx, ok, err := in.cat.TxAt(ctx, lsn)
			if err != nil {
				return nil, err
			}
			if ok && rng.contains(tx.CommitTime) {
				out = append(out, txMeta{lsn: tx.CommitLSN, xid: tx.Xid, time: tx.CommitTime})
			}
		}
		return out, nil
	}
	txs, err := in.tableTxCounts(ctx, tableID, rng)
	for _, t := range txs {
		out = append(out, txMeta{lsn: t.CommitLSN, xid: t.Xid, time: t.CommitTime})
	}
	return out, err
}

// tableTxCounts lists the transactions that changed a table within a range,
// in commit order, with what each did to it.
func (in *Inspector) tableTxCounts(ctx context.Context, tableID int64, rng Range) ([]catalog.TableTx, error) {
	lo, hi, ok, err := in.cat.TxWindow(ctx, rng.Since, rng.Until)
	if err != nil || !ok {
		return nil, err
	}
	var out []catalog.TableTx
	err = in.cat.EachTableTx(ctx, tableID, lo, hi, func(t catalog.TableTx) error {
		if rng.contains(t.CommitTime) {
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// Write writes the history in format f.
func (h *History) Write(w io.Writer, f Format) error { return writeChanges(w, f, h.Changes) }
