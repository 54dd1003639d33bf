package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"

	"lbt/catalog"
)

var errShort = errors.New("pgoutput message too short")

// appendTuple transcodes one pgoutput TupleData at the start of src into the
// archive's tuple encoding, appended to dst. Columns whose positions are in
// keyCols (ascending) are hashed into the row key. It returns the bytes of
// src consumed.
//
// This is the hot path of ingest: it works on the raw bytes and allocates
// nothing, instead of building pglogrepl's per-column structures.
func appendTuple(dst, src []byte, keyCols []int) (out []byte, n int, key int64, hasKey bool, err error) {
	if len(src) < 2 {
		return dst, 0, 0, false, errShort
	}
	ncols := int(binary.BigEndian.Uint16(src))
	pos := 2
	dst = catalog.AppendTupleHeader(dst, ncols)
	h := catalog.NewKeyHasher()
	k := 0
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
		if k < len(keyCols) && keyCols[k] == i {
			h.Write(dst[start:])
			k++
		}
	}
	return dst, pos, h.Sum(), len(keyCols) > 0 && k == len(keyCols), nil
}
