package restore

import (
	"crypto/md5"
	"encoding/binary"
	"strings"
	"testing"

	"lbt/catalog"
)

// The record text of a row, as PostgreSQL's record_out writes
// ROW(...)::text: the expected strings are what the server prints (checked
// by hand with psql; test/restore_checksum_test.go checks the sums against
// a real server).
func TestRowSum_RecordText(t *testing.T) {
	null := value{kind: catalog.ValueNull}
	txt := func(s string) value { return value{kind: catalog.ValueText, data: []byte(s)} }
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
