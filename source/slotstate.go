package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SlotState is what the source says about lbt's replication slot and the
// WAL it keeps.
type SlotState struct {
	Exists      bool
	Active      bool   // a walsender streams from it (lbt backup is running)
	Confirmed   uint64 // confirmed_flush_lsn: what lbt has made durable
	Current     uint64 // pg_current_wal_lsn()
	RetainedWAL int64  // bytes of WAL the slot keeps on the source

	// From PostgreSQL 13 on (empty or -1 before): the slot's wal_status
	// (reserved, extended, unreserved, lost), safe_wal_size (bytes that can
	// still be written before the slot is in danger of losing WAL; -1 for
	// no limit) and max_slot_wal_keep_size in bytes (-1: no limit).
	WALStatus          string
	SafeWALSize        int64
	MaxSlotWALKeepSize int64
}

// ReadSlotState reads the state of the named slot, on a connection of its own
// made with pc: what lbt status judges and the slot metrics show, whatever
// the stream is doing.
func ReadSlotState(ctx context.Context, pc *pgconn.Config, slot string) (SlotState, error) {
	var s SlotState
	conn, err := Connect(ctx, pc)
	if err != nil {
		return s, err
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
	s.SafeWALSize, s.MaxSlotWALKeepSize = -1, -1
	var version int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return s, fmt.Errorf("read server version: %w", err)
	}
	if version >= 130000 {
		var safe *int64
		var keepMB int64
		err := conn.QueryRow(ctx, `SELECT coalesce(wal_status, ''), safe_wal_size,
				(SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size')
			FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&s.WALStatus, &safe, &keepMB)
		if err != nil {
			return s, fmt.Errorf("read slot %q: %w", slot, err)
		}
		if safe != nil {
			s.SafeWALSize = *safe
		}
		if keepMB >= 0 {
			s.MaxSlotWALKeepSize = keepMB << 20
		}
	}
	if confirmed != nil {
		s.Confirmed = uint64(*confirmed)
	}
	if current != nil {
		s.Current = uint64(*current)
	}
	return s, nil
}

// Slot is what the source says a replication slot is, for the checks
// before lbt streams from it.
type Slot struct {
	Exists   bool
	Type     string // physical or logical; "" when unknown
	Plugin   string // the output plugin of a logical slot
	Database string // the database of a logical slot
	Active   bool   // a walsender streams from it
	// ConfirmedFlush is what the consumer last confirmed, 0 when none.
	ConfirmedFlush pglogrepl.LSN
}

// LookupSlot reads the named slot.
func LookupSlot(ctx context.Context, q Querier, name string) (Slot, error) {
	var s Slot
	var plugin, slotType, db, confirmed *string
	err := q.QueryRow(ctx, `SELECT plugin, slot_type, database, active, confirmed_flush_lsn::text FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, name).
		Scan(&plugin, &slotType, &db, &s.Active, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("look up replication slot %q: %w", name, err)
	}
	s.Exists = true
	for dst, v := range map[*string]*string{&s.Type: slotType, &s.Plugin: plugin, &s.Database: db} {
		if v != nil {
			*dst = *v
		}
	}
	if confirmed != nil {
		if s.ConfirmedFlush, err = pglogrepl.ParseLSN(*confirmed); err != nil {
			return s, fmt.Errorf("replication slot %q: %w", name, err)
		}
	}
	return s, nil
}
