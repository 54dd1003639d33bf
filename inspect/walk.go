package inspect

import (
	"context"
	"fmt"
	"slices"

	"lbt/catalog"
)

// alive is what the walk knows of whether the row exists.
type alive byte

const (
	aliveUnknown alive = iota
	aliveYes
	aliveNo
)

// rowWalker follows one row through the archive in commit order.
type rowWalker struct {
	in  *Inspector
	ctx context.Context
	t   *table
	rng Range
	h   *History

	cur    rowKey           // the row's key now
	curGen int              // counts the changes of cur
	state  map[string]Value // the row's values now, by column
	alive  alive

	queue      []txMeta          // transactions still to read, in commit order
	seen       map[uint64]bool   // transactions queued or read
	keyed      map[string]uint64 // keys looked up, and from which LSN
	indexedLSN map[uint64]bool   // transactions the row index names for the row
	scans      map[uint64]*txScan
}

// txScan is the search of one transaction for the row's changes, run ahead
// of the walk on another core.
type txScan struct {
	gen     int // of the key searched for
	done    chan struct{}
	matches []txMatch
	err     error
}

// txMatch is a change a transaction made to the row (or a TRUNCATE), with
// the place of its record.
type txMatch struct {
	at place
	ch catalog.Change
}

// matches returns the changes the transaction that committed at lsn made to
// rows with key k, and its truncates, after place from. It reads only the
// blobs that hold the transaction, and decodes only those changes.
func (in *Inspector) matches(ctx context.Context, tableID int64, lsn uint64, k rowKey, from place) ([]txMatch, error) {
	var out []txMatch
	err := in.eachTxChange(ctx, tableID, lsn, in.keyFunc(ctx, tableID, k), func(at place, ch catalog.Change) error {
		if at.after(from) {
			// The reader reuses its tuples; their values stay valid
			// with the blob.
			ch.Old, ch.New = slices.Clone(ch.Old), slices.Clone(ch.New)
			out = append(out, txMatch{at: at, ch: ch})
		}
		return nil
	})
	return out, err
}

// keyFunc returns the catalog.KeyFunc that selects the records of rows
// with key k.
func (in *Inspector) keyFunc(ctx context.Context, tableID int64, k rowKey) catalog.KeyFunc {
	type filter struct {
		cols []int
		vals []string
	}
	cache := make(map[int]filter)
	lastSchema := -1
	var last filter
	return func(schema int) ([]int, []string) {
		if schema == lastSchema {
			return last.cols, last.vals
		}
		f, ok := cache[schema]
		if !ok {
			f.cols, f.vals = []int{-1}, []string{""} // matches nothing
			if v, err := in.version(ctx, tableID, schema); err == nil && len(v.sortedNames) == len(k) {
				vals := make([]string, 0, len(k))
				for _, name := range v.sortedNames {
					if val, ok := k[name]; ok {
						vals = append(vals, val)
					}
				}
				if len(vals) == len(k) {
					// This version keys rows by these columns.
					f.cols, f.vals = v.sortedIdx, vals
				}
			}
			cache[schema] = f
		}
		lastSchema, last = schema, f
		return f.cols, f.vals
	}
}

