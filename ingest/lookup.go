package ingest

import (
	"context"
	"errors"
	"time"

	"lbt/schema"
	"lbt/source"
)

// sourceLookup is what the archiver asks the source beside the stream.
// source.Lookup answers on a connection; a unit test can answer with a
// fake and drive the archiver with synthetic pgoutput alone.
type sourceLookup interface {
	// DescribeRelation completes a table as a Relation message gives it
	// (type names, primary key, attnum, NOT NULL, DEFAULT, fast default)
	// and reads its storage: at every Relation message, in one round trip.
	DescribeRelation(ctx context.Context, oid uint32, t *schema.Table) (source.Storage, error)
	// AwaitEnded waits until a transaction whose commit the stream showed
	// has ended on the source, so that a lookup for it sees its effects.
	AwaitEnded(ctx context.Context, xid uint32) error
	// DescribeCurrent reads a table as the stream would describe it now,
	// when the stream has not; ok is false when it no longer exists.
	DescribeCurrent(ctx context.Context, oid uint32, prev schema.Table) (t schema.Table, st source.Storage, ok bool, err error)
	// DescribeNew describes a table the stream has not shown yet; ok is
	// false when it is gone, not carried by the stream, or rewritten.
	DescribeNew(ctx context.Context, oid uint32) (t schema.Table, ok bool, err error)
	// TableCreation reads the transaction that created a table that was
	// never rewritten; ok is false otherwise.
	TableCreation(ctx context.Context, oid uint32) (c source.Creation, ok bool, err error)
	SnapshotXmax(ctx context.Context) (uint64, error)
	Publication(ctx context.Context, name string) (source.Publication, error)
	Position(ctx context.Context) (source.WALPoint, error)
	Relations(ctx context.Context, oids []uint32) (map[uint32]source.Relation, error)
	ResolveTable(ctx context.Context, name string) (oid uint32, ok bool, err error)
	ServerVersion(ctx context.Context) (int, error)
	LookPartitions(ctx context.Context, serverVersion int, publication string) (source.PartitionLook, error)
}

var _ sourceLookup = (*source.Lookup)(nil)

// awaitEnded waits, once per transaction, until the transaction being
// received has ended on the source, before the first lookup made for it:
// what the source says then includes the transaction's own changes
// (source.Lookup.AwaitEnded).
func (a *archiver) awaitEnded() error {
	if !a.tx.active || a.tx.ended {
		return nil
	}
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	if err := a.lookup.AwaitEnded(ctx, a.tx.xid); err != nil {
		if errors.Is(err, source.ErrSyncStandby) {
			return fatalError{err}
		}
		return err
	}
	a.tx.ended = true
	return nil
}
