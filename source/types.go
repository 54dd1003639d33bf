package source

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"lbt/schema"
)

// firstNormalObjectID is PostgreSQL's first OID for objects created after
// initdb: types below it are built in.
const firstNormalObjectID = 16384

// describeTypes reads the user-defined types a table's columns need, each
// after the types it needs itself (a domain's base type, a composite's
// attribute types, a range's subtype, an array's element type), and the
// extensions that own any of them. A type an extension owns is recorded
// with its extension and not followed further: CREATE EXTENSION makes it.
func describeTypes(ctx context.Context, tx pgx.Tx, table uint32) ([]schema.TypeDef, []schema.Extension, error) {
	rows, err := tx.Query(ctx, `SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, table)
	if err != nil {
		return nil, nil, fmt.Errorf("read column types: %w", err)
	}
	roots, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
	if err != nil {
		return nil, nil, fmt.Errorf("read column types: %w", err)
	}
	d := &typeDescriber{ctx: ctx, tx: tx, seen: map[uint32]bool{}}
	for _, oid := range roots {
		if err := d.visit(oid); err != nil {
			return nil, nil, err
		}
	}
	return d.types, d.extensions, nil
}

type typeDescriber struct {
	ctx        context.Context
	tx         pgx.Tx
	seen       map[uint32]bool
	types      []schema.TypeDef
	extensions []schema.Extension
}

// visit records the type oid after what it depends on (depth first).
func (d *typeDescriber) visit(oid uint32) error {
	if oid < firstNormalObjectID || d.seen[oid] {
		return nil
	}
	d.seen[oid] = true
	var t schema.TypeDef
	var typtype string
	var elem, base, relid uint32
	var ext, extVersion, extSchema *string
	err := d.tx.QueryRow(d.ctx, `SELECT n.nspname, t.typname, t.typtype::text, t.typelem, t.typbasetype, t.typrelid,
			CASE WHEN t.typbasetype <> 0 THEN format_type(t.typbasetype, t.typtypmod) ELSE '' END, t.typnotnull, coalesce(t.typdefault, ''),
			CASE WHEN t.typtype = 'd' AND t.typcollation <> 0 AND t.typcollation <> (SELECT b.typcollation FROM pg_type b WHERE b.oid = t.typbasetype)
				THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = t.typcollation)
				ELSE '' END,
			e.extname, e.extversion, en.nspname
		FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		LEFT JOIN pg_depend dep ON dep.classid = 'pg_type'::regclass AND dep.objid = t.oid AND dep.refclassid = 'pg_extension'::regclass AND dep.deptype = 'e'
		LEFT JOIN pg_extension e ON e.oid = dep.refobjid
		LEFT JOIN pg_namespace en ON en.oid = e.extnamespace
		WHERE t.oid = $1`, oid).
		Scan(&t.Schema, &t.Name, &typtype, &elem, &base, &relid, &t.Base, &t.NotNull, &t.Default, &t.Collation, &ext, &extVersion, &extSchema)
	if err != nil {
		return fmt.Errorf("read type %d: %w", oid, err)
	}
	if ext != nil {
		e := schema.Extension{Name: *ext, Version: *extVersion, Schema: *extSchema}
		if !slices.Contains(d.extensions, e) {
			d.extensions = append(d.extensions, e)
		}
		return nil
	}
	switch {
	case elem != 0 && typtype == "b":
		// An array (or another type with an element type): its element
		// type is what has to exist; the array type comes with it.
		return d.visit(elem)
	case typtype == "m":
		// A multirange (PostgreSQL 14): CREATE TYPE AS RANGE makes it.
		var rng uint32
		if err := d.tx.QueryRow(d.ctx, `SELECT rngtypid FROM pg_range WHERE rngmultitypid = $1`, oid).Scan(&rng); err != nil {
			return fmt.Errorf("read multirange type %s: %w", t.Name, err)
		}
		return d.visit(rng)
	case typtype == "e":
		t.Kind = "enum"
		rows, err := d.tx.Query(d.ctx, `SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder`, oid)
		if err != nil {
			return fmt.Errorf("read enum %s: %w", t.Name, err)
		}
		if t.Labels, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return fmt.Errorf("read enum %s: %w", t.Name, err)
		}
	case typtype == "d":
		t.Kind = "domain"
		if err := d.visit(base); err != nil {
			return err
		}
		rows, err := d.tx.Query(d.ctx, `SELECT conname::text, pg_get_constraintdef(oid), NOT convalidated FROM pg_constraint
			WHERE contypid = $1 AND contype = 'c' ORDER BY conname`, oid)
		if err != nil {
			return fmt.Errorf("read domain %s: %w", t.Name, err)
		}
		for rows.Next() {
			var c schema.TypeCheck
			if err := rows.Scan(&c.Name, &c.Def, &c.NotValid); err != nil {
				rows.Close()
				return fmt.Errorf("read domain %s: %w", t.Name, err)
			}
			t.Checks = append(t.Checks, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read domain %s: %w", t.Name, err)
		}
	case typtype == "c":
		t.Kind = "composite"
		rows, err := d.tx.Query(d.ctx, `SELECT a.attname::text, a.atttypid, format_type(a.atttypid, a.atttypmod),
				CASE WHEN a.attcollation <> ty.typcollation AND a.attcollation <> 0
					THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation)
					ELSE '' END
			FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
			WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, relid)
		if err != nil {
			return fmt.Errorf("read composite type %s: %w", t.Name, err)
		}
		var deps []uint32
		for rows.Next() {
			var a schema.TypeAttribute
			var typ uint32
			if err := rows.Scan(&a.Name, &typ, &a.Type, &a.Collation); err != nil {
				rows.Close()
				return fmt.Errorf("read composite type %s: %w", t.Name, err)
			}
			t.Attributes = append(t.Attributes, a)
			deps = append(deps, typ)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read composite type %s: %w", t.Name, err)
		}
		for _, typ := range deps {
			if err := d.visit(typ); err != nil {
				return err
			}
		}
	case typtype == "r":
		t.Kind = "range"
		var sub uint32
		err := d.tx.QueryRow(d.ctx, `SELECT r.rngsubtype, format_type(r.rngsubtype, NULL),
				CASE WHEN r.rngsubopc <> (SELECT oc.oid FROM pg_opclass oc WHERE oc.opcmethod = (SELECT oid FROM pg_am WHERE amname = 'btree')
						AND oc.opcintype = r.rngsubtype AND oc.opcdefault LIMIT 1)
					THEN (SELECT quote_ident(ocn.nspname) || '.' || quote_ident(oc.opcname) FROM pg_opclass oc JOIN pg_namespace ocn ON ocn.oid = oc.opcnamespace WHERE oc.oid = r.rngsubopc)
					ELSE '' END,
				CASE WHEN r.rngcollation <> 0 AND r.rngcollation <> (SELECT s.typcollation FROM pg_type s WHERE s.oid = r.rngsubtype)
					THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = r.rngcollation)
					ELSE '' END,
				CASE WHEN r.rngcanonical <> 0 THEN r.rngcanonical::regproc::text ELSE '' END,
				CASE WHEN r.rngsubdiff <> 0 THEN r.rngsubdiff::regproc::text ELSE '' END
			FROM pg_range r WHERE r.rngtypid = $1`, oid).
			Scan(&sub, &t.Subtype, &t.SubtypeOpclass, &t.Collation, &t.Canonical, &t.SubtypeDiff)
		if err != nil {
			return fmt.Errorf("read range type %s: %w", t.Name, err)
		}
		if err := d.visit(sub); err != nil {
			return err
		}
	default:
		// A base type not from an extension (CREATE TYPE with C
		// functions): lbt cannot recreate it; restore names it as needed.
		t.Kind = "base"
	}
	d.types = append(d.types, t)
	return nil
}
