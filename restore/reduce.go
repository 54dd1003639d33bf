package restore

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"sync"

	"lbt/catalog"
)

// versionMap says where the restored table's columns are in the tuples of
// one schema version.
type versionMap struct {
	cols []int  // for each restored column, its position in the version's tuples, or -1
	key  []bool // for each position of the version's tuples, whether it is a replica-identity column
}

// counts are the changes read, for the progress display and --verify.
type counts struct {
	Inserts, Updates, Deletes, Truncates int64
}

// reducer folds the deltas, in commit order, into their net effect on the
// table: for a table with a key, the last image (or deletion) of every key
// they touched; for a table without one, the multiset of rows they added
// and removed. Nothing is replayed one statement at a time.
type reducer struct {
	width   int
	keyCols []int // restored positions of the key; nil: multiset mode
	maps    map[int]versionMap
	missing []value // for each restored column, what tuples of a version without it read; NULL when nil

	truncated bool // a TRUNCATE removed every basebackup row

	// keyed mode: a slot per key; multiset mode: a slot per distinct row
	t *rowTable
	// keyed mode: rows whose unchanged TOAST values still wait for the
	// basebackup row they come from, both ways: basebackup key -> the
	// row's key now, and back
	pending, waiting map[string]string

	total counts
	// Since the last TRUNCATE: inserts and deletes of the truncating
	// transaction after it, and that transaction's commit LSN.
	truncLSN           uint64
	truncIns, truncDel int64

	rowBuf, oldBuf, prevBuf []value
	enc, keyBuf, key2Buf    []byte
	hint                    int

	// Past budget bytes in memory (0: no limit), the reduced changes spill
	// to files in tempDir; sp holds them, nil while all are in memory.
	seed      maphash.Seed
	mask      uint64
	budget    int64
	tempDir   string
	sp        *spiller
	waitBytes int64 // about what pending and waiting hold
	spills    int
}

// newReducer makes a reducer for about hint changes.
func newReducer(width int, keyCols []int, maps map[int]versionMap, hint int) *reducer {
	r := &reducer{width: width, keyCols: keyCols, maps: maps, hint: hint, seed: maphash.MakeSeed(), mask: ^uint64(0)}
	r.reset()
	return r
}

func (r *reducer) keyed() bool { return r.keyCols != nil }

func (r *reducer) reset() {
	hint := r.hint
	if r.t != nil {
		hint = r.t.len() // after a TRUNCATE: as many keys as before it
	}
	if r.budget > 0 {
		hint = min(hint, int(r.budget/256))
	}
	r.t = newRowTable(hint, r.seed, r.mask)
	if r.budget > 0 {
		// Chunks in proportion to the budget, so that a small one is
		// not exceeded by the first.
		r.t.arena.chunk = int(min(max(r.budget/16, 4<<10), arenaChunk))
	}
	r.pending = make(map[string]string)
	r.waiting = make(map[string]string)
	r.waitBytes = 0
}

// mapTuple places a tuple of a schema version into the restored shape.
// Columns the version lacks (added later) are NULL, or their fast default.
func (r *reducer) mapTuple(dst []value, t catalog.Tuple, m versionMap) ([]value, error) {
	dst = dst[:0]
	for j, i := range m.cols {
		switch {
		case i < 0:
			dst = append(dst, r.missingValue(j))
		case i >= len(t):
			return nil, fmt.Errorf("%w: tuple of %d columns, schema version has more", catalog.ErrCorrupt, len(t))
		default:
			dst = append(dst, value{kind: t[i].Kind, data: t[i].Data})
		}
	}
	return dst, nil
}

// missingValue is what a row from a shape without restored column j reads.
func (r *reducer) missingValue(j int) value {
	if r.missing == nil {
		return value{kind: catalog.ValueNull}
	}
	return r.missing[j]
}

// appendKey appends a row's key, encoded; ok is false when a key column's
// value is not in the row (unchanged TOAST).
func (r *reducer) appendKey(dst []byte, row []value) ([]byte, bool) {
	for _, j := range r.keyCols {
		if row[j].kind == catalog.ValueUnchanged {
			return dst, false
		}
		dst = catalog.AppendValue(dst, row[j].kind, row[j].data)
	}
	return dst, true
}

