package repair

import (
	"testing"

	"lbt/restore"
	"lbt/schema"
)

func TestStatements(t *testing.T) {
	u := &tableUndo{
		name: "public.t",
		cols: []schema.Column{
			{Name: "id", TypeOID: 23, TypeName: "integer"},
			{Name: "doc", TypeOID: 114, TypeName: "json"},
			{Name: "note", TypeOID: 25, TypeName: "text"},
		},
		key: []int{0},
	}
	all := []bool{true, true, true}
	row := func(id, doc string, note *string) []restore.Field {
		f := []restore.Field{{Text: id}, {Text: doc}, {Null: true}}
		if note != nil {
			f[2] = restore.Field{Text: *note}
		}
		return f
	}
	it := "it's"
	tx := &Tx{}
	for _, c := range []struct {
		name   string
		change rowChange
		op     string
		sql    string
		forced [2]string
	}{
		{"insert undone", rowChange{after: row("1", `{"a":1}`, nil), present: all}, "DELETE",
			`DELETE FROM public.t WHERE id = '1'::integer AND doc::text IS NOT DISTINCT FROM '{"a":1}' AND note IS NOT DISTINCT FROM NULL`,
			[2]string{`DELETE FROM public.t WHERE id = '1'::integer`}},
		{"delete undone", rowChange{before: row("2", `{}`, &it), present: all}, "INSERT",
			`INSERT INTO public.t (id, doc, note) OVERRIDING SYSTEM VALUE SELECT '2'::integer, '{}'::json, 'it''s'::text WHERE NOT EXISTS (SELECT 1 FROM public.t WHERE id = '2'::integer)`,
			[2]string{`UPDATE public.t SET doc = '{}'::json, note = 'it''s'::text WHERE id = '2'::integer`,
				`INSERT INTO public.t (id, doc, note) OVERRIDING SYSTEM VALUE VALUES ('2'::integer, '{}'::json, 'it''s'::text)`}},
		{"update undone, a column added since left out of the guard", rowChange{before: row("4", `{}`, &it), after: row("4", `[]`, &it), present: []bool{true, true, false}}, "UPDATE",
			`UPDATE public.t SET doc = '{}'::json WHERE id = '4'::integer AND doc::text IS NOT DISTINCT FROM '[]'`,
			[2]string{`UPDATE public.t SET doc = '{}'::json WHERE id = '4'::integer`,
				`INSERT INTO public.t (id, doc) OVERRIDING SYSTEM VALUE VALUES ('4'::integer, '{}'::json)`}},
		{"update undone", rowChange{before: row("4", `{}`, &it), after: row("4", `{}`, nil), present: all}, "UPDATE",
			`UPDATE public.t SET note = 'it''s'::text WHERE id = '4'::integer AND doc::text IS NOT DISTINCT FROM '{}' AND note IS NOT DISTINCT FROM NULL`,
			[2]string{`UPDATE public.t SET doc = '{}'::json, note = 'it''s'::text WHERE id = '4'::integer`,
				`INSERT INTO public.t (id, doc, note) OVERRIDING SYSTEM VALUE VALUES ('4'::integer, '{}'::json, 'it''s'::text)`}},
	} {
		s := u.keyedStatement(tx, c.change)
		if s.Op != c.op || s.SQL != c.sql || s.Forced != c.forced || s.Rows != 1 {
			t.Errorf("%s:\n got %s %s\n     %q\nwant %s %s\n     %q", c.name, s.Op, s.SQL, s.Forced, c.op, c.sql, c.forced)
		}
	}
}

func TestMultisetStatements(t *testing.T) {
	u := &tableUndo{name: "public.bag", cols: []schema.Column{{Name: "tag", TypeOID: 25, TypeName: "text"}}}
	all := []bool{true}
	counts := map[string]int{"1:a": 1}
	tx := &Tx{}
	del := u.multisetStatement(tx, rowChange{key: "1:a", after: []restore.Field{{Text: "a"}}, delta: -2, present: all}, counts)
	if del.Conflict == nil || del.Rows != 2 {
		t.Errorf("deleting 2 copies of a row with 1 left: %+v, want a conflict", del)
	}
	ins := u.multisetStatement(tx, rowChange{key: "1:b", before: []restore.Field{{Text: "b"}}, delta: 2, present: all}, counts)
	if want := `INSERT INTO public.bag (tag) OVERRIDING SYSTEM VALUE VALUES ('b'::text), ('b'::text)`; ins.SQL != want || ins.Rows != 2 || counts["1:b"] != 2 {
		t.Errorf("inserting 2 copies: %s (%d rows, count %d), want %s", ins.SQL, ins.Rows, counts["1:b"], want)
	}
}

func TestEncodeKey(t *testing.T) {
	for _, c := range []struct {
		a, b []restore.Field
		same bool
	}{
		{[]restore.Field{{Text: "a"}, {Text: "bc"}}, []restore.Field{{Text: "ab"}, {Text: "c"}}, false},
		{[]restore.Field{{Null: true}}, []restore.Field{{Text: `N;`}}, false},
		{[]restore.Field{{Text: ""}}, []restore.Field{{Null: true}}, false},
		{[]restore.Field{{Text: "x"}, {Null: true}}, []restore.Field{{Text: "x"}, {Null: true}}, true},
	} {
		if same := encodeKey(c.a, nil) == encodeKey(c.b, nil); same != c.same {
			t.Errorf("%v and %v: same %v, want %v", c.a, c.b, same, c.same)
		}
	}
	if compareKeys(encodeKey([]restore.Field{{Text: "9"}}, nil), encodeKey([]restore.Field{{Text: "10"}}, nil)) >= 0 {
		t.Error("key 9 does not sort before 10")
	}
}
