package catalog

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Record tags inside a decompressed blob. The layout is specified in
// docs/FORMAT.md; these values are part of the on-disk format and never change.
const (
	TagTx       = 'T' // transaction marker: uvarint commit-LSN delta, zigzag xid delta
	TagSchema   = 'S' // schema version switch: uvarint version
	TagInsert   = 'I' // new tuple
	TagUpdate   = 'U' // old-tuple kind, [old tuple], new tuple
	TagDelete   = 'D' // old-tuple kind, old tuple
	TagTruncate = 'X' // option bits (1 cascade, 2 restart identity)
)

// Old-tuple kinds of updates and deletes, as pgoutput names them.
const (
	OldNone = '-' // update without an old tuple: the key did not change
	OldKey  = 'K' // replica-identity key columns only; others are absent
	OldFull = 'O' // the whole old row (REPLICA IDENTITY FULL)
)

// Value kinds of a tuple column.
const (
	ValueNull      = 'n'
	ValueUnchanged = 'u' // unchanged TOASTed value: keep the previous one
	ValueText      = 't'
)

// Value is one column of a tuple. Data aliases the blob it was read from.
type Value struct {
	Kind byte
	Data []byte
}

// Tuple is a row as pgoutput sent it: one Value per column of its schema version.
type Tuple []Value

// Change is one record of a blob, with the transaction it belongs to.
type Change struct {
	Tag       byte // TagInsert, TagUpdate, TagDelete or TagTruncate
	CommitLSN uint64
	Xid       uint32
	Schema    int   // schema version of the tuples
	OldKind   byte  // for updates and deletes
	Old       Tuple // for updates with OldKind != OldNone, and deletes
	New       Tuple // for inserts and updates
	Truncate  byte  // option bits of a TRUNCATE
	// End is the offset in the blob's records just after this one: within
	// a blob, a later record has a greater End.
	End int
}

// ErrCorrupt reports archive bytes that do not decode.
var ErrCorrupt = errors.New("archive data corrupt")

// AppendTx appends a transaction marker. prevLSN and prevXid are those of the
// previous marker in the same blob, or zero for the first.
func AppendTx(dst []byte, commitLSN, prevLSN uint64, xid, prevXid uint32) []byte {
	dst = append(dst, TagTx)
	dst = binary.AppendUvarint(dst, commitLSN-prevLSN)
	return binary.AppendVarint(dst, int64(xid)-int64(prevXid))
}

// AppendSchema appends a schema version switch.
func AppendSchema(dst []byte, version int) []byte {
	dst = append(dst, TagSchema)
	return binary.AppendUvarint(dst, uint64(version))
}

// AppendTupleHeader appends the column count that starts every tuple.
func AppendTupleHeader(dst []byte, ncols int) []byte {
	return binary.AppendUvarint(dst, uint64(ncols))
}

// AppendValue appends one column: 0 for NULL, 1 for an unchanged TOAST value,
// otherwise 2+len followed by the text bytes.
func AppendValue(dst []byte, kind byte, data []byte) []byte {
	switch kind {
	case ValueNull:
		return append(dst, 0)
	case ValueUnchanged:
		return append(dst, 1)
	default:
		dst = binary.AppendUvarint(dst, uint64(len(data))+2)
		return append(dst, data...)
	}
}

// AppendTuple appends a whole tuple.
func AppendTuple(dst []byte, t Tuple) []byte {
	dst = AppendTupleHeader(dst, len(t))
	for _, v := range t {
		dst = AppendValue(dst, v.Kind, v.Data)
	}
	return dst
}

// AppendChange appends the record of one change: its tag and body, as
// RecordReader reads it back (the transaction marker is AppendTx's). It is
// the encoder of Change; the archiver writes the same bytes straight from
// pgoutput's.
func AppendChange(dst []byte, c Change) []byte {
	dst = append(dst, c.Tag)
	switch c.Tag {
	case TagInsert:
		dst = AppendTuple(dst, c.New)
	case TagUpdate, TagDelete:
		dst = append(dst, c.OldKind)
		if c.OldKind != OldNone {
			dst = AppendTuple(dst, c.Old)
		}
		if c.Tag == TagUpdate {
			dst = AppendTuple(dst, c.New)
		}
	case TagTruncate:
		dst = append(dst, c.Truncate)
	}
	return dst
}

// RecordReader iterates over the records of one decompressed blob.
type RecordReader struct {
	buf    []byte
	pos    int
	lsn    uint64
	xid    uint32
	schema int
	tuples [2]Tuple // reused backing arrays for Old and New
}