// apply folds one change in. Changes must come in commit order.
func (r *reducer) apply(ch catalog.Change) error {
	m, ok := r.maps[ch.Schema]
	if !ok {
		return fmt.Errorf("%w: change at LSN %s uses schema version %d, which the catalog does not have", catalog.ErrCorrupt, catalog.FormatLSN(ch.CommitLSN), ch.Schema)
	}
	switch ch.Tag {
	case catalog.TagInsert:
		r.total.Inserts++
		if ch.CommitLSN == r.truncLSN {
			r.truncIns++
		}
	case catalog.TagUpdate:
		r.total.Updates++
	case catalog.TagDelete:
		r.total.Deletes++
		if ch.CommitLSN == r.truncLSN {
			r.truncDel++
		}
	case catalog.TagTruncate:
		r.total.Truncates++
		r.truncated = true
		r.truncLSN, r.truncIns, r.truncDel = ch.CommitLSN, 0, 0
		r.dropSpill() // what was spilled is gone as well
		r.reset()
		return nil
	}
	var err error
	if r.keyed() {
		err = r.applyKeyed(ch, m)
	} else {
		err = r.applyMultiset(ch, m)
	}
	if err != nil {
		return fmt.Errorf("change at LSN %s (xid %d): %w", catalog.FormatLSN(ch.CommitLSN), ch.Xid, err)
	}
	if r.budget > 0 && r.t.memBytes()+r.waitBytes > r.budget {
		return r.spill()
	}
	return nil
}

func (r *reducer) applyKeyed(ch catalog.Change, m versionMap) error {
	t := r.t
	var err error
	switch ch.Tag {
	case catalog.TagInsert:
		if r.rowBuf, err = r.mapTuple(r.rowBuf, ch.New, m); err != nil {
			return err
		}
		if hasUnchanged(r.rowBuf) {
			return fmt.Errorf("%w: insert with an unchanged TOAST value", catalog.ErrCorrupt)
		}
		key, ok := r.appendKey(r.keyBuf[:0], r.rowBuf)
		r.keyBuf = key
		if !ok {
			return fmt.Errorf("%w: insert without its key", catalog.ErrCorrupt)
		}
		idx := t.getOrAdd(key)
		r.resolved(key)
		r.enc = appendRow(r.enc[:0], r.rowBuf)
		t.setRow(idx, r.enc)
		t.slots[idx].flags &^= fDeleted
		return nil

	case catalog.TagDelete:
		if ch.OldKind == catalog.OldNone {
			return fmt.Errorf("%w: delete without its old row", catalog.ErrCorrupt)
		}
		if r.oldBuf, err = r.mapTuple(r.oldBuf, ch.Old, m); err != nil {
			return err
		}
		if err := r.checkOldKey(ch.OldKind, m); err != nil {
			return err
		}
		key, ok := r.appendKey(r.keyBuf[:0], r.oldBuf)
		r.keyBuf = key
		if !ok {
			return fmt.Errorf("%w: delete without its key", catalog.ErrCorrupt)
		}
		idx := t.get(key)
		switch {
		case idx == 0:
			// With changes spilled, the row may be in a spill file: the
			// merge checks it.
			if r.truncated && r.sp == nil {
				return fmt.Errorf("delete of a row that is not there after the TRUNCATE (key %s)", showKey(key))
			}
			idx = t.getOrAdd(key)
			t.slots[idx].flags |= fFromBase
		case t.slots[idx].flags&fDeleted != 0:
			return fmt.Errorf("delete of a row that is already deleted (key %s)", showKey(key))
		default:
			r.resolved(key)
		}
		t.slots[idx].flags |= fDeleted
		t.slots[idx].row = span{}
		return nil

	case catalog.TagUpdate:
		if r.rowBuf, err = r.mapTuple(r.rowBuf, ch.New, m); err != nil {
			return err
		}
		hasOld := ch.OldKind != catalog.OldNone
		if hasOld {
			if r.oldBuf, err = r.mapTuple(r.oldBuf, ch.Old, m); err != nil {
				return err
			}
			if err := r.checkOldKey(ch.OldKind, m); err != nil {
				return err
			}
			// A key column that is an unchanged TOAST value is the old one.
			for _, j := range r.keyCols {
				if r.rowBuf[j].kind == catalog.ValueUnchanged {
					r.rowBuf[j] = r.oldBuf[j]
				}
			}
		}
		newKey, ok := r.appendKey(r.keyBuf[:0], r.rowBuf)
		r.keyBuf = newKey
		if !ok {
			return fmt.Errorf("update without its key (an unchanged TOAST value in a key column)")
		}
		oldKey := newKey
		if hasOld {
			if oldKey, ok = r.appendKey(r.key2Buf[:0], r.oldBuf); !ok {
				return fmt.Errorf("%w: update without its old key", catalog.ErrCorrupt)
			}
			r.key2Buf = oldKey
		}
		prevHash, prevPos, prev := t.find(oldKey)
		if prev != 0 && t.slots[prev].flags&fDeleted != 0 {
			return fmt.Errorf("update of a row that is deleted (key %s)", showKey(oldKey))
		}
		if prev == 0 && r.truncated && r.sp == nil {
			return fmt.Errorf("update of a row that is not there after the TRUNCATE (key %s)", showKey(oldKey))
		}
		// Unchanged TOAST values: from the whole old row when there is one,
		// else from the row's previous image, else from its basebackup row.
		origin, fromBase := "", false
		var prevRow []value
		for j := range r.rowBuf {
			if r.rowBuf[j].kind != catalog.ValueUnchanged {
				continue
			}
			if ch.OldKind == catalog.OldFull && r.oldBuf[j].kind != catalog.ValueUnchanged {
				r.rowBuf[j] = r.oldBuf[j]
				continue
			}
			if prev == 0 {
				fromBase = true
				continue
			}
			if prevRow == nil {
				if prevRow, err = decodeRow(r.prevBuf[:0], t.arena.bytes(t.slots[prev].row), r.width); err != nil {
					return err
				}
				r.prevBuf = prevRow
			}
			r.rowBuf[j] = prevRow[j]
			if prevRow[j].kind == catalog.ValueUnchanged {
				fromBase = true
			}
		}
		if fromBase {
			origin = string(oldKey)
			if o, ok := r.waiting[string(oldKey)]; ok && prev != 0 {
				origin = o
			}
		}
		// Encode before the slot is written: rowBuf may point into it.
		r.enc = appendRow(r.enc[:0], r.rowBuf)
		if prev == 0 {
			prev = t.addAt(prevHash, prevPos, oldKey)
			t.slots[prev].flags |= fFromBase
		}
		r.resolved(oldKey)
		cur := prev
		if string(oldKey) != string(newKey) {
			// The row moves to its new key; the old key's basebackup row,
			// if any, is left out.
			cur = t.getOrAdd(newKey)
			t.slots[prev].flags |= fDeleted
			t.slots[prev].row = span{}
		}
		t.setRow(cur, r.enc)
		t.slots[cur].flags &^= fDeleted
		if fromBase {
			r.pending[origin] = string(newKey)
			r.waiting[string(newKey)] = origin
			r.waitBytes += 2*int64(len(origin)+len(newKey)) + 128
		}
		return nil
	}
	return fmt.Errorf("%w: unknown change %q", catalog.ErrCorrupt, ch.Tag)
}

