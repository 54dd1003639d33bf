package restore

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"strings"

	"lbt/catalog"
	"lbt/schema"
)

// The restore's checksum is computed as the rows stream into the COPY, so
// that it costs no pass over the restored table and has no size limit. It
// is order-independent: the sum, modulo 2^64, of the first 64 bits (big
// endian) of md5 of each row's record text, the form PostgreSQL's
// record_out gives ROW(c1, c2, ...)::text. The same value is one SQL
// aggregate on any table (ChecksumSQL), with no sort and no string_agg.
//
// record_out writes "(", the columns separated by ",", then ")": nothing
// for a NULL; a value in double quotes when it is empty or contains a
// double quote, a backslash, a parenthesis, a comma or a C-locale space
// (space, \t, \n, \v, \f, \r), with double quotes and backslashes doubled
// inside.

// rowSum accumulates the checksum of rows.
type rowSum struct {
	sum uint64
	rec []byte // the current row's record text
	val []byte // scratch for an unescaped COPY field
}

// recordSpecial marks the bytes that make record_out quote a value.
var recordSpecial = func() (t [256]bool) {
	for _, c := range []byte("\"\\(),\t\n\v\f\r ") {
		t[c] = true
	}
	return t
}()

// appendRecordValue appends a non-NULL value as record_out writes it.
func appendRecordValue(dst, v []byte) []byte {
	if len(v) > 0 && indexSpecial(v) < 0 {
		return append(dst, v...)
	}
	dst = append(dst, '"')
	for {
		i := indexQuoteOrBackslash(v)
		if i < 0 {
			break
		}
		dst = append(dst, v[:i+1]...)
		dst = append(dst, v[i])
		v = v[i+1:]
	}
	dst = append(dst, v...)
	return append(dst, '"')
}

// Every value of a restored row is scanned for the bytes record_out
// quotes, which with wide rows cost as much as the md5 of the row when
// done a byte at a time; the scans below look at 8 bytes at a time and
// only at the bytes of a word that may hold one.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// hasLess reports whether a byte of x is less than n (at most 128). It
// never misses one; where it flags a word, the bytes are checked one by one.
func hasLess(x, n uint64) bool { return (x-ones*n)&^x&highs != 0 }

// hasByte reports whether a byte of x is c.
func hasByte(x uint64, c byte) bool { return hasLess(x^(ones*uint64(c)), 1) }

// indexSpecial returns the index of the first byte that makes record_out
// quote a value, or -1. Every such byte but the backslash is below ','+1;
// so are others ('!', '+', ...), which the bytes' table tells apart.
func indexSpecial(v []byte) int {
	i := 0
	for ; i+8 <= len(v); i += 8 {
		x := binary.LittleEndian.Uint64(v[i:])
		if !hasLess(x, ','+1) && !hasByte(x, '\\') {
			continue
		}
		for j := i; j < i+8; j++ {
			if recordSpecial[v[j]] {
				return j
			}
		}
	}
	for ; i < len(v); i++ {
		if recordSpecial[v[i]] {
			return i
		}
	}
	return -1
}

// indexQuoteOrBackslash returns the index of the first double quote or
// backslash of v, or -1: what record_out doubles inside quotes.
func indexQuoteOrBackslash(v []byte) int {
	i := 0
	for ; i+8 <= len(v); i += 8 {
		x := binary.LittleEndian.Uint64(v[i:])
		if hasByte(x, '"') || hasByte(x, '\\') {
			break
		}
	}
	for ; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			return i
		}
	}
	return -1
}

// addFields adds a row given by its escaped COPY fields.
func (s *rowSum) addFields(fields [][]byte) error {
	rec := append(s.rec[:0], '(')
	for j, f := range fields {
		if j > 0 {
			rec = append(rec, ',')
		}
		if isNullField(f) {
			continue
		}
		i := indexSpecial(f)
		if i < 0 && len(f) > 0 {
			rec = append(rec, f...)
			continue
		}
		v := f
		if i >= 0 && bytes.IndexByte(f[i:], '\\') >= 0 {
			var err error
			if v, err = unescapeField(s.val[:0], f); err != nil {
				return err
			}
			s.val = v
		}
		rec = appendRecordValue(rec, v)
	}
	s.rec = append(rec, ')')
	s.add()
	return nil
}

// addValues adds a row of unescaped values.
func (s *rowSum) addValues(row []value) {
	rec := append(s.rec[:0], '(')
	for j, v := range row {
		if j > 0 {
			rec = append(rec, ',')
		}
		if v.kind == catalog.ValueText {
			rec = appendRecordValue(rec, v.data)
		}
	}
	s.rec = append(rec, ')')
	s.add()
}

func (s *rowSum) add() {
	h := md5.Sum(s.rec)
	s.sum += binary.BigEndian.Uint64(h[:8])
}

// formatChecksum is the checksum's text: 16 hex digits.
func formatChecksum(sum uint64) string { return fmt.Sprintf("%016x", sum) }

// ChecksumSQL is the query that computes, on any server, the row count and
// the checksum restore reports for table (an SQL name) with these columns
// (the table's columns other than generated ones, in order). The sum of
// the signed 64-bit values is a numeric; it is brought back to 64 bits and
// printed as 16 hex digits. It needs nothing newer than PostgreSQL 10.
func ChecksumSQL(table string, columns []string) string {
	var cols []string
	for _, c := range columns {
		cols = append(cols, "t."+schema.QuoteIdent(c))
	}
	row := "ROW(" + strings.Join(cols, ", ") + ")"
	if len(cols) == 0 {
		row = "ROW()"
	}
	return "SELECT count(*), lpad(to_hex(((coalesce(sum(('x' || substr(md5(" + row + "::text), 1, 16))::bit(64)::bigint), 0)" +
		" % 18446744073709551616 + 27670116110564327424) % 18446744073709551616 - 9223372036854775808)::bigint), 16, '0') FROM " + table + " t"
}