// indexed walks the transactions the row index names for the row's keys,
// and the table's TRUNCATEs.
func (w *rowWalker) indexed() error {
	w.seen, w.keyed, w.indexedLSN = make(map[uint64]bool), make(map[string]uint64), make(map[uint64]bool)
	w.scans = make(map[uint64]*txScan)
	cands, err := w.lookup(w.cur, 0)
	if err != nil {
		return err
	}
	// Start from the last change before the range, which says what the
	// row was when the range begins.
	start := len(cands)
	for i, m := range cands {
		if !m.time.Before(w.rng.Since) || w.rng.Since.IsZero() {
			start = i
			break
		}
	}
	if start > 0 {
		start--
	}
	cands = cands[start:]
	if len(cands) == 0 {
		return nil
	}
	// TRUNCATE is not in the row index: the table's are in tx_truncate.
	truncs, err := w.in.tableTxs(w.ctx, w.t.id, Range{Until: w.rng.Until}, true)
	if err != nil {
		return err
	}
	for len(truncs) > 0 && truncs[0].lsn < cands[0].lsn {
		truncs = truncs[1:]
	}
	truncate := make(map[uint64]bool, len(truncs))
	for _, m := range truncs {
		truncate[m.lsn] = true
	}
	w.enqueue(cands)
	w.enqueue(truncs)
	ahead := 2 * cap(w.in.sem)
	for len(w.queue) > 0 {
		// Search the next few transactions on the other cores meanwhile.
		for _, m := range w.queue[:min(len(w.queue), ahead)] {
			if w.scans[m.lsn] == nil && w.indexedLSN[m.lsn] {
				w.startScan(m.lsn)
			}
		}
		m := w.queue[0]
		w.queue = w.queue[1:]
		if truncate[m.lsn] && !w.indexedLSN[m.lsn] && w.alive != aliveYes {
			continue // a TRUNCATE while the row did not exist
		}
		ms, err := w.scanResult(m.lsn)
		if err != nil {
			return err
		}
		for i := 0; i < len(ms); i++ {
			gen := w.curGen
			if err := w.record(m, ms[i].ch); err != nil {
				return err
			}
			if w.curGen != gen {
				// The key changed: the rest of the transaction may
				// change the row under its new key.
				rest, err := w.in.matches(w.ctx, w.t.id, m.lsn, w.cur, ms[i].at)
				if err != nil {
					return err
				}
				ms = append(ms[:i+1], rest...)
			}
		}
	}
	return nil
}

// startScan searches a transaction for the row's current key in the
// background.
func (w *rowWalker) startScan(lsn uint64) {
	s := &txScan{gen: w.curGen, done: make(chan struct{})}
	w.scans[lsn] = s
	k := w.cur
	w.in.background(w.ctx, func() {
		s.matches, s.err = w.in.matches(w.ctx, w.t.id, lsn, k, place{-1, 0})
		close(s.done)
	}, func() {
		s.err = w.ctx.Err()
		close(s.done)
	})
}

// scanResult returns the row's changes in a transaction: those the
// background search found, unless the key changed since it began.
func (w *rowWalker) scanResult(lsn uint64) ([]txMatch, error) {
	s := w.scans[lsn]
	delete(w.scans, lsn)
	if s != nil {
		<-s.done
		if s.err != nil {
			return nil, s.err
		}
		if s.gen == w.curGen {
			return s.matches, nil
		}
	}
	return w.in.matches(w.ctx, w.t.id, lsn, w.cur, place{-1, 0})
}

// lookup returns the transactions that changed rows with key k from LSN
// from on, before the end of the range.
func (w *rowWalker) lookup(k rowKey, from uint64) ([]txMeta, error) {
	hashes, _ := keyHashes(k, w.t.versions)
	if len(hashes) == 0 {
		return nil, nil
	}
	if prev, ok := w.keyed[k.String()]; ok && prev <= from {
		return nil, nil
	}
	w.keyed[k.String()] = from
	txs, err := w.in.cat.RowKeyTxs(w.ctx, w.t.id, hashes, from, w.rng.Until)
	if err != nil {
		return nil, err
	}
	ms := make([]txMeta, len(txs))
	for i, t := range txs {
		ms[i] = txMeta{lsn: t.CommitLSN, xid: t.Xid, time: t.CommitTime}
		w.indexedLSN[t.CommitLSN] = true
	}
	return ms, nil
}

// enqueue adds transactions not yet queued or read, keeping commit order.
func (w *rowWalker) enqueue(ms []txMeta) {
	for _, m := range ms {
		if w.seen[m.lsn] {
			continue
		}
		w.seen[m.lsn] = true
		i, _ := slices.BinarySearchFunc(w.queue, m.lsn, func(a txMeta, lsn uint64) int {
			switch {
			case a.lsn < lsn:
				return -1
			case a.lsn > lsn:
				return 1
			}
			return 0
		})
		w.queue = slices.Insert(w.queue, i, m)
	}
}