// resolved notes that the row at key no longer waits for basebackup values.
func (r *reducer) resolved(key []byte) {
	if len(r.waiting) == 0 {
		return
	}
	if o, ok := r.waiting[string(key)]; ok {
		delete(r.waiting, string(key))
		delete(r.pending, o)
	}
}

// checkOldKey refuses an old key tuple that lacks a column of the restored
// table's key: the key changed between the versions, and rows cannot be
// matched.
func (r *reducer) checkOldKey(kind byte, m versionMap) error {
	if kind != catalog.OldKey {
		return nil
	}
	for _, j := range r.keyCols {
		if i := m.cols[j]; i < 0 || i >= len(m.key) || !m.key[i] {
			return fmt.Errorf("the table's key changed between the basebackup and the target: rows cannot be matched (restore to a time before the change, or after a basebackup taken since)")
		}
	}
	return nil
}

func (r *reducer) applyMultiset(ch catalog.Change, m versionMap) error {
	var err error
	if ch.Tag != catalog.TagInsert {
		if ch.OldKind != catalog.OldFull {
			return fmt.Errorf("the table has no key and the change does not carry the whole old row (REPLICA IDENTITY FULL is needed)")
		}
		if r.oldBuf, err = r.mapTuple(r.oldBuf, ch.Old, m); err != nil {
			return err
		}
		if hasUnchanged(r.oldBuf) {
			return fmt.Errorf("the old row of a table without a key has an unchanged TOAST value: it cannot be matched")
		}
		r.enc = appendRow(r.enc[:0], r.oldBuf)
		r.t.slots[r.t.getOrAdd(r.enc)].count--
		if ch.Tag == catalog.TagDelete {
			return nil
		}
	}
	if r.rowBuf, err = r.mapTuple(r.rowBuf, ch.New, m); err != nil {
		return err
	}
	for j := range r.rowBuf {
		if r.rowBuf[j].kind == catalog.ValueUnchanged {
			if ch.Tag != catalog.TagUpdate {
				return fmt.Errorf("%w: insert with an unchanged TOAST value", catalog.ErrCorrupt)
			}
			r.rowBuf[j] = r.oldBuf[j]
		}
	}
	r.enc = appendRow(r.enc[:0], r.rowBuf)
	r.t.slots[r.t.getOrAdd(r.enc)].count++
	return nil
}

