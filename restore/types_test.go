package restore

import (
	"strings"
	"testing"

	"lbt/schema"
)

func TestTypeStatements(t *testing.T) {
	def := schema.Definition{
		Extensions: []schema.Extension{{Name: "citext", Version: "1.6", Schema: "ext"}},
		Types: []schema.TypeDef{
			{Schema: "public", Name: "mood", Kind: "enum", Labels: []string{"sad", "it's ok"}},
			{Schema: "public", Name: "things", Kind: "domain", Base: "integer", NotNull: true, Default: "1",
				Checks: []schema.TypeCheck{{Name: "pos", Def: "CHECK ((VALUE > 0))"}, {Name: "meow", Def: "CHECK ((VALUE < 11)) NOT VALID", NotValid: true}}},
			{Schema: "Odd", Name: "pair", Kind: "composite", Attributes: []schema.TypeAttribute{{Name: "x", Type: "things"}, {Name: "Label", Type: "text", Collation: `"C"`}}},
			{Schema: "public", Name: "fr", Kind: "range", Subtype: "double precision", SubtypeDiff: "float8mi"},
			{Schema: "public", Name: "cbase", Kind: "base"},
		},
	}
	before, after := typeStatements(def)
	all := strings.Join(before, ";\n")
	for _, want := range []string{
		"CREATE SCHEMA IF NOT EXISTS ext",
		"CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA ext",
		"CREATE TYPE public.mood AS ENUM ('sad', 'it''s ok')",
		"CREATE DOMAIN public.things AS integer DEFAULT 1 NOT NULL CONSTRAINT pos CHECK ((VALUE > 0));",
		`CREATE SCHEMA IF NOT EXISTS "Odd"`,
		`CREATE TYPE "Odd".pair AS (x things, "Label" text COLLATE "C")`,
		"CREATE TYPE public.fr AS RANGE (SUBTYPE = double precision, SUBTYPE_DIFF = float8mi)",
		"WHERE n.nspname = 'Odd' AND t.typname = 'pair'",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("statements lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "meow") || strings.Contains(all, "cbase") {
		t.Errorf("a NOT VALID check or a base type in the statements before the data:\n%s", all)
	}
	// The NOT VALID check comes after the data, only where the domain was
	// created.
	if len(after) != 1 || !strings.Contains(after[0], "ALTER DOMAIN public.things ADD CONSTRAINT meow CHECK ((VALUE < 11)) NOT VALID") ||
		!strings.Contains(after[0], "current_setting('lbt.created_type_2', true) = 'on'") || !strings.Contains(all, "set_config('lbt.created_type_2', 'on', true)") {
		t.Errorf("after the data: %q", after)
	}
	if got := uncreatableTypes(def); len(got) != 1 || got[0] != "public.cbase" {
		t.Errorf("uncreatableTypes = %q", got)
	}
}

func TestDoBlock_Tag(t *testing.T) {
	if got := doBlock("x"); got != "DO $lbt$ BEGIN\nx\nEND $lbt$" {
		t.Errorf("doBlock = %q", got)
	}
	if got := doBlock("'$lbt$'"); !strings.HasPrefix(got, "DO $lbt1$ BEGIN") || !strings.HasSuffix(got, "END $lbt1$") {
		t.Errorf("a body holding the tag: %q", got)
	}
}