// NewRecordReader reads the records in buf, starting with schema version schema.
func NewRecordReader(buf []byte, schema int) *RecordReader {
	return &RecordReader{buf: buf, schema: schema}
}

// Next returns the next change, skipping markers. The returned tuples are
// valid until the following call of Next; their Data alias the blob.
// At the end of the blob ok is false and err nil.
func (r *RecordReader) Next() (c Change, ok bool, err error) {
	for r.pos < len(r.buf) {
		tag := r.buf[r.pos]
		r.pos++
		switch tag {
		case TagTx:
			if err := r.txMarker(); err != nil {
				return c, false, err
			}
		case TagSchema:
			if err := r.schemaSwitch(); err != nil {
				return c, false, err
			}
		case TagInsert, TagUpdate, TagDelete, TagTruncate:
			if r.lsn == 0 {
				return c, false, fmt.Errorf("%w: change before any transaction marker at byte %d", ErrCorrupt, r.pos-1)
			}
			c = Change{Tag: tag, CommitLSN: r.lsn, Xid: r.xid, Schema: r.schema}
			return r.change(c)
		default:
			return c, false, fmt.Errorf("%w: unknown record tag 0x%02x at byte %d", ErrCorrupt, tag, r.pos-1)
		}
	}
	return c, false, nil
}

// txMarker reads the body of a transaction marker.
func (r *RecordReader) txMarker() error {
	d, err := r.uvarint()
	if err != nil {
		return err
	}
	x, err := r.varint()
	if err != nil {
		return err
	}
	r.lsn += d
	r.xid = uint32(int64(r.xid) + x)
	return nil
}

// schemaSwitch reads the body of a schema switch.
func (r *RecordReader) schemaSwitch() error {
	v, err := r.uvarint()
	if err != nil {
		return err
	}
	r.schema = int(v)
	return nil
}

func (r *RecordReader) change(c Change) (Change, bool, error) {
	var err error
	switch c.Tag {
	case TagInsert:
		c.New, err = r.tuple(1)
	case TagUpdate, TagDelete:
		if r.pos >= len(r.buf) {
			return c, false, fmt.Errorf("%w: truncated record", ErrCorrupt)
		}
		c.OldKind = r.buf[r.pos]
		r.pos++
		if c.OldKind != OldNone && c.OldKind != OldKey && c.OldKind != OldFull {
			return c, false, fmt.Errorf("%w: bad old-tuple kind 0x%02x", ErrCorrupt, c.OldKind)
		}
		if c.OldKind != OldNone {
			if c.Old, err = r.tuple(0); err != nil {
				return c, false, err
			}
		}
		if c.Tag == TagUpdate {
			c.New, err = r.tuple(1)
		}
	case TagTruncate:
		if r.pos >= len(r.buf) {
			return c, false, fmt.Errorf("%w: truncated record", ErrCorrupt)
		}
		c.Truncate = r.buf[r.pos]
		r.pos++
	}
	if err != nil {
		return c, false, err
	}
	c.End = r.pos
	return c, true, nil
}

func (r *RecordReader) tuple(slot int) (Tuple, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > 1664 { // MaxTupleAttributeNumber: more is corruption, not a table
		return nil, fmt.Errorf("%w: tuple of %d columns", ErrCorrupt, n)
	}
	t := r.tuples[slot][:0]
	for i := uint64(0); i < n; i++ {
		v, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		switch v {
		case 0:
			t = append(t, Value{Kind: ValueNull})
		case 1:
			t = append(t, Value{Kind: ValueUnchanged})
		default:
			l := v - 2
			if l > uint64(len(r.buf)-r.pos) {
				return nil, fmt.Errorf("%w: value of %d bytes past the end of the blob", ErrCorrupt, l)
			}
			t = append(t, Value{Kind: ValueText, Data: r.buf[r.pos : r.pos+int(l) : r.pos+int(l)]})
			r.pos += int(l)
		}
	}
	r.tuples[slot] = t
	return t, nil
}

func (r *RecordReader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.buf[r.pos:])
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad varint at byte %d", ErrCorrupt, r.pos)
	}
	r.pos += n
	return v, nil
}

func (r *RecordReader) varint() (int64, error) {
	ux, err := r.uvarint()
	return zigzag(ux), err
}

// zigzag decodes a signed varint from its unsigned encoding, as
// binary.Varint does after binary.Uvarint.
func zigzag(ux uint64) int64 {
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}
