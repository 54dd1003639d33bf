package schema

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestTable_JSONRoundTrip(t *testing.T) {
	in := Table{Schema: "s", Name: "T x", ReplicaIdentity: 'f', PrimaryKey: []string{"id"},
		Columns: []Column{{Name: "id", TypeOID: 23, TypeMod: -1, TypeName: "integer", Key: true}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Table
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %s\ngot  %+v\nwant %+v", b, out, in)
	}
}

func TestParseName(t *testing.T) {
	tests := []struct {
		in, schema, table string
		err               bool
	}{
		{"orders", "public", "orders", false},
		{"Sales.Orders", "sales", "orders", false},
		{`"Sales"."Order ""Items"""`, "Sales", `Order "Items"`, false},
		{`analytics."événements"`, "analytics", "événements", false},
		{`a.b.c`, "", "", true},
		{`"unterminated`, "", "", true},
		{`has space`, "", "", true},
		{``, "", "", true},
	}
	for _, tt := range tests {
		s, n, err := ParseName(tt.in)
		if (err != nil) != tt.err || s != tt.schema || n != tt.table {
			t.Errorf("ParseName(%q) = %q, %q, %v", tt.in, s, n, err)
		}
	}
}

func TestQuoteIdent(t *testing.T) {
	for in, want := range map[string]string{
		"orders": "orders", "Orders": `"Orders"`, "order": `"order"`, `a"b`: `"a""b"`, "1x": `"1x"`, "x1": "x1", "a b": `"a b"`,
	} {
		if got := QuoteIdent(in); got != want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
}

// FuzzParseName: ParseName never panics, and a name it accepts, quoted
// again by QuoteIdent, parses to the same schema and table.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"orders", "Sales.Orders", `"Sales"."Order ""Items"""`, `analytics."événements"`, `a.b.c`, `"unterminated`, `has space`, ``, `"".x`, `x.`, `."a"`, "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		schemaName, table, err := ParseName(s)
		if err != nil {
			return
		}
		if schemaName == "" || table == "" {
			t.Fatalf("ParseName(%q) = %q, %q: an empty part", s, schemaName, table)
		}
		q := QuoteIdent(schemaName) + "." + QuoteIdent(table)
		s2, t2, err := ParseName(q)
		if err != nil || s2 != schemaName || t2 != table {
			t.Fatalf("ParseName(%q) = %q, %q; quoted again as %s it reads %q, %q, %v", s, schemaName, table, q, s2, t2, err)
		}
	})
}

func TestScanQuoted(t *testing.T) {
	tests := []struct {
		in, text string
		n        int
		ok       bool
	}{
		{`"a"`, "a", 3, true},
		{`"Order ""Items"""."x"`, `Order "Items"`, 17, true},
		{`""`, "", 2, true},
		{`"a""`, "", 0, false},
		{`"unterminated`, "", 0, false},
		{`bare`, "", 0, false},
		{``, "", 0, false},
	}
	for _, tt := range tests {
		text, n, ok := ScanQuoted(tt.in)
		if text != tt.text || n != tt.n || ok != tt.ok {
			t.Errorf("ScanQuoted(%q) = %q, %d, %v; want %q, %d, %v", tt.in, text, n, ok, tt.text, tt.n, tt.ok)
		}
	}
}
