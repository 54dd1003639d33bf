package source

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/schema"
)

// SlotWait says when a slow slot creation is first reported, and how often
// after that.
type SlotWait struct {
	First, Every time.Duration
}

// DefaultSlotWait reports a creation still waiting after 10 seconds, then
// every minute.
var DefaultSlotWait = SlotWait{First: 10 * time.Second, Every: time.Minute}

// CreateSlot creates a logical replication slot on repl. PostgreSQL creates
// a logical slot only once every transaction that was running when it
// started has ended, prepared transactions included, and says nothing while
// it waits: a forgotten PREPARE TRANSACTION or an idle-in-transaction
// session stops it for as long as they last. So while the creation waits,
// a second connection (made with side) finds the transaction it waits for,
// and each report names it and the fix in one warning. Zero durations in
// wait mean DefaultSlotWait's.
func CreateSlot(ctx context.Context, log hclog.Logger, repl *pgconn.PgConn, side *pgconn.Config, name string,
	opts pglogrepl.CreateReplicationSlotOptions, wait SlotWait) (pglogrepl.CreateReplicationSlotResult, error) {
	if wait.First <= 0 {
		wait.First = DefaultSlotWait.First
	}
	if wait.Every <= 0 {
		wait.Every = DefaultSlotWait.Every
	}
	started := time.Now()
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchSlotCreation(ctx, log, side, repl.PID(), name, started, wait, done)
	}()
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, name, "pgoutput", opts)
	close(done)
	<-watched
	if waited := time.Since(started); err == nil && waited >= wait.First {
		log.Info("replication slot created after waiting", "slot", name, "waited", waited.Round(100*time.Millisecond))
	}
	return res, err
}

func watchSlotCreation(ctx context.Context, log hclog.Logger, side *pgconn.Config, pid uint32, name string,
	started time.Time, wait SlotWait, done <-chan struct{}) {
	delay := wait.First
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = wait.Every
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		blocker, err := slotBlocker(qctx, side, pid)
		cancel()
		waited := time.Since(started).Round(100 * time.Millisecond)
		switch {
		case err != nil:
			log.Warn("creating a replication slot is slow, and what it waits for could not be found", "slot", name, "waited", waited, "error", err)
		case blocker == "":
			log.Warn("creating a replication slot is slow: the server has not finished decoding the WAL up to a consistent point yet", "slot", name, "waited", waited)
		default:
			log.Warn("creating a replication slot waits for a transaction to end: a logical slot is created only once every transaction running at its start has ended",
				"slot", name, "waited", waited, "waiting_for", blocker)
		}
	}
}

// slotBlocker describes the transaction the backend pid waits for, or ""
// when it waits for none.
func slotBlocker(ctx context.Context, side *pgconn.Config, pid uint32) (string, error) {
	conn, err := Connect(ctx, side)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var xid string
	err = conn.QueryRow(ctx, `SELECT transactionid::text FROM pg_locks
		WHERE pid = $1 AND locktype = 'transactionid' AND NOT granted LIMIT 1`, int32(pid)).Scan(&xid)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read pg_locks: %w", err)
	}
	var gid, owner, database string
	var prepared time.Time
	err = conn.QueryRow(ctx, `SELECT gid, owner::text, database::text, prepared FROM pg_prepared_xacts WHERE transaction::text = $1`, xid).
		Scan(&gid, &owner, &database, &prepared)
	if err == nil {
		return fmt.Sprintf("transaction %s, prepared as %q by %s in database %s at %s: end it with COMMIT PREPARED or ROLLBACK PREPARED %s",
			xid, gid, owner, database, prepared.Format(time.RFC3339), schema.QuoteLiteral(gid)), nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("read pg_prepared_xacts: %w", err)
	}
	var other int32
	var user, app, state string
	var since *time.Time
	err = conn.QueryRow(ctx, `SELECT pid, coalesce(usename::text, ''), coalesce(application_name, ''), coalesce(state, ''), xact_start
		FROM pg_stat_activity WHERE backend_xid::text = $1`, xid).Scan(&other, &user, &app, &state, &since)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Sprintf("transaction %s", xid), nil
	}
	if err != nil {
		return "", fmt.Errorf("read pg_stat_activity: %w", err)
	}
	open := ""
	if since != nil {
		open = ", open since " + since.Format(time.RFC3339)
	}
	return fmt.Sprintf("transaction %s of backend pid %d (user %s, application %q, %s%s): end it, or pg_terminate_backend(%d)",
		xid, other, user, app, state, open, other), nil
}
