package catalog

import (
	"encoding/binary"
	"fmt"
)

// KeyFunc gives, for a schema version, the positions of the columns that
// identify a row (ascending) and the text values a record must hold there.
type KeyFunc func(schema int) (cols []int, vals []string)

// NextKey is Next for readers that look for one row among many, as `lbt
// inspect history` does. It returns the next change of the transaction that
// committed at lsn whose new or old tuple holds the values keys gives for
// the record's schema version, or the transaction's next truncate. It steps
// over earlier transactions and other rows without decoding them, and ok is
// false at the end of the transaction or of the blob. An lsn of 0 stands
// for every transaction.
func (r *RecordReader) NextKey(lsn uint64, keys KeyFunc) (c Change, ok bool, err error) {
	for r.pos < len(r.buf) {
		tag := r.buf[r.pos]
		switch tag {
		case TagTx:
			r.pos++
			if err := r.txMarker(); err != nil {
				return c, false, err
			}
			if lsn != 0 && r.lsn > lsn {
				return c, false, nil
			}
			continue
		case TagSchema:
			r.pos++
			if err := r.schemaSwitch(); err != nil {
				return c, false, err
			}
			continue
		case TagTruncate:
			if r.lsn != 0 && r.lsn < lsn && r.pos+1 < len(r.buf) {
				r.pos += 2
				continue
			}
			return r.Next()
		case TagInsert, TagUpdate, TagDelete:
		default:
			return r.Next() // reports the corruption
		}
		if r.lsn == 0 {
			return c, false, fmt.Errorf("%w: change before any transaction marker at byte %d", ErrCorrupt, r.pos)
		}
		start := r.pos
		r.pos++
		var cols []int
		var vals []string
		if r.lsn >= lsn {
			cols, vals = keys(r.schema)
		}
		hit := false
		if tag != TagInsert {
			if r.pos >= len(r.buf) {
				return c, false, fmt.Errorf("%w: truncated record", ErrCorrupt)
			}
			kind := r.buf[r.pos]
			r.pos++
			if kind != OldNone && kind != OldKey && kind != OldFull {
				return c, false, fmt.Errorf("%w: bad old-tuple kind 0x%02x", ErrCorrupt, kind)
			}
			if kind != OldNone {
				h, err := r.skipTuple(cols, vals)
				if err != nil {
					return c, false, err
				}
				hit = hit || h
			}
		}
		if tag != TagDelete {
			h, err := r.skipTuple(cols, vals)
			if err != nil {
				return c, false, err
			}
			hit = hit || h
		}
		if hit {
			r.pos = start + 1
			return r.change(Change{Tag: tag, CommitLSN: r.lsn, Xid: r.xid, Schema: r.schema})
		}
	}
	return c, false, nil
}

// Pos is the reader's offset in the blob: the end of the record it returned
// last. Within one blob, a later record has a greater Pos.
func (r *RecordReader) Pos() int { return r.pos }

// skipTuple steps over a tuple and reports whether it holds vals at cols.
// It is the inner loop of a history's search: it keeps its position in a
// local and reads one-byte varints inline.
func (r *RecordReader) skipTuple(cols []int, vals []string) (bool, error) {
	buf, pos := r.buf, r.pos
	if pos >= len(buf) {
		return false, fmt.Errorf("%w: truncated record", ErrCorrupt)
	}
	n := uint64(buf[pos])
	if n < 0x80 {
		pos++
	} else {
		var w int
		if n, w = binary.Uvarint(buf[pos:]); w <= 0 {
			return false, fmt.Errorf("%w: bad varint at byte %d", ErrCorrupt, pos)
		}
		pos += w
	}
	if n > 1664 {
		return false, fmt.Errorf("%w: tuple of %d columns", ErrCorrupt, n)
	}
	hit := len(cols) > 0
	k, next := 0, -1
	if len(cols) > 0 {
		next = cols[0]
	}
	for i := 0; i < int(n); i++ {
		if pos >= len(buf) {
			return false, fmt.Errorf("%w: truncated record", ErrCorrupt)
		}
		v := uint64(buf[pos])
		if v < 0x80 {
			pos++
		} else {
			var w int
			if v, w = binary.Uvarint(buf[pos:]); w <= 0 {
				return false, fmt.Errorf("%w: bad varint at byte %d", ErrCorrupt, pos)
			}
			pos += w
		}
		l := 0
		if v >= 2 {
			if v-2 > uint64(len(buf)-pos) {
				return false, fmt.Errorf("%w: value of %d bytes past the end of the blob", ErrCorrupt, v-2)
			}
			l = int(v - 2)
		}
		if i == next {
			hit = hit && v >= 2 && string(buf[pos:pos+l]) == vals[k]
			k++
			next = -1
			if k < len(cols) {
				next = cols[k]
			}
		}
		pos += l
	}
	r.pos = pos
	return hit && k == len(cols), nil
}
