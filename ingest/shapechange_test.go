package ingest

import (
	"strings"
	"testing"

	"lbt/schema"
	"lbt/source"
)

func TestInexactChange(t *testing.T) {
	col := func(name string, attnum int16, typ uint32, mod int32) schema.Column {
		return schema.Column{Name: name, AttNum: attnum, TypeOID: typ, TypeMod: mod}
	}
	const int4, int8, text, varchar = 23, 20, 25, 1043
	base := []schema.Column{col("id", 1, int4, -1), col("amount", 2, int4, -1), col("label", 3, varchar, 24)}
	table := func(cols ...schema.Column) schema.Table {
		return schema.Table{Schema: "public", Name: "t", Columns: cols}
	}
	node := func(n, xmin uint32) source.Storage { return source.Storage{Relfilenode: n, Xmin: xmin} }
	missing := col("status", 4, text, -1)
	missing.HasMissing, missing.Missing = true, "new"
	for _, tt := range []struct {
		name     string
		cur      schema.Table
		st       source.Storage
		truncXid uint32
		want     string // a part of the reason; "" for exact
	}{
		{"nothing changed", table(base...), node(100, 5), 0, ""},
		{"autovacuum or ANALYZE: same storage", table(base...), node(100, 9), 0, ""},
		{"type changed", table(base[0], col("amount", 2, int8, -1), base[2]), node(101, 9), 0, "type of column amount"},
		{"typmod changed", table(base[0], base[1], col("label", 3, varchar, 44)), node(101, 9), 0, "type of column label"},
		{"type changed keeping storage (binary coercible)", table(base[0], base[1], col("label", 3, text, -1)), node(100, 9), 0, "type of column label"},
		{"column dropped and added again", table(base[0], base[1], col("label", 4, varchar, 24)), node(100, 9), 0, "dropped and added again"},
		{"column dropped", table(base[0], base[2]), node(100, 9), 0, ""},
		{"column renamed", table(base[0], col("total", 2, int4, -1), base[2]), node(100, 9), 0, ""},
		{"column renamed and retyped", table(base[0], col("total", 2, int8, -1), base[2]), node(101, 9), 0, "renamed column amount to total"},
		{"column added without default", table(append(base[:3:3], col("note", 4, text, -1))...), node(100, 9), 0, ""},
		{"column added with a volatile default", table(append(base[:3:3], col("at", 4, 1184, -1))...), node(101, 9), 0, "volatile default"},
		{"column added with a fast default", table(append(base[:3:3], missing)...), node(100, 9), 0, ""},
		{"fast default and a rewrite", table(append(base[:3:3], missing)...), node(101, 9), 0, "rewritten"},
		{"TRUNCATE carried by the stream", table(base...), node(101, 7), 7, ""},
		{"rewrite after the TRUNCATE", table(base...), node(102, 8), 7, "rewritten"},
		{"VACUUM FULL or CLUSTER", table(base...), node(101, 8), 0, "rewritten"},
		{"storage unknown before", table(base...), source.Storage{}, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := inexactChange(table(base...), tt.cur, node(100, 5), tt.st, tt.truncXid)
			switch {
			case tt.want == "" && got != "":
				t.Errorf("want exact, got %q", got)
			case tt.want != "" && !strings.Contains(got, tt.want):
				t.Errorf("want a reason with %q, got %q", tt.want, got)
			}
		})
	}
}
