package ingest

import (
	"encoding/binary"
	"encoding/json"
	"testing"

	"lbt/catalog"
)

// pgTuple builds a pgoutput TupleData of text values ("" is NULL here).
func pgTuple(vals ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		if v == "" {
			b = append(b, 'n')
			continue
		}
		b = append(b, 't')
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

func TestAppendTuple_KeyHashFollowsKeyOrder(t *testing.T) {
	tests := []struct {
		name    string
		vals    []string
		keyCols []int
		keyVals []string
		hasKey  bool
	}{
		{"single key", []string{"42", "x"}, []int{0}, []string{"42"}, true},
		{"key in table order", []string{"1", "2", "3"}, []int{0, 2}, []string{"1", "3"}, true},
		{"key declared out of table order", []string{"a", "b"}, []int{1, 0}, []string{"b", "a"}, true},
		{"no key", []string{"a"}, nil, nil, false},
		{"key column beyond the tuple", []string{"a"}, []int{3}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := pgTuple(tt.vals...)
			_, n, key, hasKey, err := appendTuple(nil, src, tt.keyCols)
			if err != nil || n != len(src) {
				t.Fatalf("n=%d of %d, err=%v", n, len(src), err)
			}
			if hasKey != tt.hasKey {
				t.Fatalf("hasKey = %v, want %v", hasKey, tt.hasKey)
			}
			if !hasKey {
				return
			}
			var want [][]byte
			for _, v := range tt.keyVals {
				want = append(want, []byte(v))
			}
			if w := catalog.KeyHash(want); key != w {
				t.Fatalf("key hash %d, want %d (what inspect computes from %v)", key, w, tt.keyVals)
			}
		})
	}
}

func FuzzAppendTuple(f *testing.F) {
	f.Add(pgTuple("1", "two", ""), 1)
	f.Fuzz(func(t *testing.T, src []byte, key int) {
		appendTuple(nil, src, []int{key % 4}) // must not panic on any input
	})
}

// The objid of an lbt.ddl message, which json_build_object writes as a
// string, and the messages of a capture installed before lbt sent it.
func TestDDLMessageObjID(t *testing.T) {
	for in, want := range map[string]oidText{
		`{"tag": "DROP TABLE", "object_type": "table", "object": "public.x", "objid": "16389"}`: 16389,
		`{"tag": "DROP TABLE", "object_type": "table", "object": "public.x", "objid": 16389}`:   16389,
		`{"tag": "DROP TABLE", "object_type": "table", "object": "public.x"}`:                   0,
	} {
		var m ddlMessage
		if err := json.Unmarshal([]byte(in), &m); err != nil || m.ObjID != want || m.Tag != "DROP TABLE" {
			t.Errorf("%s: %+v, %v; want objid %d", in, m, err, want)
		}
	}
}

func TestFullXid(t *testing.T) {
	for _, tt := range []struct {
		xid  uint32
		cur  uint64
		want uint64
	}{
		{xid: 100, cur: 200, want: 100},
		{xid: 200, cur: 200, want: 200},
		{xid: 0xfffffff0, cur: 1<<32 + 5, want: 0xfffffff0},
		{xid: 3, cur: 1<<32 + 5, want: 1<<32 + 3},
		{xid: 2, cur: 5, want: 2}, // frozen: far in the past
	} {
		if got := fullXid(tt.xid, tt.cur); got != tt.want {
			t.Errorf("fullXid(%d, %d) = %d, want %d", tt.xid, tt.cur, got, tt.want)
		}
	}
}
