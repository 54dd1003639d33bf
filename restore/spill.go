package restore

import (
	"bytes"
	"fmt"
	"os"
	"slices"

	"lbt/catalog"
)

// Past its memory budget, the reducer spills: the reduced changes in
// memory are sorted by (hash, key) and merged into one file of the state
// of every key reduced so far, and memory starts empty again. A key's
// state in memory is then its net effect since the last spill, and what
// depends on its earlier state is settled when the two are merged:
//
//   - a change that needs the row to exist before (an update or delete of
//     a key not in memory) is checked against the file: a deleted row is an
//     error; a key the file lacks must be in the basebackup (or, after a
//     TRUNCATE, is an error);
//   - unchanged TOAST values take the earlier image's values, from the
//     file, following key changes: before the merge, the file is read once
//     for the keys the rows in memory wait for (the reducer's pending map);
//   - without a key, counts are added.
//
// Every image left with unchanged TOAST values then waits for the
// basebackup row of one key, its origin. While the basebackup streams
// past, only a Bloom filter of the keys in the file is in memory: a row
// whose key is not in it goes to the COPY at once; the others (the rows
// the changes touched, and a few false positives) are sorted into
// candidates, and joined with the file by (hash, full key) at the end. A
// candidate whose key the changes did not touch goes to the COPY as it is;
// one they touched supplies the values its image waits for. Images that
// wait for another key's row (after a key change) are sorted by that key
// and joined with those rows last.
//
// A TRUNCATE drops the file with the rest.

// spiller holds the reduced changes that went to files.
type spiller struct {
	acc *spillFile // the state of every key spilled, sorted by (hash, key)

	// While the basebackup is read: the keys acc holds (for a table
	// without a key: the rows it removes), the basebackup rows they may
	// match, and where the basebackup's fields go.
	filter  bloom
	cands   *sorter
	defCols []int
}

// limitMemory makes the reducer spill to files in dir past budget bytes
// of reduced changes in memory; 0 is no limit.
func (r *reducer) limitMemory(budget int64, dir string) {
	if dir == "" {
		dir = os.TempDir()
	}
	r.budget, r.tempDir = budget, dir
	if budget > 0 && r.t.len() == 0 && len(r.t.cells) > int(budget/256) {
		r.reset()
	}
}

// close releases the spill files.
func (r *reducer) close() { r.dropSpill() }

func (r *reducer) dropSpill() {
	if r.sp == nil {
		return
	}
	r.sp.acc.close()
	r.sp.cands.close()
	r.sp = nil
}

// spill merges the reduced changes in memory into the spill file and
// empties memory.
func (r *reducer) spill() error {
	if r.sp == nil {
		r.sp = &spiller{}
	}
	t := r.t
	cells := make([]cell, 0, t.len())
	for _, c := range t.cells {
		if c.slot != 0 {
			cells = append(cells, c)
		}
	}
	key := func(c cell) []byte { return t.arena.bytes(t.slots[c.slot].key) }
	slices.SortFunc(cells, func(a, b cell) int { return less(a.hash, key(a), b.hash, key(b)) })

	if r.keyed() && len(r.waiting) > 0 && r.sp.acc != nil {
		if err := r.fillFromSpill(); err != nil {
			return err
		}
	}
	// Keys whose basebackup row supplies another key's values.
	var origins map[string]bool
	for k, o := range r.waiting {
		if k != o {
			if origins == nil {
				origins = make(map[string]bool)
			}
			origins[o] = true
		}
	}
	out, err := newSpillFile(r.tempDir)
	if err != nil {
		return err
	}
	if err := r.mergeSpill(&tableIter{r: r, cells: cells}, out, origins); err != nil {
		out.close()
		return err
	}
	r.sp.acc.close()
	r.sp.acc = out
	r.spills++
	r.t = nil
	r.reset()
	return nil
}

// fillFromSpill gives the rows in memory that wait for their earlier
// values (unchanged TOAST) the values of the earlier state in the file.
// What that state still waits for itself becomes what they wait for.
func (r *reducer) fillFromSpill() error {
	rd, err := r.sp.acc.reader()
	if err != nil {
		return err
	}
	t := r.t
	for {
		a, ok, err := rd.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		k, ok := r.pending[string(a.key)]
		if !ok {
			continue
		}
		if a.flags&fDeleted != 0 {
			return fmt.Errorf("update of a row that is deleted (key %s)", showKey(a.key))
		}
		idx := t.get([]byte(k))
		if idx == 0 {
			return fmt.Errorf("restore: lost track of a row waiting for earlier values")
		}
		row, err := decodeRow(r.rowBuf[:0], t.arena.bytes(t.slots[idx].row), r.width)
		if err != nil {
			return err
		}
		r.rowBuf = row
		prev, err := decodeRow(r.prevBuf[:0], a.row, r.width)
		if err != nil {
			return err
		}
		r.prevBuf = prev
		waits := false
		for j := range row {
			if row[j].kind == catalog.ValueUnchanged {
				row[j] = prev[j]
				waits = waits || prev[j].kind == catalog.ValueUnchanged
			}
		}
		r.enc = appendRow(r.enc[:0], row)
		t.setRow(idx, r.enc)
		if waits {
			r.waiting[k] = string(a.origin)
		} else {
			delete(r.waiting, k)
		}
		delete(r.pending, string(a.key))
	}
}

