// Package repair writes the statements that undo archived transactions or
// rewind a table, from the archive alone.
//
// An undo does not replay the archived statements backwards. For each
// table a transaction changed, it computes the table as restore does just
// before the transaction and right after it, and compares the two per key:
// what differs is the transaction's net effect, whatever the replica
// identity (the old image of an UPDATE or DELETE under REPLICA IDENTITY
// DEFAULT comes from the earlier changes or the basebackup, as in a
// restore). Each difference becomes one guarded statement that puts the
// row back as it was before, only if the row is still as the transaction
// left it. The table's latest archived state says which rows a later
// transaction changed again: those are conflicts, reported and left alone.
package repair

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"lbt/catalog"
	"lbt/inspect"
	"lbt/schema"
)

// InputError reports a request the archive cannot answer as asked: an xid
// it does not hold, a window without transactions. It is inspect's, whose
// questions undo and diff ask again: one kind of bad input for both.
type InputError = inspect.InputError

func inputErrorf(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

// Options selects what to undo: one transaction (Xid or LSN), or every
// transaction of an actor (Role and/or Application) committed in
// [Since, Until); Table limits it to one table.
type Options struct {
	Xid         uint32
	LSN         uint64 // the commit LSN, or any position inside the commit record
	Role        string
	Application string
	Since       time.Time
	Until       time.Time
	Table       string
	Logger      hclog.Logger
}

// Tx is an undone transaction.
type Tx struct {
	catalog.Tx
	Actor inspect.Actor
}

func (t *Tx) String() string {
	return fmt.Sprintf("transaction %d (committed %s at LSN %s by %s)", t.Xid, formatTime(t.CommitTime), catalog.FormatLSN(t.CommitLSN), t.Actor)
}

// Statement is the reversal of one row change (or, in a table without a
// key, of copies of one row).
type Statement struct {
	Tx    *Tx
	Table string // qualified SQL name, as the table is named now
	Op    string // what the statement does: DELETE, UPDATE or INSERT
	Key   string // the row, for messages
	SQL   string // guarded: it changes the row only if it is as the transaction left it
	Rows  int64  // rows SQL changes when nothing changed the row since
	// Forced overwrites the row whatever it is now: the first statement,
	// then, when it changed no row, the second (if any).
	Forced [2]string
	// Conflict is set when a later archived transaction changed the row
	// again: the statement is left out unless forced.
	Conflict *Conflict
}

// Conflict is a row that a later transaction changed again.
type Conflict struct {
	Tx    *Tx
	Table string
	Key   string
	Later string // who changed it and when, as far as the archive knows
}

func (c *Conflict) String() string {
	return fmt.Sprintf("%s %s: changed again after transaction %d by %s; left alone", c.Table, c.Key, c.Tx.Xid, c.Later)
}

// Plan is an undo: the statements in the order they run.
type Plan struct {
	Txs        []*Tx // newest first, the order they are undone in
	Statements []Statement
	Conflicts  []*Conflict
	Notes      []string
}

// Undo computes the statements that reverse what o selects.
func Undo(ctx context.Context, cat *catalog.Catalog, in *inspect.Inspector, o Options) (*Plan, error) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	txs, err := selectTxs(ctx, cat, o)
	if err != nil {
		return nil, err
	}
	var only []int64
	if o.Table != "" {
		nsp, rel, err := schema.ParseName(o.Table)
		if err != nil {
			return nil, inputErrorf("--table: %v", err)
		}
		if only, err = cat.FindTable(ctx, nsp, rel); err != nil {
			return nil, err
		}
		if len(only) == 0 {
			return nil, inputErrorf("table %s is not in the archive (lbt inspect tables lists the archived tables)", schema.QuoteIdent(nsp)+"."+schema.QuoteIdent(rel))
		}
	}
	// The tables to undo, in the order the transactions first changed them.
	var tableIDs []int64
	work := map[int64][]*Tx{}
	for _, tx := range txs {
		for _, tt := range tx.Tables {
			if only != nil && !slices.Contains(only, tt.TableID) {
				continue
			}
			if _, ok := work[tt.TableID]; !ok {
				tableIDs = append(tableIDs, tt.TableID)
			}
			work[tt.TableID] = append(work[tt.TableID], tx)
		}
	}
	if len(tableIDs) == 0 {
		return nil, inputErrorf("%s changed no archived table%s", describeSelection(txs), tableText(o.Table))
	}
	p := &Plan{}
	for i := len(txs) - 1; i >= 0; i-- {
		p.Txs = append(p.Txs, txs[i])
	}
	undone := map[uint64]bool{}
	for _, tx := range txs {
		undone[tx.CommitLSN] = true
	}
	perTx := map[*Tx][]Statement{}
	for _, id := range tableIDs {
		u, err := newTableUndo(ctx, cat, o.Logger, id, work[id])
		if err != nil {
			return nil, err
		}
		stmts, err := u.plan(ctx, in, undone)
		if err != nil {
			return nil, err
		}
		for _, s := range stmts {
			perTx[s.Tx] = append(perTx[s.Tx], s)
		}
		p.Notes = append(p.Notes, u.notes...)
	}
	for _, tx := range p.Txs {
		for _, s := range perTx[tx] {
			p.Statements = append(p.Statements, s)
			if s.Conflict != nil {
				p.Conflicts = append(p.Conflicts, s.Conflict)
			}
		}
	}
	return p, nil
}

