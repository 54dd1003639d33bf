package restore

import (
	"bytes"
	"fmt"
)

// COPY text format, as PostgreSQL writes it: one line per row, columns
// separated by tabs, NULL as \N, and backslash escapes for the characters
// that would break the framing. Basebackups hold rows in this format, and
// restore writes it to the target.

// nullField is COPY's text for NULL.
var nullField = []byte(`\N`)

// splitFields splits a COPY text line (without its newline) into its
// escaped fields, reusing dst.
func splitFields(dst [][]byte, line []byte) [][]byte {
	dst = dst[:0]
	for {
		i := bytes.IndexByte(line, '\t')
		if i < 0 {
			return append(dst, line)
		}
		dst = append(dst, line[:i])
		line = line[i+1:]
	}
}

// isNullField reports whether an escaped field is NULL.
func isNullField(f []byte) bool { return len(f) == 2 && f[0] == '\\' && f[1] == 'N' }

// unescapeField appends the value of an escaped, non-NULL field to dst.
func unescapeField(dst, f []byte) ([]byte, error) {
	if bytes.IndexByte(f, '\\') < 0 {
		return append(dst, f...), nil
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i == len(f) {
			return dst, fmt.Errorf("COPY field ends with a backslash")
		}
		c = f[i]
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'v':
			dst = append(dst, '\v')
		case 'x':
			// \xh or \xhh
			v, n := 0, 0
			for n < 2 && i+1 < len(f) && isHex(f[i+1]) {
				i++
				v = v*16 + hexVal(f[i])
				n++
			}
			if n == 0 {
				dst = append(dst, 'x')
			} else {
				dst = append(dst, byte(v))
			}
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for n := 1; n < 3 && i+1 < len(f) && f[i+1] >= '0' && f[i+1] <= '7'; n++ {
				i++
				v = v*8 + int(f[i]-'0')
			}
			dst = append(dst, byte(v))
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	default:
		return int(c-'A') + 10
	}
}

// appendEscaped appends a value in COPY text form, escaping exactly what
// PostgreSQL's COPY TO escapes.
func appendEscaped(dst, v []byte) []byte {
	start := 0
	for i, c := range v {
		var esc byte
		switch c {
		case '\\':
			esc = '\\'
		case '\b':
			esc = 'b'
		case '\f':
			esc = 'f'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		case '\t':
			esc = 't'
		case '\v':
			esc = 'v'
		default:
			continue
		}
		dst = append(dst, v[start:i]...)
		dst = append(dst, '\\', esc)
		start = i + 1
	}
	return append(dst, v[start:]...)
}
