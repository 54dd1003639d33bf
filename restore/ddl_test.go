package restore

import (
	"slices"
	"strings"
	"testing"
	"time"

	"lbt/schema"
)

func TestRewriteIndex(t *testing.T) {
	tests := []struct {
		in       string
		keepName bool
		want     string
	}{
		{`CREATE INDEX t_name_idx ON public.t USING btree (name)`, false, `CREATE INDEX ON s."T x" USING btree (name)`},
		{`CREATE UNIQUE INDEX "Odd ""ix""" ON ONLY "My"."Tab" USING btree (lower(name)) WHERE (n > 0)`, true,
			`CREATE UNIQUE INDEX "Odd ""ix""" ON s."T x" USING btree (lower(name)) WHERE (n > 0)`},
	}
	for _, tt := range tests {
		got, _, _, err := rewriteIndex(tt.in, `s."T x"`, tt.keepName)
		if err != nil || got != tt.want {
			t.Errorf("rewriteIndex(%q) =\n%q, %v\nwant\n%q", tt.in, got, err, tt.want)
		}
	}
	if _, _, _, err := rewriteIndex("DROP TABLE x", "t", false); err == nil {
		t.Error("not an index definition: want an error")
	}
}

func TestMentions(t *testing.T) {
	gone := map[string]bool{"old": true, "Big Col": true}
	tests := []struct{ sql, want string }{
		{"CHECK ((n > 0))", ""},
		{"CHECK ((old > 0))", "old"},
		{`UNIQUE ("Big Col", x)`, `"Big Col"`},
		{"CHECK ((note <> 'old'::text))", ""},
		{"CHECK ((bold > 0))", ""},
	}
	for _, tt := range tests {
		if got := mentions(tt.sql, gone); got != tt.want {
			t.Errorf("mentions(%q) = %q, want %q", tt.sql, got, tt.want)
		}
	}
}

func TestDefaultTargetName(t *testing.T) {
	at := time.Date(2026, 11, 21, 14, 3, 4, 0, time.FixedZone("CET", 3600))
	if got := defaultTargetName("orders", at); got != "orders_restored_20261121130304" {
		t.Errorf("got %q", got)
	}
	long := strings.Repeat("é", 40) // 80 bytes
	got := defaultTargetName(long, at)
	if len(got) > 63 || !strings.HasSuffix(got, "_restored_20261121130304") || !strings.HasPrefix(got, "éé") {
		t.Errorf("got %q (%d bytes)", got, len(got))
	}
}