func tableText(table string) string {
	if table == "" {
		return ""
	}
	return " named " + table
}

func describeSelection(txs []*Tx) string {
	if len(txs) == 1 {
		return fmt.Sprintf("transaction %d", txs[0].Xid)
	}
	return fmt.Sprintf("the %d transactions", len(txs))
}

// selectTxs returns the transactions o selects, oldest first.
func selectTxs(ctx context.Context, cat *catalog.Catalog, o Options) ([]*Tx, error) {
	var found []catalog.Tx
	switch {
	case o.Xid != 0:
		tx, ok, err := cat.TxByXid(ctx, o.Xid)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, inputErrorf("transaction %d is not in the archive: it changed no archived table, or it was purged (lbt inspect changes --table T lists the archived ones)", o.Xid)
		}
		found = append(found, tx)
	case o.LSN != 0:
		commit, ok, err := cat.TxContaining(ctx, o.LSN)
		if err != nil {
			return nil, err
		}
		var tx catalog.Tx
		if ok {
			if tx, ok, err = cat.TxAt(ctx, commit); err != nil {
				return nil, err
			}
		}
		if !ok {
			return nil, inputErrorf("no transaction in the archive committed at LSN %s (lbt inspect changes --table T lists the commit LSNs)", catalog.FormatLSN(o.LSN))
		}
		found = append(found, tx)
	case o.Role != "" || o.Application != "":
		lsns, err := actorTxs(ctx, cat, o)
		if err != nil {
			return nil, err
		}
		for _, lsn := range lsns {
			tx, ok, err := cat.TxAt(ctx, lsn)
			if err != nil {
				return nil, err
			}
			if ok {
				found = append(found, tx)
			}
		}
		if len(found) == 0 {
			return nil, inputErrorf("no archived transaction by %s%s (lbt inspect changes --table T --actor ROLE lists them; actors are recorded after lbt setup --capture-actors)", actorText(o), windowText(o))
		}
	default:
		return nil, inputErrorf("give a transaction (--xid or --lsn) or an actor (--actor or --application)")
	}
	out := make([]*Tx, 0, len(found))
	for _, tx := range found {
		t := &Tx{Tx: tx}
		actor, err := actorOf(ctx, cat, tx.CommitLSN)
		if err != nil {
			return nil, err
		}
		t.Actor = actor
		out = append(out, t)
	}
	return out, nil
}

func actorText(o Options) string {
	var parts []string
	if o.Role != "" {
		parts = append(parts, "role "+o.Role)
	}
	if o.Application != "" {
		parts = append(parts, "application "+o.Application)
	}
	return strings.Join(parts, " from ")
}

func windowText(o Options) string {
	switch {
	case !o.Since.IsZero() && !o.Until.IsZero():
		return fmt.Sprintf(" committed from %s until %s", formatTime(o.Since), formatTime(o.Until))
	case !o.Since.IsZero():
		return " committed from " + formatTime(o.Since)
	case !o.Until.IsZero():
		return " committed before " + formatTime(o.Until)
	}
	return ""
}

// actorTxs returns the commit LSNs of the transactions whose first
// 'lbt.actor' message names the actor, in the window, in commit order.
func actorTxs(ctx context.Context, cat *catalog.Catalog, o Options) ([]uint64, error) {
	msgs, err := cat.FirstPrefixMessages(ctx, inspect.ActorPrefix, o.Since, o.Until)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, m := range msgs {
		a := inspect.ParseActor(m.Content)
		if !a.Known || (o.Role != "" && a.Role != o.Role) || (o.Application != "" && a.Application != o.Application) {
			continue
		}
		out = append(out, m.CommitLSN)
	}
	return out, nil
}

// actorOf returns the actor of the transaction that committed at lsn.
func actorOf(ctx context.Context, cat *catalog.Catalog, lsn uint64) (inspect.Actor, error) {
	content, ok, err := cat.FirstMessage(ctx, lsn, inspect.ActorPrefix)
	if err != nil || !ok {
		return inspect.Actor{}, err
	}
	return inspect.ParseActor(content), nil
}

// formatTime writes a moment for messages, in UTC as inspect does.
func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z")
}
