package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"lbt/catalog"
	"lbt/schema"
)

// ddlPrefix is the prefix of the logical messages that lbt setup
// --capture-ddl emits for each DDL command, in the command's transaction.
const ddlPrefix = "lbt.ddl"

// ddlCommand is the part of an lbt.ddl message the archiver needs.
type ddlCommand struct {
	Tag        string `json:"tag"`
	ObjectType string `json:"object_type"`
	Object     string `json:"object"`
}

// altered reports whether a captured ALTER TABLE of the current transaction
// names the table with this OID. The names are resolved on the source once
// per transaction; a name that no longer resolves (dropped or renamed
// since) names nothing.
func (a *archiver) altered(oid uint32) bool {
	if a.tx.altered == nil {
		a.tx.altered = map[uint32]bool{}
	}
	for ; a.tx.alteredSeen < len(a.tx.messages); a.tx.alteredSeen++ {
		m := a.tx.messages[a.tx.alteredSeen]
		var c ddlCommand
		if m.prefix != ddlPrefix || json.Unmarshal(m.content, &c) != nil || c.Tag != "ALTER TABLE" || c.ObjectType != "table" {
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
		var id *uint32
		err := a.lookup.QueryRow(ctx, `SELECT to_regclass($1)::oid`, c.Object).Scan(&id)
		cancel()
		if err != nil {
			a.log.Warn("captured DDL names a table that cannot be looked up", "object", c.Object, "error", err)
			continue
		}
		if id != nil {
			a.tx.altered[*id] = true
		}
	}
	return a.tx.altered[oid]
}

// describeAltered looks at the tables a captured ALTER TABLE of the
// transaction being committed names, and that the stream did not describe
// in it: a change the stream cannot carry is then seen at the DDL's own
// commit, not at the table's next change, and its inexact span starts
// there. The schema version itself is still recorded at the table's next
// change, from the stream's Relation message.
func (a *archiver) describeAltered() error {
	hasDDL := false
	for _, m := range a.tx.messages {
		hasDDL = hasDDL || m.prefix == ddlPrefix
	}
	if !hasDDL {
		return nil
	}
	for oid, t := range a.tables {
		if !t.tracked || t.version == 0 || t.describedAt == a.tx.commitLSN || !a.altered(oid) {
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
		desc, st, err := describeSource(ctx, a.lookup, oid, t.desc)
		cancel()
		if errors.Is(err, pgx.ErrNoRows) {
			continue // dropped since
		}
		if err != nil {
			return err
		}
		w, err := a.catalogTx()
		if err != nil {
			return err
		}
		if inexact := inexactChange(t.desc, desc, t.storage, st, 0); inexact != "" {
			g := catalog.TableGap{TableID: t.id, FromLSN: a.tx.commitLSN, FromTime: a.tx.commitTime, SeenLSN: a.tx.commitLSN, Reason: inexact}
			if err := a.addTableGap(w, g, desc.QualifiedName()); err != nil {
				return err
			}
		}
		if err := a.setDescription(w, t, desc, st); err != nil {
			return err
		}
		t.desc, t.storage, t.describedAt, t.truncXid = desc, st, a.tx.commitLSN, 0
	}
	return nil
}

// describeSource reads a table's columns, as the stream would send them
// (not dropped, not generated, in attnum order), and its storage from the
// source catalog. prev gives the schema and name for messages and the
// replica identity, which the comparison does not use.
func describeSource(ctx context.Context, conn *pgx.Conn, oid uint32, prev schema.Table) (schema.Table, storage, error) {
	t := schema.Table{Schema: prev.Schema, Name: prev.Name, ReplicaIdentity: prev.ReplicaIdentity, PrimaryKey: prev.PrimaryKey}
	var st storage
	var xmin int64
	err := conn.QueryRow(ctx, `SELECT n.nspname, c.relname, c.relfilenode, c.xmin::text::bigint FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, oid).Scan(&t.Schema, &t.Name, &st.relfilenode, &xmin)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return t, st, err
		}
		return t, st, fmt.Errorf("describe %s: %w", prev.QualifiedName(), err)
	}
	st.xmin = uint32(xmin)
	generated := `false`
	v := conn.PgConn().ParameterStatus("server_version")
	old := strings.HasPrefix(v, "10.") || strings.HasPrefix(v, "9.")
	if !old && !strings.HasPrefix(v, "11.") {
		generated = `a.attgenerated <> ''`
	}
	rows, err := conn.Query(ctx, `SELECT a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), a.attnum
		FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND NOT `+generated+` ORDER BY a.attnum`, oid)
	if err != nil {
		return t, st, fmt.Errorf("describe %s: %w", prev.QualifiedName(), err)
	}
	for rows.Next() {
		var c schema.Column
		if err := rows.Scan(&c.Name, &c.TypeOID, &c.TypeMod, &c.TypeName, &c.AttNum); err != nil {
			rows.Close()
			return t, st, fmt.Errorf("describe %s: %w", prev.QualifiedName(), err)
		}
		t.Columns = append(t.Columns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return t, st, fmt.Errorf("describe %s: %w", prev.QualifiedName(), err)
	}
	if err := describeColumns(ctx, conn, oid, &t); err != nil {
		return t, st, err
	}
	return t, st, nil
}