// baseMerger decides, row by row, what becomes of the basebackup's rows
// given the reduced deltas.
type baseMerger struct {
	r        *reducer
	defCols  []int // for each restored column, its field in the basebackup, or -1
	keyField []int // basebackup field of each key column
	removals bool  // multiset mode: some basebackup rows are removed
	shared   *mergeShared
	key, row []byte
	vals     []value
	unesc    []byte
}

// mergeShared is what the mergers of jobs that read basebackup files at
// once (fork) share. Lookups in the reduced changes need no lock: while
// the files are read, the table's keys and cells do not change. What a
// matching row changes (a slot's flags or count, the pending map, the
// spilled candidates) is changed under mu. A row's unchanged TOAST values
// are filled in only when the jobs are done (fillHeld), as a fill adds to
// the arena that lookups read.
type mergeShared struct {
	mu    sync.Mutex
	jobs  bool // forked: fills are held
	fills []heldFill
}

// heldFill is a fill that waits for the jobs: the slot, and a copy of the
// basebackup row's fields.
type heldFill struct {
	idx    uint32
	fields [][]byte
}

// fork returns a merger for another job reading basebackup files beside
// b: it shares b's state and has buffers of its own. Once b was forked,
// fill-ins are held until finish.
func (b *baseMerger) fork() *baseMerger {
	b.shared.jobs = true
	return &baseMerger{r: b.r, defCols: b.defCols, keyField: b.keyField, removals: b.removals, shared: b.shared}
}

func (r *reducer) merger(defCols []int) (*baseMerger, error) {
	b := &baseMerger{r: r, defCols: defCols, shared: &mergeShared{}}
	if r.keyed() {
		for _, j := range r.keyCols {
			if defCols[j] < 0 {
				return nil, fmt.Errorf("key column %d did not exist when the basebackup was taken: rows cannot be matched (restore to a later basebackup)", j+1)
			}
			b.keyField = append(b.keyField, defCols[j])
		}
	}
	if r.sp != nil {
		return b, r.spillMerger(defCols)
	}
	if r.keyed() {
		return b, nil
	}
	for _, s := range r.t.slots[1:] {
		if s.count < 0 {
			b.removals = true
			break
		}
	}
	return b, nil
}

// passAll reports whether every basebackup row stays as it is, so that rows
// need not be looked at.
func (b *baseMerger) passAll() bool {
	if b.r.sp != nil {
		return false
	}
	if b.r.keyed() {
		return b.r.t.len() == 0
	}
	return !b.removals
}

// keep decides whether a basebackup row, given as its escaped COPY fields,
// is part of the result. It also hands the row's values to a changed row
// whose unchanged TOAST columns need them.
func (b *baseMerger) keep(fields [][]byte) (bool, error) {
	r := b.r
	if r.sp != nil {
		return b.keepSpilled(fields)
	}
	if !r.keyed() {
		if !b.removals {
			return true, nil
		}
		enc, err := b.encodeFields(b.key[:0], fields, b.defCols)
		if err != nil {
			return false, err
		}
		b.key = enc
		idx := r.t.get(enc)
		if idx == 0 {
			return true, nil
		}
		b.shared.mu.Lock()
		defer b.shared.mu.Unlock()
		if r.t.slots[idx].count < 0 {
			r.t.slots[idx].count++
			return false, nil
		}
		return true, nil
	}
	key, err := b.encodeFields(b.key[:0], fields, b.keyField)
	if err != nil {
		return false, err
	}
	b.key = key
	idx := r.t.get(key)
	if idx == 0 {
		return true, nil
	}
	b.shared.mu.Lock()
	defer b.shared.mu.Unlock()
	r.t.slots[idx].flags |= fSeen
	if len(r.pending) > 0 {
		if cur, ok := r.pending[string(key)]; ok {
			if err := b.fillOrHold(r.t.get([]byte(cur)), fields); err != nil {
				return false, err
			}
			delete(r.pending, string(key))
			delete(r.waiting, cur)
		}
	}
	return false, nil
}