// mergeSpill writes the merge of the spill file (older) and the table in
// memory (newer) to out.
func (r *reducer) mergeSpill(mem entryIter, out *spillFile, origins map[string]bool) error {
	tp, err := newPeeker(mem)
	if err != nil {
		return err
	}
	ap := &peeker{}
	if r.sp.acc != nil {
		rd, err := r.sp.acc.reader()
		if err != nil {
			return err
		}
		if ap, err = newPeeker(rd); err != nil {
			return err
		}
	}
	mark := func(e *entry) {
		if origins[string(e.key)] {
			e.flags |= fOrigin
		}
	}
	for tp.ok || ap.ok {
		cmp := mergeOrder(ap, tp)
		var e entry
		switch {
		case cmp < 0: // only in the file
			e = ap.cur
		case cmp > 0: // only in memory
			e = tp.cur
			if r.keyed() && e.flags&fFromBase != 0 && r.truncated {
				return fmt.Errorf("update or delete of a row that is not there after the TRUNCATE (key %s)", showKey(e.key))
			}
		default:
			a, t := ap.cur, tp.cur
			e = t
			if r.keyed() {
				if t.flags&fFromBase != 0 && a.flags&fDeleted != 0 {
					return fmt.Errorf("update or delete of a row that is already deleted (key %s)", showKey(t.key))
				}
				// Whether the basebackup must hold the row was decided by
				// the key's first change.
				e.flags = t.flags&^fFromBase | a.flags&(fFromBase|fOrigin)
			} else {
				e.count += a.count
			}
		}
		switch {
		case !r.keyed() && e.count == 0:
			// nothing left of the row
		case cmp < 0 && !origins[string(e.key)]:
			err = out.writeRaw(e.raw) // most of the file, as it was
		default:
			mark(&e)
			err = out.write(&e)
		}
		if err != nil {
			return err
		}
		if cmp <= 0 {
			if err := ap.advance(); err != nil {
				return err
			}
		}
		if cmp >= 0 {
			if err := tp.advance(); err != nil {
				return err
			}
		}
	}
	return nil
}

// tableIter yields the table in memory as entries, in sorted order.
type tableIter struct {
	r     *reducer
	cells []cell
	i     int
}

func (it *tableIter) next() (entry, bool, error) {
	if it.i >= len(it.cells) {
		return entry{}, false, nil
	}
	c := it.cells[it.i]
	it.i++
	t := it.r.t
	s := &t.slots[c.slot]
	e := entry{h: c.hash, key: t.arena.bytes(s.key), flags: s.flags & (fDeleted | fFromBase), count: int64(s.count)}
	if it.r.keyed() && s.flags&fDeleted == 0 {
		e.row = t.arena.bytes(s.row)
		if o, ok := it.r.waiting[string(e.key)]; ok {
			e.flags |= fWaits
			e.origin = []byte(o)
		}
	}
	return e, true, nil
}

// settle spills what is still in memory, so that the file holds
// everything.
func (r *reducer) settle() error {
	if r.sp != nil && r.t.len() > 0 {
		return r.spill()
	}
	return nil
}

// spillMerger prepares the basebackup's pass: the Bloom filter of what
// the file holds, and the sorter of candidate rows.
func (r *reducer) spillMerger(defCols []int) error {
	if err := r.settle(); err != nil {
		return err
	}
	sp := r.sp
	sp.defCols = defCols
	sp.filter = newBloom(sp.acc.n, r.budget/4)
	rd, err := sp.acc.reader()
	if err != nil {
		return err
	}
	for {
		e, ok, err := rd.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if r.keyed() || e.count < 0 {
			sp.filter.add(e.h)
		}
	}
	sp.cands = newSorter(r.tempDir, r.budget-int64(len(sp.filter.bits))*8)
	return nil
}