func TestTableDef_SchemaChanges(t *testing.T) {
	// At the basebackup: id serial PK, a text NOT NULL, b int with a CHECK
	// and an index, c int, and a generated column g over c. Since: b
	// dropped, a renamed to "A 2", c changed to bigint, d added.
	def := schema.Definition{
		Table: schema.Table{Schema: "public", Name: "t", ReplicaIdentity: 'd', PrimaryKey: []string{"id"}, Columns: []schema.Column{
			{Name: "id", TypeOID: 23, TypeName: "integer", Key: true},
			{Name: "a", TypeOID: 25, TypeName: "text"},
			{Name: "b", TypeOID: 23, TypeName: "integer"},
			{Name: "c", TypeOID: 23, TypeName: "integer"},
		}},
		Columns: []schema.ColumnDef{
			{Name: "id", Type: "integer", NotNull: true, Default: "nextval('t_id_seq'::regclass)"},
			{Name: "a", Type: "text", NotNull: true, Default: "'x'::text"},
			{Name: "b", Type: "integer"},
			{Name: "c", Type: "integer", Default: "0"},
			{Name: "g", Type: "integer", Generated: "(c * 2)"},
		},
		Constraints: []schema.Constraint{
			{Name: "t_pkey", Def: "PRIMARY KEY (id)"},
			{Name: "t_b_check", Def: "CHECK ((b > 0))"},
			{Name: "t_a_key", Def: "UNIQUE (a)"},
		},
		Indexes: []string{"CREATE INDEX t_b_idx ON public.t USING btree (b)", "CREATE INDEX t_a_idx ON public.t USING btree (a)"},
	}
	target := schema.Table{Schema: "public", Name: "t", ReplicaIdentity: 'd', PrimaryKey: []string{"id"}, Columns: []schema.Column{
		{Name: "id", TypeOID: 23, TypeName: "integer", Key: true},
		{Name: "A 2", TypeOID: 25, TypeName: "text"},
		{Name: "c", TypeOID: 20, TypeName: "bigint"},
		{Name: "d", TypeOID: 16, TypeName: "boolean"},
	}}
	sh := &shapes{target: target, def: []int{0, 1, 3, -1}}
	seqs := []schema.Sequence{{Name: "public.t_id_seq", Column: "id", LastValue: 10, IsCalled: true, Increment: 1, MinValue: 1, MaxValue: 2147483647, Start: 1, Type: "integer"}}
	td, err := newTableDef(ddlInput{shapes: sh, def: def, seqs: seqs, schemaName: "public", name: "t_restored", keepNames: false})
	if err != nil {
		t.Fatal(err)
	}
	create := strings.Join(td.createStatements(), ";\n")
	for _, want := range []string{
		`CREATE SEQUENCE public.t_restored_id_seq AS integer`,
		`id integer NOT NULL DEFAULT nextval('public.t_restored_id_seq'::regclass)`,
		`a text NOT NULL DEFAULT 'x'::text`, // loaded as a, renamed last
		`c bigint,`,                         // type changed: no default, generated column over it left out
		`d boolean`,
		`ALTER SEQUENCE public.t_restored_id_seq OWNED BY public.t_restored.id`,
	} {
		if !strings.Contains(create, want) {
			t.Errorf("create statements lack %q:\n%s", want, create)
		}
	}
	if strings.Contains(create, " g ") || strings.Contains(create, "b integer") {
		t.Errorf("dropped or dependent columns created:\n%s", create)
	}
	if got := td.copyStatement(); got != `COPY public.t_restored (id, a, c, d) FROM STDIN` {
		t.Errorf("copy: %s", got)
	}
	st := &dataStats{seqMax: []int64{42}, seqFound: []bool{true}}
	if keys := td.keyStatement(); keys != `ALTER TABLE public.t_restored ADD PRIMARY KEY (id)` {
		t.Errorf("keys: %s", keys)
	}
	extra := td.extraStatements()
	want := []string{"ALTER TABLE public.t_restored ADD UNIQUE (a)", "CREATE INDEX ON public.t_restored USING btree (a)"}
	if !slices.Equal(extra, want) {
		t.Errorf("extra statements %q, want %q", extra, want)
	}
	if got := td.renameStatements(); !slices.Equal(got, []string{`ALTER TABLE public.t_restored RENAME COLUMN a TO "A 2"`}) {
		t.Errorf("renames %q", got)
	}
	if got := td.setvalStatements(st); !slices.Equal(got, []string{`SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('public.t_restored', 'id'), 42, true)`}) {
		t.Errorf("setval %q", got)
	}
	if len(td.warnings) != 3 {
		t.Errorf("want warnings for g, the CHECK on b and the index on b; got %q", td.warnings)
	}
	// NULLs in a NOT NULL column: no NOT NULL, and a warning.
	if w := td.settleNotNull([]bool{false, true, false, false}); len(w) != 1 || strings.Contains(strings.Join(td.createStatements(), ";"), "text NOT NULL") {
		t.Errorf("warnings %q, create:\n%s", w, strings.Join(td.createStatements(), ";\n"))
	}
}

func TestTableDef_KeepNames(t *testing.T) {
	def := schema.Definition{
		Table:       schema.Table{Schema: "S", Name: "T", PrimaryKey: []string{"id"}, Columns: []schema.Column{{Name: "id", TypeOID: 20, TypeName: "bigint"}}},
		Columns:     []schema.ColumnDef{{Name: "id", Type: "bigint", NotNull: true, Identity: "a"}},
		Constraints: []schema.Constraint{{Name: "T_pk", Def: "PRIMARY KEY (id)"}},
	}
	seqs := []schema.Sequence{{Name: `"S"."T_id_seq"`, Column: "id", LastValue: 5, Increment: 1, MinValue: 1, MaxValue: 100, Start: 1, Type: "bigint"}}
	td, err := newTableDef(ddlInput{shapes: &shapes{target: def.Table, def: []int{0}}, def: def, seqs: seqs, schemaName: "S", name: "T", keepNames: true})
	if err != nil {
		t.Fatal(err)
	}
	create := strings.Join(td.createStatements(), ";\n")
	if !strings.Contains(create, `id bigint GENERATED ALWAYS AS IDENTITY (INCREMENT BY 1 MINVALUE 1 MAXVALUE 100 START WITH 1)`) || strings.Contains(create, "CREATE SEQUENCE") {
		t.Errorf("create:\n%s", create)
	}
	if keys := td.keyStatement(); keys != `ALTER TABLE "S"."T" ADD CONSTRAINT "T_pk" PRIMARY KEY (id)` {
		t.Errorf("keys: %s", keys)
	}
	got := td.setvalStatements(&dataStats{seqMax: []int64{500}, seqFound: []bool{true}})
	if !slices.Equal(got, []string{`SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('"S"."T"', 'id'), 100, true)`}) {
		t.Errorf("setval beyond the maximum is capped: %q", got)
	}
}
