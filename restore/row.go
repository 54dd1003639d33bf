package restore

import (
	"encoding/binary"
	"fmt"

	"lbt/catalog"
)

// value is one column of a row in the restored table's shape. kind is
// catalog.ValueNull, catalog.ValueText, or catalog.ValueUnchanged while the
// earlier value of an unchanged TOAST column is still to be found.
type value struct {
	kind byte
	data []byte
}

// Rows held in memory (the net effect of the deltas) are encoded as the
// archive encodes tuples, without the column count: compact, and the same
// bytes serve as the identity of a row in a table without a key.

func appendRow(dst []byte, row []value) []byte {
	for _, v := range row {
		dst = catalog.AppendValue(dst, v.kind, v.data)
	}
	return dst
}

// decodeRow decodes an encoded row of width columns (any number when width
// is negative) into dst. The values' data alias enc.
func decodeRow(dst []value, enc []byte, width int) ([]value, error) {
	dst = dst[:0]
	for len(enc) > 0 {
		n, k := binary.Uvarint(enc)
		if k <= 0 {
			return nil, fmt.Errorf("restore: bad row encoding")
		}
		enc = enc[k:]
		switch n {
		case 0:
			dst = append(dst, value{kind: catalog.ValueNull})
		case 1:
			dst = append(dst, value{kind: catalog.ValueUnchanged})
		default:
			l := int(n - 2)
			if l > len(enc) {
				return nil, fmt.Errorf("restore: bad row encoding")
			}
			dst = append(dst, value{kind: catalog.ValueText, data: enc[:l:l]})
			enc = enc[l:]
		}
	}
	if width >= 0 && len(dst) != width {
		return nil, fmt.Errorf("restore: row of %d columns, want %d", len(dst), width)
	}
	return dst, nil
}

// hasUnchanged reports whether any value still waits for its earlier value.
func hasUnchanged(row []value) bool {
	for _, v := range row {
		if v.kind == catalog.ValueUnchanged {
			return true
		}
	}
	return false
}
