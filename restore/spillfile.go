package restore

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// This file holds the files the reducer spills to when the reduced changes
// outgrow their memory budget: streams of entries sorted by (hash, key),
// and an external sort that makes them.

// entry is one record of a spill file: the state of one key (or, for a
// table without a key, of one distinct row), or a basebackup row waiting
// to be matched with the reduced changes.
type entry struct {
	h      uint64
	flags  uint8 // fDeleted, fFromBase, fOrigin, fWaits
	count  int64 // without a key: copies added minus copies removed
	key    []byte
	row    []byte // the row's image, encoded; empty when deleted
	origin []byte // with fWaits: the basebackup key whose row supplies the unchanged TOAST values

	raw []byte // the entry as read from a file, to be copied as it is
}

// fWaits marks an entry whose image still has unchanged TOAST values, to
// be taken from the basebackup row of entry.origin. It is used in files
// only; in memory the reducer's waiting map says it.
const fWaits uint8 = 1 << 7

// less orders entries by hash, then key.
func less(ah uint64, ak []byte, bh uint64, bk []byte) int {
	switch {
	case ah < bh:
		return -1
	case ah > bh:
		return 1
	}
	return bytes.Compare(ak, bk)
}

func appendEntry(dst []byte, e *entry) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, e.h)
	dst = append(dst, e.flags)
	dst = binary.AppendVarint(dst, e.count)
	for _, b := range [][]byte{e.key, e.row, e.origin} {
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		dst = append(dst, b...)
	}
	return dst
}

// decodeEntry reads an entry from the front of b; its slices alias b.
func decodeEntry(b []byte) (entry, int, error) {
	var e entry
	if len(b) < 9 {
		return e, 0, errBadSpill
	}
	e.h, e.flags = binary.LittleEndian.Uint64(b), b[8]
	n := 9
	c, k := binary.Varint(b[n:])
	if k <= 0 {
		return e, 0, errBadSpill
	}
	e.count, n = c, n+k
	for _, p := range []*[]byte{&e.key, &e.row, &e.origin} {
		l, k := binary.Uvarint(b[n:])
		if k <= 0 || uint64(len(b)-n-k) < l {
			return e, 0, errBadSpill
		}
		n += k
		*p = b[n : n+int(l) : n+int(l)]
		n += int(l)
	}
	e.raw = b[:n:n]
	return e, n, nil
}

var errBadSpill = errors.New("restore: a spill file is damaged")

// tempFile creates a file in dir and unlinks it at once: it lives as long
// as it is open, and nothing is left behind whatever becomes of the
// process.
func tempFile(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restore: spill the reduced changes to %s: %w (set tempDir, or give restore more memory)", dir, err)
	}
	f, err := os.CreateTemp(dir, "restore-spill-*")
	if err != nil {
		return nil, fmt.Errorf("restore: spill the reduced changes to %s: %w (set tempDir, or give restore more memory)", dir, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("restore: spill file: %w", err)
	}
	return f, nil
}

// spillFile is a file of entries, written once, then read as often as
// needed.
type spillFile struct {
	f   *os.File
	w   *bufio.Writer
	n   int64 // entries
	buf []byte
}

