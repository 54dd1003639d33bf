package ingest

import (
	"context"
	"encoding/json"
	"time"

	"lbt/catalog"
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
		id, ok, err := a.lookup.ResolveTable(ctx, c.Object)
		cancel()
		if err != nil {
			a.log.Warn("captured DDL names a table that cannot be looked up", "object", c.Object, "error", err)
			continue
		}
		if ok {
			a.tx.altered[id] = true
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
	if err := a.awaitEnded(); err != nil {
		return err
	}
	for oid, t := range a.tables {
		if !t.tracked || t.version == 0 || t.describedAt == a.tx.commitLSN || !a.altered(oid) {
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
		desc, st, ok, err := a.lookup.DescribeCurrent(ctx, oid, t.desc)
		cancel()
		if err != nil {
			return err
		}
		if !ok {
			continue // dropped since
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