// keepSpilled is keep with the changes in files: a basebackup row that
// may match a key they touched is held back among the candidates.
func (b *baseMerger) keepSpilled(fields [][]byte) (bool, error) {
	r, sp := b.r, b.r.sp
	key, err := b.matchKey(fields)
	if err != nil {
		return false, err
	}
	h := r.t.hash(key)
	if !sp.filter.has(h) {
		return true, nil
	}
	e := entry{h: h, key: key, count: 1}
	if r.keyed() {
		if b.row, err = b.encodeFields(b.row[:0], fields, b.defCols); err != nil {
			return false, err
		}
		e.row = b.row
	}
	b.shared.mu.Lock()
	defer b.shared.mu.Unlock()
	return false, sp.cands.add(&e)
}

// eachReduced calls f for every row the reduced changes add, as each does
// before the basebackup is read; unchanged TOAST values are not filled in.
func (r *reducer) eachReduced(f func(row []value) error) error {
	if err := r.settle(); err != nil {
		return err
	}
	return r.eachAccumulated(f, func(e *entry) (bool, error) {
		return !r.keyed() || e.flags&fDeleted == 0, nil
	})
}

// eachAccumulated calls f for the rows of every accumulated entry that use
// accepts: a keyed entry stands for its row once, an unkeyed one for its
// row count times. An error from use stops the walk.
func (r *reducer) eachAccumulated(f func(row []value) error, use func(e *entry) (bool, error)) error {
	rd, err := r.sp.acc.reader()
	if err != nil {
		return err
	}
	var vals []value
	for {
		e, ok, err := rd.next()
		if err != nil || !ok {
			return err
		}
		if ok, err := use(&e); err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		enc, n := e.row, int64(1)
		if !r.keyed() {
			enc, n = e.key, e.count
		}
		if n > 0 {
			if vals, err = decodeRow(vals[:0], enc, r.width); err != nil {
				return err
			}
		}
		for range n {
			if err := f(vals); err != nil {
				return err
			}
		}
	}
}

// eachSpilled is each with the changes in files: after the basebackup
// was read, it joins the candidates with the file; after a TRUNCATE, it
// reads the file.
func (r *reducer) eachSpilled(f func(row []value) error) error {
	if err := r.settle(); err != nil {
		return err
	}
	sp := r.sp
	if sp.cands == nil {
		if !r.truncated {
			return fmt.Errorf("restore: the basebackup was not read")
		}
		return r.eachAfterTruncate(f)
	}
	ci, err := sp.cands.iter()
	if err != nil {
		return err
	}
	cp, err := newPeeker(ci)
	if err != nil {
		return err
	}
	rd, err := sp.acc.reader()
	if err != nil {
		return err
	}
	ap, err := newPeeker(rd)
	if err != nil {
		return err
	}
	j := &joiner{r: r, f: f}
	defer j.close()
	for cp.ok || ap.ok {
		cmp := mergeOrder(ap, cp)
		switch {
		case !r.keyed():
			err = j.multiset(cp, ap, cmp)
		case cmp > 0: // a basebackup row the changes did not touch
			err = j.emit(cp.cur.row)
			if err == nil {
				err = cp.advance()
			}
		default:
			err = j.keyed(cp, ap, cmp == 0)
		}
		if err != nil {
			return err
		}
	}
	return j.fillOthers()
}

// joiner joins the basebackup's candidate rows with the spilled changes.
type joiner struct {
	r       *reducer
	f       func(row []value) error
	vals    []value
	base    []value
	others  *sorter    // images waiting for another key's basebackup row, by that key
	origins *spillFile // the basebackup rows they wait for, in order
	key     []byte
}

func (j *joiner) close() {
	j.others.close()
	j.origins.close()
}

func (j *joiner) emit(enc []byte) error {
	var err error
	if j.vals, err = decodeRow(j.vals[:0], enc, j.r.width); err != nil {
		return err
	}
	return j.f(j.vals)
}

// fill emits an image with its unchanged TOAST values taken from a
// basebackup row in the restored shape.
func (j *joiner) fill(image, base []byte) error {
	var err error
	if j.vals, err = decodeRow(j.vals[:0], image, j.r.width); err != nil {
		return err
	}
	if j.base, err = decodeRow(j.base[:0], base, j.r.width); err != nil {
		return err
	}
	for i := range j.vals {
		if j.vals[i].kind != catalog.ValueUnchanged {
			continue
		}
		if j.r.sp.defCols[i] < 0 {
			return fmt.Errorf("an unchanged TOAST value has no earlier value in the basebackup (column %d was added since)", i+1)
		}
		j.vals[i] = j.base[i]
	}
	return j.f(j.vals)
}

