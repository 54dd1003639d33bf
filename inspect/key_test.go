package inspect

import (
	"errors"
	"reflect"
	"testing"

	"lbt/catalog"
	"lbt/schema"
)

func TestParseKey(t *testing.T) {
	tests := []struct {
		in   string
		want []keyPart
		err  bool
	}{
		{in: "id=42", want: []keyPart{{name: "id", value: "42"}}},
		{in: " id = 42 ", want: []keyPart{{name: "id", value: "42"}}},
		{in: "42", want: []keyPart{{value: "42"}}},
		{in: "a=1,b=x", want: []keyPart{{name: "a", value: "1"}, {name: "b", value: "x"}}},
		{in: `a=1,b="x,y=z"`, want: []keyPart{{name: "a", value: "1"}, {name: "b", value: "x,y=z"}}},
		{in: `b="say ""hi"""`, want: []keyPart{{name: "b", value: `say "hi"`}}},
		{in: `"My Col"=" padded "`, want: []keyPart{{name: "My Col", quoted: true, value: " padded "}}},
		{in: `a=`, want: []keyPart{{name: "a", value: ""}}},
		{in: `a=""`, want: []keyPart{{name: "a", value: ""}}},
		{in: "", err: true},
		{in: "   ", err: true},
		{in: "=1", err: true},
		{in: "a=1,", err: true},
		{in: "a=1,2", err: true},
		{in: "a=1=2", err: true},
		{in: `a="x`, err: true},
		{in: `a="x"y`, err: true},
		{in: `a=x"y`, err: true},
		{in: "a=1,a=2", err: true},
		{in: "1,2", err: true},
	}
	for _, tt := range tests {
		got, err := parseKey(tt.in)
		if tt.err {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Errorf("parseKey(%q) = %v, %v; want an InputError", tt.in, got, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseKey(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}

func TestResolveKey(t *testing.T) {
	def := func(pk ...string) catalog.SchemaVersion {
		return catalog.SchemaVersion{Version: 1, Table: schema.Table{Schema: "public", Name: "t", ReplicaIdentity: 'd',
			Columns:    []schema.Column{{Name: "a", Key: true}, {Name: "B", Key: true}, {Name: "c"}},
			PrimaryKey: pk}}
	}
	tbl := &table{name: "public.t", versions: []catalog.SchemaVersion{def("a", "B")}}
	tests := []struct {
		in   string
		want rowKey
		err  string
	}{
		{in: `a=1,"B"=x`, want: rowKey{"a": "1", "B": "x"}},
		{in: `A=1,B=x`, want: rowKey{"a": "1", "B": "x"}}, // bare names fold, or match as written
		{in: `a=1`, err: `--key: the key (a, B) of public.t needs "B" too: give --key 'a=...,"B"=...'`},
		{in: `a=1,c=2`, err: `--key: column c is not in the key (a, B) of public.t: give --key 'a=...,"B"=...'`},
		{in: `a=1,zz=2`, err: `--key: table public.t has no column zz; its key is (a, B): give --key 'a=...,"B"=...'`},
		{in: `7`, err: `--key: the key of public.t has 2 columns (a, B): give --key 'a=...,"B"=...'`},
	}
	for _, tt := range tests {
		parts, err := parseKey(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := resolveKey(parts, tbl)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("resolveKey(%q): error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("resolveKey(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}

	single := &table{name: "public.t", versions: []catalog.SchemaVersion{def("a")}}
	parts, _ := parseKey("42")
	if got, err := resolveKey(parts, single); err != nil || !reflect.DeepEqual(got, rowKey{"a": "42"}) {
		t.Errorf("shorthand key: %v, %v", got, err)
	}
	nokey := &table{name: "public.t", versions: []catalog.SchemaVersion{{Table: schema.Table{Columns: []schema.Column{{Name: "a"}}}}}}
	if _, err := resolveKey(parts, nokey); err == nil {
		t.Error("a table without a key accepted a --key")
	}
}

// The hash inspect computes for a key is the one ingest stores: KeyHash
// over the key columns' values in key order.
func TestKeyHashes(t *testing.T) {
	v := catalog.SchemaVersion{Version: 1, Table: schema.Table{Columns: []schema.Column{{Name: "a", Key: true}, {Name: "b", Key: true}}, PrimaryKey: []string{"a", "b"}}}
	hashes, indexed := keyHashes(rowKey{"a": "1", "b": "x"}, []catalog.SchemaVersion{v, v})
	if want := catalog.KeyHash([][]byte{[]byte("1"), []byte("x")}); !indexed || len(hashes) != 1 || hashes[0] != want {
		t.Errorf("keyHashes = %v, %v; want [%d], true", hashes, indexed, want)
	}
	v.PrimaryKey = []string{"b", "a"}
	if _, indexed := keyHashes(rowKey{"a": "1", "b": "x"}, []catalog.SchemaVersion{v}); indexed {
		t.Error("a key whose columns are not in table order counts as indexed")
	}
}

func TestParseLSN(t *testing.T) {
	for in, want := range map[string]uint64{"0/16B3748": 0x16B3748, "1/0": 1 << 32, "ff/FFFFFFFF": 0xffffffffff} {
		if got, err := ParseLSN(in); err != nil || got != want || catalog.FormatLSN(got) != fmtUpper(in) {
			t.Errorf("ParseLSN(%q) = %x, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "16B3748", "0/", "/1", "0/1/2", "x/1", "0/100000000"} {
		if _, err := ParseLSN(in); err == nil {
			t.Errorf("ParseLSN(%q) accepted", in)
		}
	}
}

func fmtUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
