package restore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"strings"
	"testing"

	"lbt/catalog"
)

// null and txt are the values of the test rows.
var null = value{kind: catalog.ValueNull}

func txt(s string) value { return value{kind: catalog.ValueText, data: []byte(s)} }

// The record text of a row, as PostgreSQL's record_out writes
// ROW(...)::text: the expected strings are what the server prints (checked
// by hand with psql; test/restore_checksum_test.go checks the sums against
// a real server).
func TestRowSum_RecordText(t *testing.T) {
	tests := []struct {
		row  []value
		want string
	}{
		{nil, `()`},
		{[]value{txt("1")}, `(1)`},
		{[]value{null}, `()`},
		{[]value{null, null}, `(,)`},
		{[]value{txt("")}, `("")`},
		{[]value{txt("a b"), txt("x")}, `("a b",x)`},
		{[]value{txt(`say "hi"`)}, `("say ""hi""")`},
		{[]value{txt(`back\slash`)}, `("back\\slash")`},
		{[]value{txt("a,b"), txt("(p)")}, `("a,b","(p)")`},
		{[]value{txt("tab\there"), txt("nl\nx"), txt("cr\r"), txt("\v\f")}, "(\"tab\there\",\"nl\nx\",\"cr\r\",\"\v\f\")"},
		{[]value{txt("{1,NULL,3}"), txt(`{"a b","c\"d"}`)}, `("{1,NULL,3}","{""a b"",""c\\""d""}")`},
		{[]value{txt(`(1,"a,b ""c""")`)}, `("(1,""a,b """"c"""""")")`},
		{[]value{txt("ünïcödé"), txt("\u00a0nbsp")}, "(ünïcödé,\u00a0nbsp)"},
		{[]value{txt("NULL"), null, txt("x")}, `(NULL,,x)`},
	}
	for _, tt := range tests {
		var s rowSum
		s.addValues(tt.row)
		if got := string(s.rec); got != tt.want {
			t.Errorf("record text %q, want %q", got, tt.want)
		}
		h := md5.Sum([]byte(tt.want))
		if s.sum != binary.BigEndian.Uint64(h[:8]) {
			t.Errorf("%q: sum %x is not the first 64 bits of its md5", tt.want, s.sum)
		}

		// The same row as escaped COPY fields gives the same text.
		var fields [][]byte
		for _, v := range tt.row {
			if v.kind == catalog.ValueNull {
				fields = append(fields, nullField)
			} else {
				fields = append(fields, appendEscaped(nil, v.data))
			}
		}
		var f rowSum
		if err := f.addFields(fields); err != nil {
			t.Fatal(err)
		}
		if string(f.rec) != tt.want {
			t.Errorf("from COPY fields %q: record text %q, want %q", fields, f.rec, tt.want)
		}
	}
}

// The combination is a sum: it does not depend on the order of the rows,
// and it wraps modulo 2^64.
func TestRowSum_OrderIndependent(t *testing.T) {
	rows := [][]value{}
	for _, s := range []string{"a", "b", "c", "d", strings.Repeat("x", 5000)} {
		rows = append(rows, []value{{kind: catalog.ValueText, data: []byte(s)}})
	}
	var fwd, back rowSum
	for i := range rows {
		fwd.addValues(rows[i])
		back.addValues(rows[len(rows)-1-i])
	}
	if fwd.sum != back.sum {
		t.Errorf("order changes the sum: %x, %x", fwd.sum, back.sum)
	}
	if got := formatChecksum(1); got != "0000000000000001" {
		t.Errorf("formatChecksum(1) = %q", got)
	}
}

// The word-at-a-time scans find what a scan of every byte finds, at every
// position and alignment, among bytes that flag a word without being
// special.
func TestRowSum_ScansEqualByteScans(t *testing.T) {
	special := func(c byte) bool { return recordSpecial[c] }
	quote := func(c byte) bool { return c == '"' || c == '\\' }
	for c := 0; c < 256; c++ {
		for n := 0; n <= 19; n++ {
			for at := -1; at < n; at++ {
				// Filler that flags words: '!' is below ',', 0x80 and
				// 0xff have the high bit, '[' and ']' sit beside '\\'.
				for _, fill := range []byte("a!\x80\xff[]") {
					v := []byte(strings.Repeat(string(fill), n))
					if at >= 0 {
						v[at] = byte(c)
					}
					if got, want := indexSpecial(v), bytewise(v, special); got != want {
						t.Fatalf("indexSpecial(%q) = %d, want %d", v, got, want)
					}
					if got, want := indexQuoteOrBackslash(v), bytewise(v, quote); got != want {
						t.Fatalf("indexQuoteOrBackslash(%q) = %d, want %d", v, got, want)
					}
				}
			}
		}
	}
}

