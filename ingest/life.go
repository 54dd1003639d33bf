package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"lbt/catalog"
	"lbt/schema"
	"lbt/setup"
)

// What the archive knows of when tables began and stopped existing on the
// source (the catalog's rel_life): restore resolves a name to the table that
// had it at the target, and must not give a dropped table's rows for a
// moment after its DROP. pgoutput says nothing of a DROP TABLE. With DDL
// capture (lbt setup --capture-ddl) the DROP's lbt.ddl message arrives in
// the DROP's own transaction, which places it exactly. Without it, the
// archiver looks on the source whether the archived tables still exist: at
// start, every DropCheckInterval, and at once when a new table takes the
// name of one the archive holds. A table found gone was dropped somewhere
// between the last moment it was known to exist and the check.

// ddlMessage is the part of an lbt.ddl message (package setup) that says
// which table a command created or dropped.
type ddlMessage struct {
	Tag        string  `json:"tag"`
	ObjectType string  `json:"object_type"`
	Object     string  `json:"object"`
	ObjID      oidText `json:"objid"` // 0 from a capture installed before lbt sent it
}

// oidText is an OID that json_build_object writes as a string.
type oidText uint32

func (o *oidText) UnmarshalJSON(b []byte) error {
	var n uint32
	if err := json.Unmarshal(bytes.Trim(b, `"`), &n); err != nil {
		return fmt.Errorf("objid %s: %w", b, err)
	}
	*o = oidText(n)
	return nil
}

// createdTables are the command tags that make a new table; a table
// created with rows (CREATE TABLE AS, SELECT INTO) has them in the stream
// of the same transaction when the publication carries it.
var createdTables = map[string]bool{"CREATE TABLE": true, "CREATE TABLE AS": true, "SELECT INTO": true}

// tableDDL records what the current transaction's lbt.ddl messages say of
// tables created and dropped. It runs at the transaction's commit.
func (a *archiver) tableDDL(commitTime time.Time) error {
	for _, msg := range a.tx.messages {
		if msg.prefix != setup.DDLPrefix {
			continue
		}
		var m ddlMessage
		if err := json.Unmarshal(msg.content, &m); err != nil || m.ObjectType != "table" {
			continue // not about a table, or not lbt's (inspect ddl shows it)
		}
		switch {
		case strings.HasPrefix(m.Tag, "DROP "):
			if err := a.droppedByDDL(m, commitTime); err != nil {
				return err
			}
		case createdTables[m.Tag]:
			if err := a.createdByDDL(m, commitTime); err != nil {
				return err
			}
		}
	}
	return nil
}

// droppedByDDL records the exact drop of an archived table.
func (a *archiver) droppedByDDL(m ddlMessage, commitTime time.Time) error {
	w, err := a.catalogTx()
	if err != nil {
		return err
	}
	live, err := w.LiveTables(true)
	if err != nil {
		return err
	}
	nsp, rel, _ := schema.ParseName(m.Object)
	var found *catalog.LiveTable
	for i, t := range live {
		if (m.ObjID != 0 && t.OID == uint32(m.ObjID)) || (m.ObjID == 0 && t.Schema == nsp && t.Name == rel) {
			found = &live[i]
		}
	}
	if found == nil {
		return nil // never archived
	}
	l := catalog.TableLife{DroppedLSN: a.tx.commitLSN, DroppedAt: commitTime, DropExact: true,
		AliveLSN: a.tx.commitLSN - 1, AliveAt: commitTime.Add(-time.Microsecond)}
	if err := w.SetTableDropped(found.ID, l); err != nil {
		return err
	}
	a.forget(found.OID)
	a.log.Info("table dropped on the source", "table", m.Object, "table_id", found.ID, "lsn", pglogrepl.LSN(a.tx.commitLSN))
	return nil
}

