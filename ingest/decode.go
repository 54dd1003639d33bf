package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"

	"lbt/catalog"
)

var errShort = errors.New("pgoutput message too short")

// appendTuple transcodes one pgoutput TupleData at the start of src into the
// archive's tuple encoding, appended to dst. The columns at the positions in
// keyCols, in keyCols' order (a primary key's order, which need not be the
// table's), are hashed into the row key. It returns the bytes of src
// consumed.
//
// This is the hot path of ingest: it works on the raw bytes and allocates
// nothing for common keys, instead of building pglogrepl's per-column
// structures.
func appendTuple(dst, src []byte, keyCols []int) (out []byte, n int, key int64, hasKey bool, err error) {
	if len(src) < 2 {
		return dst, 0, 0, false, errShort
	}
	ncols := int(binary.BigEndian.Uint16(src))
	pos := 2
	dst = catalog.AppendTupleHeader(dst, ncols)
	var spanBuf [8][2]int // where each key column's encoded value is in dst
	spans := spanBuf[:0]
	if len(keyCols) > len(spanBuf) {
		spans = make([][2]int, 0, len(keyCols))
	}
	spans = spans[:len(keyCols)]
	found := 0
	for i := 0; i < ncols; i++ {
		if pos >= len(src) {
			return dst, 0, 0, false, errShort
		}
		start := len(dst)
		kind := src[pos]
		pos++
		switch kind {
		case 'n':
			dst = append(dst, 0)
		case 'u':
			dst = append(dst, 1)
		case 't':
			if pos+4 > len(src) {
				return dst, 0, 0, false, errShort
			}
			l := int(binary.BigEndian.Uint32(src[pos:]))
			pos += 4
			if l < 0 || pos+l > len(src) {
				return dst, 0, 0, false, errShort
			}
			dst = catalog.AppendValue(dst, catalog.ValueText, src[pos:pos+l])
			pos += l
		default:
			// 'b' (binary) is only sent when lbt asks for it, which it does not.
			return dst, 0, 0, false, fmt.Errorf("pgoutput tuple column %d has kind %q, lbt reads text only", i, kind)
		}
		for j, c := range keyCols {
			if c == i {
				spans[j] = [2]int{start, len(dst)}
				found++
			}
		}
	}
	if len(keyCols) == 0 || found != len(keyCols) {
		return dst, pos, 0, false, nil
	}
	h := catalog.NewKeyHasher()
	for _, sp := range spans {
		h.Write(dst[sp[0]:sp[1]])
	}
	return dst, pos, h.Sum(), true, nil
}
