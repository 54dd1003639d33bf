package source

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// Lookup answers what the archiver asks the source while it follows the
// stream, on one normal connection beside the replication one: table
// descriptions at Relation messages, creations, drops, partition trees.
// It is not safe for concurrent use.
type Lookup struct {
	conn *pgx.Conn
	slot string // the replication slot the stream comes from
}

// NewLookup asks on conn, which stays the caller's to close, for the
// stream of replication slot slot.
func NewLookup(conn *pgx.Conn, slot string) *Lookup {
	return &Lookup{conn: conn, slot: slot}
}

// ErrSyncStandby says that the source waits for lbt's own replication
// connection to confirm a commit that lbt waits to see end: a deadlock
// that only the operator can end.
var ErrSyncStandby = errors.New("the source waits for lbt to confirm its commits")

// AwaitEnded waits until transaction xid, whose commit the stream has
// shown, has ended on the source. The walsender sends a commit once its
// WAL is flushed, a moment before the committing backend leaves the set of
// running transactions; a lookup in that moment reads the catalogs as they
// were before the transaction (a captured ALTER TABLE would look like no
// change at all). A backend holds the lock on its own transaction id until
// after it has left that set (what the server's XactLockTableWait waits
// for), so once the lock is gone every later snapshot sees the commit.
//
// A backend that waits for a synchronous standby holds the lock until the
// standby confirms. When lbt's own walsender is that standby, lbt would
// wait for ever for what waits for lbt: AwaitEnded then fails with
// ErrSyncStandby, naming the setting to change.
func (l *Lookup) AwaitEnded(ctx context.Context, xid uint32) error {
	id := strconv.FormatUint(uint64(xid), 10)
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		var running, waitsForUs bool
		var app string
		err := l.conn.QueryRow(ctx, `SELECT count(*) > 0,
				coalesce(bool_or(a.wait_event = 'SyncRep' AND r.sync_state IN ('sync', 'quorum')), false),
				coalesce(max(r.application_name), '')
			FROM pg_catalog.pg_locks l
			LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
			LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $2
			LEFT JOIN pg_catalog.pg_stat_replication r ON r.pid = s.active_pid
			WHERE l.locktype = 'transactionid' AND l.transactionid::text = $1 AND l.mode = 'ExclusiveLock' AND l.granted`,
			id, l.slot).Scan(&running, &waitsForUs, &app)
		if err != nil {
			return fmt.Errorf("wait for transaction %s to end on the source: %w", id, err)
		}
		if !running {
			return nil
		}
		if waitsForUs {
			return fmt.Errorf("%w: transaction %s waits for a synchronous standby, and lbt's replication connection (slot %s, application_name %q) is one: leave it out of synchronous_standby_names on the source",
				ErrSyncStandby, id, l.slot, app)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for transaction %s to end on the source: %w", id, ctx.Err())
		case <-time.After(pause):
		}
	}
}

// Publication reads the named publication.
func (l *Lookup) Publication(ctx context.Context, name string) (Publication, error) {
	return LookupPublication(ctx, l.conn, name)
}

// Relations reads the relations with the given OIDs that exist now.
func (l *Lookup) Relations(ctx context.Context, oids []uint32) (map[uint32]Relation, error) {
	return Relations(ctx, l.conn, oids)
}

// ServerVersion reads server_version_num.
func (l *Lookup) ServerVersion(ctx context.Context) (int, error) {
	var v int
	if err := l.conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&v); err != nil {
		return 0, fmt.Errorf("server version: %w", err)
	}
	return v, nil
}

// LookPartitions reads every partition tree at one LSN (LookPartitions).
func (l *Lookup) LookPartitions(ctx context.Context, serverVersion int, publication string) (PartitionLook, error) {
	return LookPartitions(ctx, l.conn, serverVersion, publication)
}

// WALPoint is a WAL position of the source and the server's time there.
type WALPoint struct {
	LSN uint64
	At  time.Time
}

// Position reads the source's current WAL position and clock.
func (l *Lookup) Position(ctx context.Context) (WALPoint, error) {
	var p WALPoint
	var lsn pglogrepl.LSN
	if err := l.conn.QueryRow(ctx, `SELECT pg_catalog.pg_current_wal_lsn(), pg_catalog.clock_timestamp()`).Scan(&lsn, &p.At); err != nil {
		return p, fmt.Errorf("read the source's WAL position: %w", err)
	}
	p.LSN = uint64(lsn)
	return p, nil
}

// SnapshotXmax reads the xmax of a snapshot taken now: every transaction
// from it on begins after this call.
func (l *Lookup) SnapshotXmax(ctx context.Context) (uint64, error) {
	var x int64
	if err := l.conn.QueryRow(ctx, `SELECT txid_snapshot_xmax(txid_current_snapshot())`).Scan(&x); err != nil {
		return 0, fmt.Errorf("read the source's transaction counter: %w", err)
	}
	return uint64(x), nil
}

// Creation is the transaction that created a table, as far as the source
// catalog proves it.
type Creation struct {
	// Xmin is the xid that wrote the pg_attribute row of the table's ctid:
	// written with the table and by no later ALTER, it is the creating
	// transaction's (or subtransaction's).
	Xmin uint32
	// SnapshotXmax is the xmax of a snapshot taken with the read, to
	// widen Xmin to 64 bits.
	SnapshotXmax uint64
}

// TableCreation reads the transaction that created the table oid; ok is
// false when the table does not exist or its storage is not the one it
// was created with (a rewrite or SET LOGGED since), which proves nothing.
func (l *Lookup) TableCreation(ctx context.Context, oid uint32) (c Creation, ok bool, err error) {
	var xmin, xmax int64
	err = l.conn.QueryRow(ctx, `SELECT a.xmin::text::bigint, txid_snapshot_xmax(txid_current_snapshot())
		FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		WHERE a.attrelid = $1 AND a.attnum = -1 AND `+neverRewritten, oid).Scan(&xmin, &xmax)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("look up the creation of relation %d: %w", oid, err)
	}
	return Creation{Xmin: uint32(xmin), SnapshotXmax: uint64(xmax)}, true, nil
}

// ResolveTable finds the OID a table name (as SQL writes it) resolves to
// now; ok is false when it resolves to nothing.
func (l *Lookup) ResolveTable(ctx context.Context, name string) (oid uint32, ok bool, err error) {
	var id *uint32
	if err := l.conn.QueryRow(ctx, `SELECT to_regclass($1)::oid`, name).Scan(&id); err != nil {
		return 0, false, fmt.Errorf("resolve %s: %w", name, err)
	}
	if id == nil {
		return 0, false, nil
	}
	return *id, true, nil
}