func newSpillFile(dir string) (*spillFile, error) {
	f, err := tempFile(dir)
	if err != nil {
		return nil, err
	}
	return &spillFile{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (s *spillFile) write(e *entry) error {
	s.buf = appendEntry(s.buf[:0], e)
	return s.writeRaw(s.buf)
}

// writeRaw writes an entry encoded by appendEntry.
func (s *spillFile) writeRaw(b []byte) error {
	s.n++
	var l [binary.MaxVarintLen64]byte
	if _, err := s.w.Write(l[:binary.PutUvarint(l[:], uint64(len(b)))]); err != nil {
		return fmt.Errorf("restore: spill file: %w", err)
	}
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("restore: spill file: %w", err)
	}
	return nil
}

// reader reads the file from its start; the file takes no more writes.
func (s *spillFile) reader() (*fileReader, error) {
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("restore: spill file: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("restore: spill file: %w", err)
	}
	return &fileReader{r: bufio.NewReaderSize(s.f, 64<<10)}, nil
}

func (s *spillFile) close() {
	if s != nil {
		s.f.Close()
	}
}

// entryIter yields entries in order. An entry's slices are valid until the
// next call.
type entryIter interface {
	next() (entry, bool, error)
}

type fileReader struct {
	r   *bufio.Reader
	buf []byte
}

func (fr *fileReader) next() (entry, bool, error) {
	l, err := binary.ReadUvarint(fr.r)
	if errors.Is(err, io.EOF) {
		return entry{}, false, nil
	}
	if err != nil {
		return entry{}, false, fmt.Errorf("restore: spill file: %w", err)
	}
	if cap(fr.buf) < int(l) {
		fr.buf = make([]byte, l)
	}
	fr.buf = fr.buf[:l]
	if _, err := io.ReadFull(fr.r, fr.buf); err != nil {
		return entry{}, false, fmt.Errorf("restore: spill file: %w", err)
	}
	e, _, err := decodeEntry(fr.buf)
	return e, err == nil, err
}

// peeker holds an iterator's current entry.
type peeker struct {
	it  entryIter
	cur entry
	ok  bool
}

func newPeeker(it entryIter) (*peeker, error) {
	p := &peeker{it: it}
	return p, p.advance()
}

func (p *peeker) advance() error {
	var err error
	p.cur, p.ok, err = p.it.next()
	return err
}

// mergeOrder orders the current entries of two sorted streams being
// merged: below zero when a's comes first or b has none left, above zero
// when b's does or a has none left, zero for the same key.
func mergeOrder(a, b *peeker) int {
	switch {
	case !a.ok:
		return 1
	case !b.ok:
		return -1
	default:
		return less(a.cur.h, a.cur.key, b.cur.h, b.cur.key)
	}
}

// sorter sorts entries by (hash, key) within a memory budget: past it,
// sorted runs go to files, merged when read.
type sorter struct {
	dir    string
	budget int64
	buf    []byte
	refs   []sortRef
	runs   []*spillFile
	n      int64
}

type sortRef struct {
	h        uint64
	off, end uint32 // the entry in buf
	koff     uint32 // its key
	klen     uint32
}

// maxFanIn is the most runs merged at once: each open run takes a file
// and a read buffer.
const maxFanIn = 64

func newSorter(dir string, budget int64) *sorter {
	return &sorter{dir: dir, budget: max(budget, 4<<10)}
}

func (s *sorter) add(e *entry) error {
	// Write a run rather than grow the buffers past the budget: growing
	// holds the old and the new array at once.
	need := 9 + 3*binary.MaxVarintLen64 + binary.MaxVarintLen64 + len(e.key) + len(e.row) + len(e.origin)
	if len(s.refs) > 0 && (len(s.buf)+need > cap(s.buf) || len(s.refs) == cap(s.refs)) && s.memBytes()*2 > s.budget {
		if err := s.flush(); err != nil {
			return err
		}
	}
	off := len(s.buf)
	s.buf = appendEntry(s.buf, e)
	// The key sits after the hash, flags, count and the key's length.
	var tmp [binary.MaxVarintLen64]byte
	koff := off + 9 + binary.PutVarint(tmp[:], e.count) + binary.PutUvarint(tmp[:], uint64(len(e.key)))
	s.refs = append(s.refs, sortRef{h: e.h, off: uint32(off), end: uint32(len(s.buf)), koff: uint32(koff), klen: uint32(len(e.key))})
	s.n++
	if s.memBytes() > s.budget || len(s.buf) > 1<<31 {
		return s.flush()
	}
	return nil
}

func (s *sorter) memBytes() int64 { return int64(cap(s.buf)) + int64(cap(s.refs))*24 }

func (s *sorter) key(r sortRef) []byte { return s.buf[r.koff : r.koff+r.klen] }

func (s *sorter) sort() {
	slices.SortFunc(s.refs, func(a, b sortRef) int { return less(a.h, s.key(a), b.h, s.key(b)) })
}

// flush writes the entries held in memory as a sorted run.
func (s *sorter) flush() error {
	if len(s.refs) == 0 {
		return nil
	}
	s.sort()
	f, err := newSpillFile(s.dir)
	if err != nil {
		return err
	}
	s.runs = append(s.runs, f)
	for _, r := range s.refs {
		e, _, err := decodeEntry(s.buf[r.off:r.end])
		if err != nil {
			return err
		}
		if err := f.write(&e); err != nil {
			return err
		}
	}
	s.buf, s.refs = s.buf[:0], s.refs[:0]
	return nil
}

// iter returns the entries in order. The sorter takes no more entries.
func (s *sorter) iter() (entryIter, error) {
	if len(s.runs) == 0 {
		s.sort()
		return &memIter{s: s}, nil
	}
	if err := s.flush(); err != nil {
		return nil, err
	}
	s.buf, s.refs = nil, nil
	for len(s.runs) > maxFanIn {
		it, err := mergeRuns(s.runs[:maxFanIn])
		if err != nil {
			return nil, err
		}
		f, err := newSpillFile(s.dir)
		if err != nil {
			return nil, err
		}
		for {
			e, ok, err := it.next()
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			if err := f.write(&e); err != nil {
				return nil, err
			}
		}
		for _, r := range s.runs[:maxFanIn] {
			r.close()
		}
		s.runs = append(s.runs[maxFanIn:], f)
	}
	return mergeRuns(s.runs)
}

func (s *sorter) close() {
	if s == nil {
		return
	}
	for _, r := range s.runs {
		r.close()
	}
	s.runs = nil
}

type memIter struct {
	s *sorter
	i int
}

func (m *memIter) next() (entry, bool, error) {
	if m.i >= len(m.s.refs) {
		return entry{}, false, nil
	}
	r := m.s.refs[m.i]
	m.i++
	e, _, err := decodeEntry(m.s.buf[r.off:r.end])
	return e, err == nil, err
}

// mergeIter merges sorted runs.
type mergeIter struct {
	h    runHeap
	last *peeker // to advance before the next entry: its entry was handed out
}

func mergeRuns(runs []*spillFile) (*mergeIter, error) {
	m := &mergeIter{}
	for _, r := range runs {
		fr, err := r.reader()
		if err != nil {
			return nil, err
		}
		p, err := newPeeker(fr)
		if err != nil {
			return nil, err
		}
		if p.ok {
			m.h = append(m.h, p)
		}
	}
	heap.Init(&m.h)
	return m, nil
}

func (m *mergeIter) next() (entry, bool, error) {
	if m.last != nil {
		if err := m.last.advance(); err != nil {
			return entry{}, false, err
		}
		if m.last.ok {
			heap.Fix(&m.h, 0)
		} else {
			heap.Pop(&m.h)
		}
		m.last = nil
	}
	if len(m.h) == 0 {
		return entry{}, false, nil
	}
	m.last = m.h[0]
	return m.last.cur, true, nil
}

type runHeap []*peeker

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	return less(h[i].cur.h, h[i].cur.key, h[j].cur.h, h[j].cur.key) < 0
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*peeker)) }
func (h *runHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}

// bloom is a Bloom filter over 64-bit hashes: the set of keys the reduced
// changes touched, in a fixed size however many they are. A false
// positive only sends a basebackup row the long way, through the sorted
// candidates, where its full key decides.
type bloom struct {
	bits []uint64
	mask uint64 // number of bits - 1
}

func newBloom(n int64, maxBytes int64) bloom {
	nbits := uint64(1 << 13)
	for nbits < uint64(n)*16 && nbits/8 < uint64(maxBytes) {
		nbits *= 2
	}
	return bloom{bits: make([]uint64, nbits/64), mask: nbits - 1}
}

// bloomProbes is the number of bits set per hash: with 16 bits per key, a
// false positive rate of about 0.2%.
const bloomProbes = 4

func (b *bloom) add(h uint64) {
	h2 := h>>33 | h<<31 | 1
	for i := range uint64(bloomProbes) {
		bit := (h + i*h2) & b.mask
		b.bits[bit/64] |= 1 << (bit % 64)
	}
}

func (b *bloom) has(h uint64) bool {
	h2 := h>>33 | h<<31 | 1
	for i := range uint64(bloomProbes) {
		bit := (h + i*h2) & b.mask
		if b.bits[bit/64]&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}
