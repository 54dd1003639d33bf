package restore

import (
	"context"
	"errors"
	"fmt"

	"lbt/catalog"
)

// The state just before a transaction is the state after every transaction
// that committed before it: a target LSN one below its commit LSN. No
// archived transaction commits between the one before and that LSN, so the
// restore equals the source right before the transaction committed.

// BeforeXid returns the target LSN of the state just before transaction xid
// (the newest archived one with that xid, should xids have wrapped).
func BeforeXid(ctx context.Context, cat *catalog.Catalog, xid uint32) (uint64, error) {
	tx, ok, err := cat.TxByXid(ctx, xid)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: transaction %d is not in the archive: it changed no archived table, or it was purged (lbt inspect changes --table T lists the archived ones)", ErrNotRestorable, xid)
	}
	return tx.CommitLSN - 1, nil
}

// BeforeLSN returns the target LSN of the state just before the transaction
// that committed at lsn (its commit LSN, or any position inside its commit
// record, as inspect tx --lsn takes it); for a position between
// transactions, the state after those that committed before it.
func BeforeLSN(ctx context.Context, cat *catalog.Catalog, lsn uint64) (uint64, error) {
	if lsn == 0 {
		return 0, errors.New("no LSN given")
	}
	commit, ok, err := cat.TxContaining(ctx, lsn)
	if err != nil {
		return 0, err
	}
	if ok && commit > 0 {
		return commit - 1, nil
	}
	return lsn - 1, nil
}
