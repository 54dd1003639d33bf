package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SlotState is what the source says about lbt's replication slot.
type SlotState struct {
	Exists      bool
	Active      bool   // a walsender streams from it (lbt backup is running)
	Confirmed   uint64 // confirmed_flush_lsn: what lbt has made durable
	Current     uint64 // pg_current_wal_lsn()
	RetainedWAL int64  // bytes of WAL the slot keeps on the source
}

// Slot reads the state of the named slot on the source.
func Slot(ctx context.Context, cfg *pgconn.Config, slot string) (SlotState, error) {
	var s SlotState
	conn, err := pgx.ConnectConfig(ctx, connConfig(cfg))
	if err != nil {
		return s, fmt.Errorf("connect to source %s: %w", describeConn(cfg), err)
	}
	defer conn.Close(context.Background())
	var confirmed, current *int64
	err = conn.QueryRow(ctx, `SELECT active, pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint,
			pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,
			coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&s.Active, &confirmed, &current, &s.RetainedWAL)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read slot %q: %w", slot, err)
	}
	s.Exists = true
	if confirmed != nil {
		s.Confirmed = uint64(*confirmed)
	}
	if current != nil {
		s.Current = uint64(*current)
	}
	return s, nil
}
