package ingest

// The archiver's handling of Relation messages: the table's shape and
// storage as the stream and the source describe them, and the inexact
// spans where the two part.

import (
	"context"
	"time"

	"github.com/jackc/pglogrepl"

	"lbt/catalog"
	"lbt/schema"
	"lbt/source"
)

func (a *archiver) relation(m *pglogrepl.RelationMessage) error {
	a.parts.noteRelation(m.RelationID, a.tables[m.RelationID] != nil)
	def := schema.Table{Schema: m.Namespace, Name: m.RelationName, ReplicaIdentity: m.ReplicaIdentity}
	for _, c := range m.Columns {
		def.Columns = append(def.Columns, schema.Column{Name: c.Name, TypeOID: c.DataType, TypeMod: c.TypeModifier, Key: c.Flags&1 != 0})
	}
	t := a.tables[m.RelationID]
	isNew := t == nil
	if isNew {
		t = &table{oid: m.RelationID, tracked: a.opts.TrackNewTables || a.published[m.RelationID]}
		a.tables[m.RelationID] = t
	}
	if !t.tracked || isNew {
		// A basebackup (lbt basebackup --table) may have registered the
		// table: then it is archived from now on, whatever trackNewTables says.
		w, err := a.catalogTx()
		if err != nil {
			return err
		}
		id, v, ok, err := w.TableByOID(m.RelationID)
		if err != nil {
			return err
		}
		if ok {
			t.id, t.def, t.version, t.keyCols, t.tracked, t.versionAt = id, v.Table, v.Version, v.KeyColumns(), true, v.FromLSN
			d, err := w.Description(id)
			if err != nil {
				return err
			}
			t.desc, t.storage.Relfilenode = v.Table, d.Relfilenode
			if d.Known {
				t.desc = d.Table
			}
			versions, err := w.SchemaVersions(id)
			if err != nil {
				return err
			}
			t.setVersions(versions)
		}
		if !t.tracked && isNew {
			a.log.Info("table not archived: it was not in the publication at start and trackNewTables is false", "table", def.QualifiedName())
		}
	}
	if !t.tracked || (a.tx.skip && t.version > 0) {
		return nil
	}
	// Every Relation message is looked up on the source, also when the
	// stream shows the same columns: pgoutput sends one after any change of
	// the table's catalog entry, and only the source tells a rewrite of its
	// rows (a new relfilenode) or a column dropped and added again (a new
	// attnum) from nothing at all.
	if err := a.awaitEnded(); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	st, err := a.lookup.DescribeRelation(dctx, m.RelationID, &def)
	cancel()
	if err != nil {
		return err
	}
	from := a.tx.commitLSN
	if !a.tx.active {
		from = a.archived.CommitLSN + 1
	}
	var inexact string
	var untilTruncate bool
	if t.version > 0 {
		inexact = inexactChange(t.desc, def, t.storage, st, t.truncXid)
		// pgoutput sends the Relation message of a TRUNCATE before the
		// TRUNCATE itself: a new relfilenode this transaction made is
		// explained if its TRUNCATE of the table follows.
		untilTruncate = inexact != "" && a.tx.active && inexactChange(t.desc, def, t.storage, st, a.tx.xid) == ""
	}
	w, err := a.catalogTx()
	if err != nil {
		return err
	}
	defer func() { t.truncXid, t.desc, t.describedAt = 0, def, a.tx.commitLSN }()
	if t.version > 0 && t.def.SameShape(def) {
		return a.noteStorage(w, t, def, st, inexact, untilTruncate, from)
	}
	if t.id == 0 {
		if taken := a.nameTaken(m.RelationID, def); taken != nil {
			// Another archived table had this name: it was dropped (or
			// renamed) before this one was created.
			if err := a.checkDropped(taken); err != nil {
				return err
			}
		}
		created, since, err := a.creation(m.RelationID)
		if err != nil {
			return err
		}
		if t.id, err = w.AddTable(m.RelationID, from); err != nil {
			return err
		}
		t.registeredAt = from
		if created || since {
			// Its whole history is in the stream from here: it restores
			// without a basebackup.
			if err := w.SetTableCreated(t.id, from, a.tx.commitTime, created); err != nil {
				return err
			}
		}
		a.log.Info("archiving new table", "table", def.QualifiedName(), "oid", m.RelationID)
	} else {
		a.log.Info("table definition changed", "table", def.QualifiedName(), "version", t.version+1, "lsn", pglogrepl.LSN(from))
	}
	sv := catalog.SchemaVersion{TableID: t.id, Version: t.version + 1, FromLSN: from, Table: def}
	if err := w.AddSchemaVersion(sv); err != nil {
		return err
	}
	if t.versions == nil {
		t.versions = map[int]catalog.MetaSchema{}
	}
	t.versions[sv.Version] = catalog.MetaSchema{SchemaVersion: sv, OID: t.oid}
	ms := t.versions[sv.Version]
	ms.RelFirstLSN = t.relFirstLSN() // version 1's, which may be this one
	t.versions[sv.Version] = ms
	a.describe(t, sv.Version)
	t.def, t.version, t.keyCols, t.versionAt = def, sv.Version, def.KeyColumns(), from
	if p := replicaIdentityProblem(def.QualifiedName(), def.ReplicaIdentity, len(t.keyCols) > 0); p != "" && !t.warned {
		a.log.Warn(p, "table", def.QualifiedName())
		t.warned = true
	}
	return a.noteStorage(w, t, def, st, inexact, untilTruncate, from)
}

