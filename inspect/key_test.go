package inspect

import (
	"errors"
	"reflect"
	"strings"
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

// A --key is checked against the types of the key columns: a column name
// without a value, or a value that no row of that type can have, is an
// error that shows the expected form, not a row that never changed.
func TestResolveKey_Types(t *testing.T) {
	tbl := func(cols ...schema.Column) *table {
		var pk []string
		for _, c := range cols {
			if c.Key {
				pk = append(pk, c.Name)
			}
		}
		return &table{name: "public.t", versions: []catalog.SchemaVersion{{Version: 1, Table: schema.Table{
			Schema: "public", Name: "t", ReplicaIdentity: 'd', Columns: cols, PrimaryKey: pk}}}}
	}
	id := schema.Column{Name: "id", TypeOID: 20, TypeName: "bigint", Key: true}
	ok := schema.Column{Name: "ok", TypeOID: 16, TypeName: "boolean", Key: true}
	amount := schema.Column{Name: "amount", TypeOID: 1700, TypeName: "numeric(10,2)", Key: true}
	name := schema.Column{Name: "name", TypeOID: 25, TypeName: "text", Key: true}
	label := schema.Column{Name: "label", TypeOID: 25, TypeName: "text"}
	tests := []struct {
		name string
		t    *table
		in   string
		want rowKey
		err  string
	}{
		{name: "integer", t: tbl(id, label), in: "id=42", want: rowKey{"id": "42"}},
		{name: "integer shorthand", t: tbl(id, label), in: "42", want: rowKey{"id": "42"}},
		{name: "integer in another form", t: tbl(id, label), in: "id=+042", want: rowKey{"id": "42"}},
		{name: "column without a value", t: tbl(id, label), in: "id",
			err: `--key id names a column but gives no value: give --key 'id=42'`},
		{name: "column without a value, upper case", t: tbl(id, label), in: "ID",
			err: `--key ID names a column but gives no value: give --key 'id=42'`},
		{name: "another column without a value", t: tbl(id, label), in: "label",
			err: `--key label names a column but gives no value: give --key 'id=42'`},
		{name: "not an integer", t: tbl(id, label), in: "id=abc",
			err: `--key: column id of public.t is bigint, and abc is not an integer: give --key 'id=42'`},
		{name: "shorthand not an integer", t: tbl(id, label), in: "x1",
			err: `--key: column id of public.t is bigint, and x1 is not an integer: give --key 'id=42'`},
		{name: "empty integer", t: tbl(id, label), in: "id=",
			err: `--key: column id of public.t is bigint, and "" is not an integer: give --key 'id=42'`},
		{name: "integer out of range", t: tbl(id, label), in: "id=9223372036854775808",
			err: `--key: column id of public.t is bigint, and 9223372036854775808 is not an integer: give --key 'id=42'`},
		{name: "boolean", t: tbl(ok, name), in: "ok=yes,name=x", want: rowKey{"ok": "t", "name": "x"}},
		{name: "not a boolean", t: tbl(ok, name), in: "ok=maybe,name=x",
			err: `--key: column ok of public.t is boolean, and maybe is not a boolean: give --key 'ok=true,name=...'`},
		{name: "numeric as written", t: tbl(amount), in: "amount=1.50", want: rowKey{"amount": "1.50"}},
		{name: "numeric beyond float64", t: tbl(amount), in: "amount=1e400", want: rowKey{"amount": "1e400"}},
		{name: "not a numeric", t: tbl(amount), in: "amount=1.5.0",
			err: `--key: column amount of public.t is numeric(10,2), and 1.5.0 is not a number: give --key 'amount=42'`},
		{name: "unparsable", t: tbl(amount), in: "amount=1,5",
			err: `--key "amount=1,5": value "5" has no column name (write it like 'id=42' or 'a=1,b="x,y"')`},
		{name: "text value id", t: tbl(name), in: "name=id", want: rowKey{"name": "id"}},
		{name: "text shorthand", t: tbl(name), in: "bob", want: rowKey{"name": "bob"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := parseKey(tt.in)
			var got rowKey
			if err == nil {
				got, err = resolveKey(parts, tt.t)
			}
			if tt.err != "" {
				var ie *InputError
				if !errors.As(err, &ie) || err.Error() != tt.err {
					t.Fatalf("error %v, want the InputError %q", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// FuzzParseKey: parseKey never panics, fails only with an InputError that
// shows the expected form, and what it accepts means the same when written
// back quoted.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"id=42", "42", "id", `a=1,b="x,y"`, `"My Col"=" padded "`, `b="say ""hi"""`, "a=", "=1", "a=1,", `a="x`, "a=1=2", " , ", `""=""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parts, err := parseKey(s)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), "'id=42'") {
				t.Fatalf("parseKey(%q): error %v, want an InputError showing 'id=42'", s, err)
			}
			return
		}
		if len(parts) == 0 {
			t.Fatalf("parseKey(%q) accepted no part", s)
		}
		var b strings.Builder
		for i, p := range parts {
			if i > 0 {
				b.WriteByte(',')
			}
			switch {
			case p.quoted:
				b.WriteString(`"` + strings.ReplaceAll(p.name, `"`, `""`) + `"=`)
			case p.name != "":
				b.WriteString(p.name + "=")
			}
			b.WriteString(`"` + strings.ReplaceAll(p.value, `"`, `""`) + `"`)
		}
		again, err := parseKey(b.String())
		if err != nil || !reflect.DeepEqual(again, parts) {
			t.Fatalf("parseKey(%q) = %#v; written back as %q it reads %#v, %v", s, parts, b.String(), again, err)
		}
	})
}