// createdByDDL records the creation of a table. The table's history
// starts empty there: every change to it is in the stream from its
// creating transaction on, when the publication is FOR ALL TABLES (one
// that names its tables does not carry a new one from its creation). A
// table that the same transaction wrote (CREATE TABLE AS) is registered
// already; one not written yet is registered now, with its definition as
// the source has it now, so that it restores, empty, before its first
// change.
func (a *archiver) createdByDDL(m ddlMessage, commitTime time.Time) error {
	oid := uint32(m.ObjID)
	if oid == 0 || !a.opts.TrackNewTables {
		return nil
	}
	all, err := a.allTables()
	if err != nil || !all {
		return err
	}
	t := a.tables[oid]
	if t != nil && t.id != 0 {
		if t.registeredAt != a.tx.commitLSN {
			return nil // archived before this transaction: not this table's creation
		}
		w, err := a.catalogTx()
		if err != nil {
			return err
		}
		return w.SetTableCreated(t.id, a.tx.commitLSN, commitTime, true)
	}
	if err := a.awaitEnded(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	def, ok, err := a.lookup.DescribeNew(ctx, oid)
	cancel()
	if err != nil || !ok {
		// Gone again, or not a table the stream carries: nothing to
		// restore of it. A failure to ask leaves it to its first change.
		if err != nil {
			a.log.Warn("cannot describe a new table: it is archived from its first change", "table", m.Object, "error", err)
		}
		return nil
	}
	w, err := a.catalogTx()
	if err != nil {
		return err
	}
	id, err := w.AddTable(oid, a.tx.commitLSN)
	if err != nil {
		return err
	}
	sv := catalog.SchemaVersion{TableID: id, Version: 1, FromLSN: a.tx.commitLSN, Table: def}
	if err := w.AddSchemaVersion(sv); err != nil {
		return err
	}
	if err := w.SetTableCreated(id, a.tx.commitLSN, commitTime, true); err != nil {
		return err
	}
	a.tables[oid] = &table{id: id, oid: oid, def: def, version: 1, keyCols: def.KeyColumns(), tracked: true, registeredAt: a.tx.commitLSN}
	a.log.Info("archiving new table from its creation", "table", def.QualifiedName(), "oid", oid, "lsn", pglogrepl.LSN(a.tx.commitLSN))
	return nil
}

// creation reports whether the table was created in the transaction
// being received (here), or else after this session began to stream
// (sinceStart), from the xmin of the pg_attribute row of its ctid, written
// with the table and by no later ALTER. Only a FOR ALL TABLES publication
// carries a new table from its creation.
//
// Created here, its xmin is the transaction's xid; a table created in a
// subtransaction has the subtransaction's xid and is not recognised, which
// only costs it a basebackup. Created since the start, its creating
// transaction is at or after the xmax of a snapshot taken at the start, so
// it began, and committed, after the stream's start position, and the
// stream holds all of its changes: when this is the table's first change,
// the table was empty from its creation until it.
func (a *archiver) creation(oid uint32) (here, sinceStart bool, err error) {
	if !a.tx.active && a.startXmax == 0 {
		return false, false, nil
	}
	all, err := a.allTables()
	if err != nil || !all {
		return false, false, err
	}
	if err := a.awaitEnded(); err != nil {
		return false, false, err
	}
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	c, ok, err := a.lookup.TableCreation(ctx, oid)
	if err != nil || !ok {
		return false, false, err
	}
	here = a.tx.active && c.Xmin == a.tx.xid
	sinceStart = !here && a.startXmax != 0 && fullXid(c.Xmin, c.SnapshotXmax) >= a.startXmax
	return here, sinceStart, nil
}

// fullXid extends a 32-bit xid to the 64-bit one of the epoch it belongs
// to, given a recent 64-bit xid cur (xids are at most 2^31 in the past).
func fullXid(xid uint32, cur uint64) uint64 {
	full := cur&^0xffffffff | uint64(xid)
	if full > cur && full >= 1<<32 {
		full -= 1 << 32
	}
	return full
}

// readStartXmax notes the xmax of a snapshot taken as the session starts
// streaming (creation).
func (a *archiver) readStartXmax() {
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	x, err := a.lookup.SnapshotXmax(ctx)
	if err != nil {
		a.log.Warn("cannot read the source's transaction counter: tables created from now on need a basebackup", "error", err)
		return
	}
	a.startXmax = x
}

// allTables reports whether the publication is FOR ALL TABLES.
func (a *archiver) allTables() (bool, error) {
	if a.pubAllTables == nil {
		ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
		defer cancel()
		p, err := a.lookup.Publication(ctx, a.opts.Publication)
		if err != nil {
			return false, err
		}
		a.pubAllTables = &p.AllTables
	}
	return *a.pubAllTables, nil
}

// catalogTx returns the open catalog transaction. A commit in flight
// must end first: its writer opens its SQLite transaction only in the
// committer goroutine, and the catalog has one connection, which a
// transaction opened here first would hold while the archiver waits for
// that commit.
func (a *archiver) catalogTx() (*catalog.Writer, error) {
	if err := a.waitCommit(); err != nil {
		return nil, err
	}
	return a.writer()
}

// forget drops the archiver's state of a source table whose DROP the
// stream has shown (nothing of it can follow), so that a new table that
// gets its OID is archived as a new table.
func (a *archiver) forget(oid uint32) {
	if t := a.tables[oid]; t != nil && len(t.buf) == 0 {
		delete(a.tables, oid)
	}
	delete(a.seen, oid)
}

// dropCheckDue says whether the periodic look for dropped tables is due.
func (a *archiver) dropCheckDue() bool {
	return !a.tx.active && (a.lastDropCheck.IsZero() || (a.opts.DropCheckInterval > 0 && time.Since(a.lastDropCheck) >= a.opts.DropCheckInterval))
}

// sourcePoint is a WAL position of the source and the server's time there.
type sourcePoint struct {
	lsn uint64
	at  time.Time
}

func (a *archiver) sourcePoint(ctx context.Context) (sourcePoint, error) {
	p, err := a.lookup.Position(ctx)
	return sourcePoint{lsn: p.LSN, at: p.At}, err
}

// checkDropped looks on the source whether the archived tables (all, or
// those of only) still exist, and records those gone as dropped between
// the last moment they were known to exist and now. A failure to ask is
// logged, never fatal: the next check asks again.
func (a *archiver) checkDropped(only map[uint32]bool) error {
	a.lastDropCheck = time.Now()
	w, err := a.catalogTx()
	if err != nil {
		return err
	}
	live, err := w.LiveTables(false)
	if err != nil {
		return err
	}
	var oids []uint32
	for _, t := range live {
		if only == nil || only[t.OID] {
			oids = append(oids, t.OID)
		}
	}
	if len(oids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	// The position before the look: a table the look finds existed there
	// (a DROP that committed before it is visible to the later statement).
	before, err := a.sourcePoint(ctx)
	if err != nil {
		a.log.Warn("cannot check for dropped tables", "error", err)
		return nil
	}
	exists, err := a.lookup.Relations(ctx, oids)
	if err != nil {
		a.log.Warn("cannot check for dropped tables", "error", err)
		return nil
	}
	// The position after: the DROP of a table the look missed committed
	// before it.
	after, err := a.sourcePoint(ctx)
	if err != nil {
		a.log.Warn("cannot check for dropped tables", "error", err)
		return nil
	}
	for _, t := range live {
		if only != nil && !only[t.OID] {
			continue
		}
		if _, ok := exists[t.OID]; ok {
			a.seen[t.OID] = before
			continue
		}
		l := catalog.TableLife{DroppedLSN: after.lsn, DroppedAt: after.at, AliveLSN: t.AliveLSN, AliveAt: t.AliveAt}
		if s, ok := a.seen[t.OID]; ok {
			l.AliveLSN, l.AliveAt = max(l.AliveLSN, s.lsn), later(l.AliveAt, s.at)
		}
		if err := w.SetTableDropped(t.ID, l); err != nil {
			return err
		}
		// The archiver keeps its state of the table: changes to it that
		// committed before the DROP may still be on their way.
		delete(a.seen, t.OID)
		a.markPending(a.pending) // commit it with the next flush
		a.log.Info("table no longer exists on the source: dropped without lbt seeing the DROP (no DDL capture); "+
			"restores between its last sign of life and now are refused",
			"table", schema.Table{Schema: t.Schema, Name: t.Name}.QualifiedName(), "table_id", t.ID,
			"alive_lsn", pglogrepl.LSN(l.AliveLSN), "gone_lsn", pglogrepl.LSN(l.DroppedLSN))
	}
	return nil
}

// nameTaken returns the OIDs of other archived tables whose newest name is
// that of def: a new table that takes it means that they were dropped or
// renamed, which the archive must know before it holds both.
func (a *archiver) nameTaken(oid uint32, def schema.Table) map[uint32]bool {
	var out map[uint32]bool
	for o, t := range a.tables {
		if o != oid && t.id != 0 && t.def.Schema == def.Schema && t.def.Name == def.Name {
			if out == nil {
				out = map[uint32]bool{}
			}
			out[o] = true
		}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