// scan walks every change of the table, in commit order: the slow way,
// for comparison and for keys the row index cannot find.
func (w *rowWalker) scan() error {
	txs, err := w.in.tableTxs(w.ctx, w.t.id, Range{Until: w.rng.Until}, false)
	if err != nil {
		return err
	}
	gen := -1
	var keys catalog.KeyFunc
	filter := func(schema int) ([]int, []string) {
		if gen != w.curGen {
			gen, keys = w.curGen, w.in.keyFunc(w.ctx, w.t.id, w.cur)
		}
		return keys(schema)
	}
	return w.in.eachTableChange(w.ctx, w.t.id, txs, filter, w.record)
}

// record applies one archived change to the walk, and reports it when it
// concerns the row and lies in the range.
func (w *rowWalker) record(m txMeta, ch catalog.Change) error {
	v, err := w.in.version(w.ctx, w.t.id, ch.Schema)
	if err != nil {
		return err
	}
	var c Change
	switch ch.Tag {
	case catalog.TagTruncate:
		if w.alive != aliveYes {
			return nil
		}
		c.Op = OpTruncate
		c.Key = w.cur
		c.Before = w.merge(v.columns, nil)
		c.Note = truncateNote(ch.Truncate) + " removed the row"
		w.alive, w.state = aliveNo, nil
	case catalog.TagInsert:
		if !tupleHasKey(v, ch.New, w.cur) {
			return nil
		}
		c.Op = OpInsert
		c.Key = w.cur
		c.After = tupleValues(v, ch.New, false)
		w.setState(v.columns, c.After)
		w.alive = aliveYes
	case catalog.TagUpdate:
		newMatch := tupleHasKey(v, ch.New, w.cur)
		oldMatch := newMatch
		if ch.OldKind != catalog.OldNone {
			oldMatch = tupleHasKey(v, ch.Old, w.cur)
		}
		if !newMatch && !oldMatch {
			return nil
		}
		c.Op = OpUpdate
		old := tupleValues(v, ch.Old, ch.OldKind == catalog.OldKey)
		if oldMatch {
			c.Before = w.merge(v.columns, old)
		} else {
			// Another row took this key: its earlier values are those of
			// another key's history.
			c.Before = old
			if c.Before == nil {
				c.Before = make([]Value, len(v.columns))
			}
		}
		c.After = tupleValues(v, ch.New, false)
		c.Changed = changedColumns(v.columns, c.Before, c.After)
		// An unchanged TOAST value keeps the one before.
		next := slices.Clone(c.After)
		for i, val := range next {
			if val.Kind == Unchanged && c.Before[i].known() {
				next[i] = c.Before[i]
			}
		}
		newKey := tupleKey(v, ch.New)
		switch {
		case oldMatch && !newMatch:
			c.Note = fmt.Sprintf("key changed from %s to %s: following the row", w.cur, newKey)
			if newKey != nil {
				w.cur = newKey
				w.curGen++
				if w.seen != nil {
					ms, err := w.lookup(newKey, m.lsn+1)
					if err != nil {
						return err
					}
					w.enqueue(ms)
				}
			}
		case newMatch && !oldMatch:
			c.Note = "key changed from " + tupleKey(v, ch.Old).String()
		}
		c.Key = w.cur
		w.setState(v.columns, next)
		w.alive = aliveYes
	case catalog.TagDelete:
		if !tupleHasKey(v, ch.Old, w.cur) {
			return nil
		}
		c.Op = OpDelete
		c.Key = w.cur
		c.Before = w.merge(v.columns, tupleValues(v, ch.Old, ch.OldKind == catalog.OldKey))
		w.alive, w.state = aliveNo, nil
	default:
		return nil
	}
	if w.rng.contains(m.time) {
		c.Time, c.Xid, c.LSN, c.Table, c.Columns = m.time, m.xid, m.lsn, v.name, v.columns
		w.h.Changes = append(w.h.Changes, c)
	}
	return nil
}

// merge returns the row's values before a change: those the record carries,
// else those the walk knows.
func (w *rowWalker) merge(cols []string, old []Value) []Value {
	out := make([]Value, len(cols))
	for i, name := range cols {
		if i < len(old) && old[i].known() {
			out[i] = old[i]
		} else if v, ok := w.state[name]; ok {
			out[i] = v
		}
	}
	return out
}

func (w *rowWalker) setState(cols []string, vals []Value) {
	w.state = make(map[string]Value, len(cols))
	for i, name := range cols {
		if vals[i].known() {
			w.state[name] = vals[i]
		}
	}
}