// fillOrHold fills in slot idx's unchanged TOAST values from a basebackup
// row now, or, while jobs read files at once, holds a copy of the row's
// fields for fillHeld. Called under shared.mu.
func (b *baseMerger) fillOrHold(idx uint32, fields [][]byte) error {
	if !b.shared.jobs {
		return b.fill(idx, fields)
	}
	held := heldFill{idx: idx, fields: make([][]byte, len(fields))}
	for i, f := range fields {
		held.fields[i] = bytes.Clone(f)
	}
	b.shared.fills = append(b.shared.fills, held)
	return nil
}

// fillHeld makes the fills that waited for the jobs.
func (b *baseMerger) fillHeld() error {
	for _, h := range b.shared.fills {
		if err := b.fill(h.idx, h.fields); err != nil {
			return err
		}
	}
	b.shared.fills = nil
	return nil
}

// touches reports whether keep could do anything with the row but keep it
// as it is: false means keep would return true and change nothing, so
// that a run of rows it is false for may be taken whole without keep
// seeing them (a synthetic basebackup's reused chunk). It is exact where
// keep is, and errs toward true where keep asks a filter (spilled changes).
func (b *baseMerger) touches(fields [][]byte) (bool, error) {
	r := b.r
	if r.sp == nil && !r.keyed() && !b.removals {
		return false, nil
	}
	key, err := b.matchKey(fields)
	if err != nil {
		return false, err
	}
	switch {
	case r.sp != nil:
		return r.sp.filter.has(r.t.hash(key)), nil
	case r.keyed():
		return r.t.get(key) != 0, nil
	default:
		i := r.t.get(key)
		if i == 0 {
			return false, nil
		}
		b.shared.mu.Lock()
		defer b.shared.mu.Unlock()
		return r.t.slots[i].count < 0, nil
	}
}

// matchKey encodes what a basebackup row is matched to the changes by: its
// key, or the whole row in a table without one.
func (b *baseMerger) matchKey(fields [][]byte) ([]byte, error) {
	idx := b.keyField
	if !b.r.keyed() {
		idx = b.defCols
	}
	key, err := b.encodeFields(b.key[:0], fields, idx)
	b.key = key
	return key, err
}

// fill gives a changed row the basebackup values of its unchanged TOAST
// columns.
func (b *baseMerger) fill(idx uint32, fields [][]byte) error {
	t := b.r.t
	if idx == 0 {
		return fmt.Errorf("restore: lost track of a row waiting for basebackup values")
	}
	row, err := decodeRow(b.vals[:0], t.arena.bytes(t.slots[idx].row), b.r.width)
	if err != nil {
		return err
	}
	b.vals = row
	// Unescape into one buffer first, then point the values into it: the
	// buffer may move while it grows.
	unesc := b.unesc[:0]
	var spans [][2]int
	for j := range row {
		if row[j].kind != catalog.ValueUnchanged {
			continue
		}
		i := b.defCols[j]
		if i < 0 {
			return fmt.Errorf("an unchanged TOAST value has no earlier value in the basebackup (column %d was added since)", j+1)
		}
		start := len(unesc)
		if isNullField(fields[i]) {
			spans = append(spans, [2]int{-1, -1})
			continue
		}
		if unesc, err = unescapeField(unesc, fields[i]); err != nil {
			return err
		}
		spans = append(spans, [2]int{start, len(unesc)})
	}
	n := 0
	for j := range row {
		if row[j].kind == catalog.ValueUnchanged {
			if spans[n][0] < 0 {
				row[j] = value{kind: catalog.ValueNull}
			} else {
				row[j] = value{kind: catalog.ValueText, data: unesc[spans[n][0]:spans[n][1]]}
			}
			n++
		}
	}
	b.unesc = unesc
	t.slots[idx].row = t.arena.add(appendRow(nil, row))
	return nil
}