// noteStorage records the table's storage as now read and, when the new
// description does not follow exactly from the old one, an inexact span of
// the table's history: from just after its last archived transaction (the
// change happened after it) until a basebackup after this transaction,
// which the scheduler takes at once.
// With untilTruncate the span is recorded at the commit unless a TRUNCATE
// of the table in this transaction explains the new storage.
func (a *archiver) noteStorage(w *catalog.Writer, t *table, def schema.Table, st source.Storage, inexact string, untilTruncate bool, seen uint64) error {
	if inexact != "" {
		g := catalog.TableGap{TableID: t.id, SeenLSN: seen, Reason: inexact}
		switch {
		case a.tx.active && a.altered(t.oid):
			// The captured DDL is in this transaction: the change is at
			// its commit.
			g.FromLSN, g.FromTime = a.tx.commitLSN, a.tx.commitTime
		default:
			g.FromLSN, g.FromTime = t.spanStart()
		}
		g.FromLSN = min(g.FromLSN, seen)
		switch {
		case untilTruncate:
			a.tx.gaps = append(a.tx.gaps, pendingGap{t: t, gap: g, name: def.QualifiedName()})
		case a.mayBeTruncateAhead(t, def, st):
			awaited, err := a.awaitTruncate(w, t, st, pendingGap{t: t, gap: g, name: def.QualifiedName()})
			if err != nil {
				return err
			}
			if awaited {
				// Compared with the old storage until the stream shows
				// what made the new one.
				st = t.storage
			}
		default:
			if err := a.addTableGap(w, g, def.QualifiedName()); err != nil {
				return err
			}
		}
	}
	if err := a.setDescription(w, t, def, st); err != nil {
		return err
	}
	t.storage = st
	return nil
}

// spanStart is where an inexact span of t begins when the change is only
// known to lie after its last archived transaction: just after it, or,
// with none, at the description before this one.
func (t *table) spanStart() (uint64, time.Time) {
	if t.lastLSN > 0 {
		return t.lastLSN + 1, t.lastTime
	}
	return t.versionAt, time.Time{}
}

// setDescription records the table as now read on the source when it
// differs from the last description, so that after a restart the next one
// is compared with it.
func (a *archiver) setDescription(w *catalog.Writer, t *table, desc schema.Table, st source.Storage) error {
	if st.Relfilenode == t.storage.Relfilenode && t.desc.SameShape(desc) {
		return nil
	}
	return w.SetDescription(t.id, catalog.TableDescription{Relfilenode: st.Relfilenode, Table: desc})
}

// pendingGap is an inexact span that a TRUNCATE later in the transaction
// may still explain.
type pendingGap struct {
	t    *table
	gap  catalog.TableGap
	name string
}