// BenchmarkRowSum adds rows of 1 KB of text, as the scale benchmark's, and
// narrow ones, as the restore benchmark's, given by their COPY fields.
func BenchmarkRowSum(b *testing.B) {
	for _, tt := range []struct {
		name string
		row  [][]byte
	}{
		{"1KB", [][]byte{[]byte("123456"), []byte(strings.Repeat("0123456789abcdef0123456789abcdef", 32))}},
		{"1KB-spaces", [][]byte{[]byte("123456"), []byte(strings.Repeat("the quick brown fox jumps over it", 31))}},
		{"narrow", [][]byte{[]byte("123456"), []byte("456"), []byte("customer 0123456789abcdef0123456789abcdef")}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			n := 0
			for _, f := range tt.row {
				n += len(f) + 1
			}
			b.SetBytes(int64(n))
			var s rowSum
			for range b.N {
				if err := s.addFields(tt.row); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// bytewise is the scan of every byte the word-at-a-time scans replace.
func bytewise(v []byte, is func(c byte) bool) int {
	for i, c := range v {
		if is(c) {
			return i
		}
	}
	return -1
}

// BenchmarkIndexSpecial compares, in one run, the word-at-a-time scan of a
// 1 KB value with no special byte against the byte-by-byte scan it
// replaced.
func BenchmarkIndexSpecial(b *testing.B) {
	v := []byte(strings.Repeat("0123456789abcdef0123456789abcdef", 32))
	b.Run("bytes", func(b *testing.B) {
		b.SetBytes(int64(len(v)))
		for range b.N {
			for _, c := range v {
				if recordSpecial[c] {
					b.Fatal("special")
				}
			}
		}
	})
	b.Run("words", func(b *testing.B) {
		b.SetBytes(int64(len(v)))
		for range b.N {
			if indexSpecial(v) >= 0 {
				b.Fatal("special")
			}
		}
	})
}

// The checksum of a parallel restore is the sum of what its jobs hash from
// the COPY text they take; it must be the one the producer would have
// computed from the rows, in whatever blocks the text is cut.
func TestBlockReader_SumEqualsTheProducers(t *testing.T) {
	tests := []struct {
		name string
		rows [][]value
	}{
		{"escapes and NULLs", [][]value{
			{txt("1"), txt("plain")},
			{txt("2"), null},
			{txt("3"), txt("")},
			{txt(`\N`), txt("tab\there nl\nx cr\r back\\slash")},
			{txt(`say "hi", (p)`), txt("ünïcödé \v\f")},
			{null, null},
		}},
		{"a table without columns", [][]value{{}, {}, {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var text bytes.Buffer
			rw := newRowWriter(&text, &tableDef{}, startProgress(nil, "", 0))
			for _, row := range tt.rows {
				if err := rw.writeValues(row); err != nil {
					t.Fatal(err)
				}
			}
			if err := rw.flush(); err != nil {
				t.Fatal(err)
			}
			want := rw.st.sum
			lines := bytes.SplitAfter(text.Bytes(), []byte("\n"))
			for cut := range len(tt.rows) + 1 {
				r := &blockReader{columns: len(tt.rows[0]) > 0}
				for _, block := range [][]byte{bytes.Join(lines[:cut], nil), bytes.Join(lines[cut:], nil)} {
					if err := r.hash(block); err != nil {
						t.Fatal(err)
					}
				}
				if r.sum.sum != want {
					t.Errorf("cut after %d rows: the jobs' sum %x, the producer's %x", cut, r.sum.sum, want)
				}
			}
			if err := (&blockReader{columns: true}).hash([]byte("1\tx\n2\ty")); err == nil {
				t.Error("a block that ends inside a row was hashed")
			}

			// Writing to the jobs, the producer leaves the hashing to them.
			fan := &fanOut{ctx: context.Background(), out: make(chan []byte, 1), free: make(chan []byte)}
			if rw := newRowWriter(fan, &tableDef{}, startProgress(nil, "", 0)); !rw.noSum {
				t.Error("a row writer into the jobs hashes the rows itself")
			}
		})
	}
}
