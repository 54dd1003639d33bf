package restore

import (
	"bytes"
	"hash/maphash"
)

// rowTable holds the reduced changes: one slot per key (or, for a table
// without a key, per distinct row). It is an open-addressing hash table over
// an arena of bytes, without Go pointers per row: a million touched rows
// cost the garbage collector nothing, and a lookup touches few cache lines.
type rowTable struct {
	seed  maphash.Seed
	mask  uint64 // hashes are maphash's & mask: all ones but in tests of collisions
	cells []cell // power-of-two length, at most half full
	slots []slot // slots[0] is unused: slot index 0 means none
	arena arena
}

type cell struct {
	hash uint64
	slot uint32
}

// slot is one key's state.
type slot struct {
	key   span
	row   span  // keyed mode: the row's last image (encoded), unless deleted
	count int32 // multiset mode: copies added minus copies removed
	flags uint8
}

const (
	// deleted: the changes removed the row with this key.
	fDeleted uint8 = 1 << iota
	// fromBase: the changes changed the basebackup row with this key, so it
	// must be in the basebackup.
	fFromBase
	// seen: the basebackup had the row.
	fSeen
	// origin: the row's basebackup values are the earlier values of
	// another key's unchanged TOAST columns (the key changed). In spill
	// files only.
	fOrigin
)

// newRowTable makes a table sized for about hint keys. Tables that spill
// share seed and mask: their hashes order the sorted runs.
func newRowTable(hint int, seed maphash.Seed, mask uint64) *rowTable {
	n := 16
	for n < 2*hint && n < 1<<26 {
		n *= 2
	}
	return &rowTable{seed: seed, mask: mask, cells: make([]cell, n), slots: make([]slot, 1, n/2)}
}

// hash is the hash of a key (or of a row, without a key).
func (t *rowTable) hash(key []byte) uint64 { return maphash.Bytes(t.seed, key) & t.mask }

// memBytes is about what the table holds in memory, with the index that
// sorting it for a spill takes.
func (t *rowTable) memBytes() int64 {
	n := int64(len(t.cells))*16 + int64(cap(t.slots))*32 + int64(len(t.slots))*16 + t.arena.size
	// The next key grows an array: for a moment the old and the new one
	// are both held.
	if len(t.slots) == cap(t.slots) {
		n += int64(cap(t.slots)) * 32 * 5 / 4
	}
	if 2*(t.len()+1) > len(t.cells) {
		n += int64(len(t.cells)) * 32
	}
	return n
}

// len is the number of keys.
func (t *rowTable) len() int { return len(t.slots) - 1 }

// find returns the slot of key, or 0, and the cell where it is or would go.
func (t *rowTable) find(key []byte) (h uint64, pos int, idx uint32) {
	h = t.hash(key)
	mask := len(t.cells) - 1
	for pos = int(h) & mask; ; pos = (pos + 1) & mask {
		c := t.cells[pos]
		if c.slot == 0 {
			return h, pos, 0
		}
		if c.hash == h && bytes.Equal(t.arena.bytes(t.slots[c.slot].key), key) {
			return h, pos, c.slot
		}
	}
}

// get returns the slot of key, or 0.
func (t *rowTable) get(key []byte) uint32 {
	_, _, idx := t.find(key)
	return idx
}

// getOrAdd returns the slot of key, adding an empty one when there is none.
func (t *rowTable) getOrAdd(key []byte) uint32 {
	h, pos, idx := t.find(key)
	if idx != 0 {
		return idx
	}
	return t.addAt(h, pos, key)
}

// addAt adds a slot for key where find said it would go; nothing may have
// been added since that find.
func (t *rowTable) addAt(h uint64, pos int, key []byte) uint32 {
	idx := uint32(len(t.slots))
	t.slots = append(t.slots, slot{key: t.arena.add(key)})
	t.cells[pos] = cell{hash: h, slot: idx}
	if 2*t.len() > len(t.cells) {
		t.grow()
	}
	return idx
}

func (t *rowTable) grow() {
	cells := make([]cell, 2*len(t.cells))
	mask := len(cells) - 1
	for _, c := range t.cells {
		if c.slot == 0 {
			continue
		}
		pos := int(c.hash) & mask
		for cells[pos].slot != 0 {
			pos = (pos + 1) & mask
		}
		cells[pos] = c
	}
	t.cells = cells
}

// setRow stores a row image in a slot, in place when it fits.
func (t *rowTable) setRow(idx uint32, row []byte) {
	s := &t.slots[idx]
	if s.row.n >= uint32(len(row)) && s.row.n > 0 {
		copy(t.arena.bytes(span{s.row.chunk, s.row.off, uint32(len(row))}), row)
		s.row.n = uint32(len(row))
		return
	}
	s.row = t.arena.add(row)
}

// span locates bytes in the arena.
type span struct {
	chunk, off, n uint32
}

// arena is append-only storage in large chunks, so that what it holds never
// moves.
type arena struct {
	chunks [][]byte
	size   int64 // bytes added
	chunk  int   // bytes per chunk; 0: arenaChunk
}

const arenaChunk = 4 << 20

func (a *arena) add(b []byte) span {
	n := len(a.chunks)
	if n == 0 || len(a.chunks[n-1])+len(b) > cap(a.chunks[n-1]) {
		c := a.chunk
		if c == 0 {
			c = arenaChunk
		}
		a.chunks = append(a.chunks, make([]byte, 0, max(c, len(b))))
		n++
	}
	c := a.chunks[n-1]
	off := len(c)
	a.size += int64(len(b))
	a.chunks[n-1] = append(c, b...)
	return span{chunk: uint32(n - 1), off: uint32(off), n: uint32(len(b))}
}

func (a *arena) bytes(s span) []byte {
	return a.chunks[s.chunk][s.off : s.off+s.n : s.off+s.n]
}