func (a *archiver) addTableGap(w *catalog.Writer, g catalog.TableGap, name string) error {
	if err := w.AddTableGap(g); err != nil {
		return err
	}
	a.log.Warn("table changed in a way the stream does not carry: restores from from_lsn on are refused until its next basebackup, which is taken now",
		"table", name, "reason", g.Reason, "from_lsn", pglogrepl.LSN(g.FromLSN), "lsn", pglogrepl.LSN(g.SeenLSN))
	return nil
}

func (t *table) setVersions(versions []catalog.SchemaVersion) {
	t.versions = make(map[int]catalog.MetaSchema, len(versions))
	for _, v := range versions {
		t.versions[v.Version] = catalog.MetaSchema{SchemaVersion: v, OID: t.oid}
	}
	first := t.relFirstLSN()
	for k, v := range t.versions {
		v.RelFirstLSN = first
		t.versions[k] = v
	}
}

// relFirstLSN is the rel row's first_lsn: version 1's from LSN, as both
// the archiver and a basebackup register a table.
func (t *table) relFirstLSN() uint64 {
	if v, ok := t.versions[1]; ok {
		return v.FromLSN
	}
	return 0
}

// describe adds a schema version to the next metadata blob unless the
// current segment already holds it.
func (a *archiver) describe(t *table, version int) {
	k := schemaKey{t.id, version}
	if a.described[k] {
		return
	}
	v, ok := t.versions[version]
	if !ok {
		return // a version 0: no blob uses it
	}
	a.described[k] = true
	a.meta.Schemas = append(a.meta.Schemas, v)
}

// mayBeTruncateAhead holds when the only change the source shows is new
// storage that another transaction made, and a TRUNCATE of the table by
// that transaction would explain it. The source is read as it is now, not
// as it was at the point of the stream: pgoutput may send a table's
// Relation message before a change of it (always in a new session), while
// a TRUNCATE committed after that change is already on the source.
func (a *archiver) mayBeTruncateAhead(t *table, def schema.Table, st source.Storage) bool {
	return a.tx.active && st.Xmin != 0 && st.Xmin != a.tx.xid &&
		inexactChange(t.desc, def, t.storage, st, st.Xmin) == ""
}

// awaitedTruncate is an inexact span that a TRUNCATE of the table by
// transaction xid, further down the stream, would explain.
type awaitedTruncate struct {
	pendingGap
	xid     uint32
	storage source.Storage // what xid made
	until   uint64         // the source's WAL position after the look: xid committed before it
}

// awaitTruncate holds gap back until the stream shows the TRUNCATE of t by
// the transaction that made storage st (truncate drops it) or passes the
// source's current WAL position without it (settleAwaited records it).
// Meanwhile the archive holds no span, as while the periodic look suspects
// a quiet table (quietddl.go); the wait is as long as the stream's lag.
// It reports false, having recorded the gap, when it cannot wait: the
// source's position is unknown, or t's storage changed again meanwhile
// (then the earlier span is recorded, which covers the later one).
func (a *archiver) awaitTruncate(w *catalog.Writer, t *table, st source.Storage, gap pendingGap) (bool, error) {
	if prev, ok := a.awaited[t.oid]; ok {
		if prev.storage == st {
			return true, nil
		}
		delete(a.awaited, t.oid)
		return false, a.addTableGap(w, prev.gap, prev.name)
	}
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	p, err := a.sourcePoint(ctx)
	cancel()
	if err != nil {
		return false, a.addTableGap(w, gap.gap, gap.name)
	}
	a.awaited[t.oid] = awaitedTruncate{pendingGap: gap, xid: st.Xmin, storage: st, until: p.lsn}
	return true, nil
}

// settleAwaited records the spans whose awaited TRUNCATE did not come
// before the stream reached end: what made the new storage was no
// TRUNCATE. The table is compared with its new storage from then on.
func (a *archiver) settleAwaited(end uint64) error {
	for oid, p := range a.awaited {
		if end < p.until {
			continue
		}
		w, err := a.catalogTx()
		if err != nil {
			return err
		}
		if err := a.addTableGap(w, p.gap, p.name); err != nil {
			return err
		}
		if err := a.setDescription(w, p.t, p.t.desc, p.storage); err != nil {
			return err
		}
		p.t.storage = p.storage
		delete(a.awaited, oid)
	}
	return nil
}