// encodeFields encodes the basebackup fields at positions idx, which are
// either the key's (never -1) or every restored column's (-1: the column
// was added since, and such rows read its missing value).
func (b *baseMerger) encodeFields(dst []byte, fields [][]byte, idx []int) ([]byte, error) {
	for j, i := range idx {
		if i < 0 {
			v := b.r.missingValue(j)
			dst = catalog.AppendValue(dst, v.kind, v.data)
			continue
		}
		if isNullField(fields[i]) {
			dst = catalog.AppendValue(dst, catalog.ValueNull, nil)
			continue
		}
		f := fields[i]
		if hasBackslash(f) {
			var err error
			if b.unesc, err = unescapeField(b.unesc[:0], f); err != nil {
				return nil, err
			}
			f = b.unesc
		}
		dst = catalog.AppendValue(dst, catalog.ValueText, f)
	}
	return dst, nil
}

func hasBackslash(f []byte) bool { return bytes.IndexByte(f, '\\') >= 0 }

// finish checks, after the basebackup was read, that everything the deltas
// expected of it was there.
func (b *baseMerger) finish() error {
	if err := b.fillHeld(); err != nil {
		return err
	}
	r := b.r
	t := r.t
	if r.sp != nil {
		return nil // checked as the spilled changes are merged, in each
	}
	if r.keyed() {
		for _, s := range t.slots[1:] {
			if s.flags&fFromBase != 0 && s.flags&fSeen == 0 {
				return fmt.Errorf("the deltas change a row that is not in the basebackup (key %s): the archive is inconsistent, or a key column's type changed in a way that changed its text", showKey(t.arena.bytes(s.key)))
			}
		}
		for k := range r.pending {
			return fmt.Errorf("an unchanged TOAST value has no earlier value (key %s)", showKey([]byte(k)))
		}
		return nil
	}
	for _, s := range t.slots[1:] {
		if s.count < 0 {
			row, _ := decodeRow(nil, t.arena.bytes(s.key), r.width)
			return fmt.Errorf("the deltas delete a row that is not in the basebackup (%s): the archive is inconsistent, or a column's type changed in a way that changed its text", showRow(row))
		}
	}
	return nil
}

// each calls f for every row the deltas add, count times for a row that a
// table without a key holds several times.
func (r *reducer) each(f func(row []value) error) error {
	if r.sp != nil {
		return r.eachSpilled(f)
	}
	var vals []value
	var err error
	t := r.t
	for _, s := range t.slots[1:] {
		if r.keyed() {
			if s.flags&fDeleted != 0 {
				continue
			}
			if vals, err = decodeRow(vals[:0], t.arena.bytes(s.row), r.width); err != nil {
				return err
			}
			if err := f(vals); err != nil {
				return err
			}
			continue
		}
		if s.count < 0 && r.truncated {
			row, _ := decodeRow(nil, t.arena.bytes(s.key), r.width)
			return fmt.Errorf("the deltas delete a row that is not there after the TRUNCATE (%s)", showRow(row))
		}
		if s.count <= 0 {
			continue
		}
		if vals, err = decodeRow(vals[:0], t.arena.bytes(s.key), r.width); err != nil {
			return err
		}
		for range s.count {
			if err := f(vals); err != nil {
				return err
			}
		}
	}
	return nil
}

// nullColumns reports, by restored column, whether a row the deltas add
// has NULL there.
func (r *reducer) nullColumns() ([]bool, error) {
	nulls := make([]bool, r.width)
	each := r.each
	if r.sp != nil {
		each = r.eachReduced
	}
	err := each(func(row []value) error {
		for j, v := range row {
			if v.kind == catalog.ValueNull {
				nulls[j] = true
			}
		}
		return nil
	})
	return nulls, err
}

// showKey renders an encoded key for an error message.
func showKey(enc []byte) string {
	vals, err := decodeRow(nil, enc, -1)
	if err != nil && vals == nil {
		return "?"
	}
	return showRow(vals)
}

func showRow(vals []value) string {
	s := "("
	for i, v := range vals {
		if i > 0 {
			s += ", "
		}
		switch v.kind {
		case catalog.ValueNull:
			s += "NULL"
		case catalog.ValueUnchanged:
			s += "<unchanged>"
		default:
			t := string(v.data)
			if len(t) > 40 {
				t = t[:40] + "..."
			}
			s += fmt.Sprintf("%q", t)
		}
	}
	return s + ")"
}
