package inspect

import (
	"testing"

	"lbt/schema"
)

func TestDescribeChange(t *testing.T) {
	col := func(name string, attnum int16, typ string) schema.Column {
		return schema.Column{Name: name, AttNum: attnum, TypeName: typ}
	}
	table := func(cols ...schema.Column) schema.Table {
		return schema.Table{Schema: "public", Name: "t", ReplicaIdentity: 'd', Columns: cols}
	}
	base := table(col("id", 1, "integer"), col("v", 2, "text"))
	status := col("status", 3, "text")
	status.HasMissing, status.Missing, status.NotNull, status.Default = true, "new", true, "'new'::text"
	notNull := col("v", 2, "text")
	notNull.NotNull = true
	withDefault := col("v", 2, "text")
	withDefault.Default = "'x'::text"
	for _, tt := range []struct {
		name string
		cur  schema.Table
		want string
	}{
		{"added with a fast default", table(base.Columns[0], base.Columns[1], status), `added status text (older rows read 'new')`},
		{"dropped and added again", table(base.Columns[0], col("v", 3, "text")), "dropped and added again v text"},
		{"retyped", table(base.Columns[0], col("v", 2, "character varying(40)")), "changed v from text to character varying(40)"},
		{"NOT NULL", table(base.Columns[0], notNull), "v SET NOT NULL"},
		{"DEFAULT", table(base.Columns[0], withDefault), "v SET DEFAULT 'x'::text"},
		{"dropped", table(base.Columns[0]), "dropped v"},
	} {
		if got := describeChange(base, tt.cur); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