// keyed handles a key of the file, with its basebackup row when found.
func (j *joiner) keyed(cp, ap *peeker, found bool) error {
	a := ap.cur
	switch {
	case !found && a.flags&fFromBase != 0:
		return fmt.Errorf("the deltas change a row that is not in the basebackup (key %s): the archive is inconsistent, or a key column's type changed in a way that changed its text", showKey(a.key))
	case found && a.flags&fOrigin != 0:
		if j.origins == nil {
			var err error
			if j.origins, err = newSpillFile(j.r.tempDir); err != nil {
				return err
			}
		}
		if err := j.origins.write(&entry{h: cp.cur.h, key: cp.cur.key, row: cp.cur.row}); err != nil {
			return err
		}
	}
	var err error
	switch {
	case a.flags&fDeleted != 0:
	case a.flags&fWaits == 0:
		err = j.emit(a.row)
	case bytes.Equal(a.origin, a.key):
		if !found {
			return fmt.Errorf("an unchanged TOAST value has no earlier value (key %s)", showKey(a.key))
		}
		err = j.fill(a.row, cp.cur.row)
	default:
		if j.others == nil {
			j.others = newSorter(j.r.tempDir, j.r.budget/2)
		}
		err = j.others.add(&entry{h: j.r.t.hash(a.origin), key: a.origin, row: a.row})
	}
	if err != nil {
		return err
	}
	if found {
		// A basebackup holding a key twice is left out twice, as in memory.
		j.key = append(j.key[:0], a.key...)
		for cp.ok && cp.cur.h == a.h && bytes.Equal(cp.cur.key, j.key) {
			if err := cp.advance(); err != nil {
				return err
			}
		}
	}
	return ap.advance()
}

// multiset handles a distinct row: its copies in the basebackup and the
// count the changes add.
func (j *joiner) multiset(cp, ap *peeker, cmp int) error {
	var n int64
	if cmp <= 0 {
		n = ap.cur.count
		j.key = append(j.key[:0], ap.cur.key...)
		if err := ap.advance(); err != nil {
			return err
		}
	} else {
		j.key = append(j.key[:0], cp.cur.key...)
	}
	if cmp >= 0 {
		h := cp.cur.h
		for cp.ok && cp.cur.h == h && bytes.Equal(cp.cur.key, j.key) {
			n += cp.cur.count
			if err := cp.advance(); err != nil {
				return err
			}
		}
	}
	if n < 0 {
		row, _ := decodeRow(nil, j.key, j.r.width)
		return fmt.Errorf("the deltas delete a row that is not in the basebackup (%s): the archive is inconsistent, or a column's type changed in a way that changed its text", showRow(row))
	}
	if n > 0 {
		var err error
		if j.vals, err = decodeRow(j.vals[:0], j.key, j.r.width); err != nil {
			return err
		}
	}
	for range n {
		if err := j.f(j.vals); err != nil {
			return err
		}
	}
	return nil
}

// fillOthers emits the images that wait for another key's basebackup row
// (their key changed), joined with those rows.
func (j *joiner) fillOthers() error {
	if j.others == nil {
		return nil
	}
	xi, err := j.others.iter()
	if err != nil {
		return err
	}
	op := &peeker{}
	if j.origins != nil {
		rd, err := j.origins.reader()
		if err != nil {
			return err
		}
		if op, err = newPeeker(rd); err != nil {
			return err
		}
	}
	for {
		x, ok, err := xi.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		for op.ok && less(op.cur.h, op.cur.key, x.h, x.key) < 0 {
			if err := op.advance(); err != nil {
				return err
			}
		}
		if !op.ok || op.cur.h != x.h || !bytes.Equal(op.cur.key, x.key) {
			return fmt.Errorf("an unchanged TOAST value has no earlier value (key %s)", showKey(x.key))
		}
		if err := j.fill(x.row, op.cur.row); err != nil {
			return err
		}
	}
}

// eachAfterTruncate emits the spilled rows when no basebackup row counts.
func (r *reducer) eachAfterTruncate(f func(row []value) error) error {
	return r.eachAccumulated(f, func(e *entry) (bool, error) {
		switch {
		case !r.keyed():
			if e.count < 0 {
				row, _ := decodeRow(nil, e.key, r.width)
				return false, fmt.Errorf("the deltas delete a row that is not there after the TRUNCATE (%s)", showRow(row))
			}
		case e.flags&fFromBase != 0:
			return false, fmt.Errorf("update or delete of a row that is not there after the TRUNCATE (key %s)", showKey(e.key))
		case e.flags&fWaits != 0:
			return false, fmt.Errorf("an unchanged TOAST value has no earlier value (key %s)", showKey(e.key))
		case e.flags&fDeleted != 0:
			return false, nil
		}
		return true, nil
	})
}
