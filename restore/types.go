package restore

import (
	"fmt"
	"strings"

	"lbt/schema"
)

// What the restored table's types need, created where they are missing so
// that a script runs into an empty database and a restore into one that
// has them alike: the extensions its types come from (CREATE EXTENSION IF
// NOT EXISTS), then the enums, domains, composite and range types of the
// basebackup's definition, in the order it records them (each after what
// it needs), each in a DO block that creates it only when no type of that
// name exists. Everything runs inside the restore's transaction.
//
// A domain's NOT VALID checks reject values the source kept (they were
// written before the check was added), and PostgreSQL applies every
// domain check to every new value: so a domain created here gets them
// only after the data. Which domains were created is noted in a setting
// local to the transaction. A domain that already existed is left as it
// is.

// typeStatements returns the statements that create what is missing
// before the table, and those that complete it after the data.
func typeStatements(def schema.Definition) (before, after []string) {
	schemas := map[string]bool{"public": true, "pg_catalog": true}
	createSchema := func(s string) {
		if !schemas[s] {
			schemas[s] = true
			before = append(before, "CREATE SCHEMA IF NOT EXISTS "+schema.QuoteIdent(s))
		}
	}
	for _, e := range def.Extensions {
		createSchema(e.Schema)
		before = append(before, "CREATE EXTENSION IF NOT EXISTS "+schema.QuoteIdent(e.Name)+" WITH SCHEMA "+schema.QuoteIdent(e.Schema))
	}
	for i, t := range def.Types {
		create := createType(t)
		if create == "" {
			continue
		}
		createSchema(t.Schema)
		mark := fmt.Sprintf("lbt.created_type_%d", i+1)
		var late []string
		for _, c := range t.Checks {
			if c.NotValid {
				late = append(late, "ALTER DOMAIN "+t.QualifiedName()+" ADD CONSTRAINT "+schema.QuoteIdent(c.Name)+" "+c.Def)
			}
		}
		body := "    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace\n" +
			"                   WHERE n.nspname = " + schema.QuoteLiteral(t.Schema) + " AND t.typname = " + schema.QuoteLiteral(t.Name) + ") THEN\n" +
			"        " + create + ";\n"
		if len(late) > 0 {
			body += "        PERFORM pg_catalog.set_config(" + schema.QuoteLiteral(mark) + ", 'on', true);\n"
		}
		body += "    END IF;"
		before = append(before, doBlock(body))
		if len(late) > 0 {
			after = append(after, doBlock("    IF pg_catalog.current_setting("+schema.QuoteLiteral(mark)+", true) = 'on' THEN\n        "+
				strings.Join(late, ";\n        ")+";\n    END IF;"))
		}
	}
	return before, after
}

// createType is the statement that creates a type, or "" for one lbt
// cannot create (a base type with C functions).
func createType(t schema.TypeDef) string {
	switch t.Kind {
	case "enum":
		var labels []string
		for _, l := range t.Labels {
			labels = append(labels, schema.QuoteLiteral(l))
		}
		return "CREATE TYPE " + t.QualifiedName() + " AS ENUM (" + strings.Join(labels, ", ") + ")"
	case "domain":
		s := "CREATE DOMAIN " + t.QualifiedName() + " AS " + t.Base
		if t.Collation != "" {
			s += " COLLATE " + t.Collation
		}
		if t.Default != "" {
			s += " DEFAULT " + t.Default
		}
		if t.NotNull {
			s += " NOT NULL"
		}
		for _, c := range t.Checks {
			if !c.NotValid {
				s += " CONSTRAINT " + schema.QuoteIdent(c.Name) + " " + c.Def
			}
		}
		return s
	case "composite":
		var attrs []string
		for _, a := range t.Attributes {
			d := schema.QuoteIdent(a.Name) + " " + a.Type
			if a.Collation != "" {
				d += " COLLATE " + a.Collation
			}
			attrs = append(attrs, d)
		}
		return "CREATE TYPE " + t.QualifiedName() + " AS (" + strings.Join(attrs, ", ") + ")"
	case "range":
		opts := []string{"SUBTYPE = " + t.Subtype}
		for _, o := range [][2]string{{"SUBTYPE_OPCLASS", t.SubtypeOpclass}, {"COLLATION", t.Collation}, {"CANONICAL", t.Canonical}, {"SUBTYPE_DIFF", t.SubtypeDiff}} {
			if o[1] != "" {
				opts = append(opts, o[0]+" = "+o[1])
			}
		}
		return "CREATE TYPE " + t.QualifiedName() + " AS RANGE (" + strings.Join(opts, ", ") + ")"
	}
	return ""
}

// doBlock wraps PL/pgSQL statements in a DO block, dollar-quoted with a
// tag the body does not contain.
func doBlock(body string) string {
	tag := "$lbt$"
	for n := 1; strings.Contains(body, tag); n++ {
		tag = fmt.Sprintf("$lbt%d$", n)
	}
	return "DO " + tag + " BEGIN\n" + body + "\nEND " + tag
}

// uncreatableTypes lists the types of a definition that restore cannot create.
func uncreatableTypes(def schema.Definition) []string {
	var out []string
	for _, t := range def.Types {
		if createType(t) == "" {
			out = append(out, t.QualifiedName())
		}
	}
	return out
}

// notValidCheck finds a NOT VALID check of a domain the definition
// records, by the names a server error gives.
func notValidCheck(def schema.Definition, nsp, domain, constraint string) (schema.TypeDef, bool) {
	for _, t := range def.Types {
		if t.Kind != "domain" || t.Name != domain || (nsp != "" && t.Schema != nsp) {
			continue
		}
		for _, c := range t.Checks {
			if c.NotValid && c.Name == constraint {
				return t, true
			}
		}
	}
	return schema.TypeDef{}, false
}
