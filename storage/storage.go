// Package storage keeps the archive's immutable files (sealed segments,
// basebackup files and their sidecars, catalog snapshots) behind one small
// interface, so that the archive can live in a local directory or in an
// object store, and so that the order of its writes can be tested against a
// simulated crash. The active segment, the live catalog, LOCK and tmp/ are
// local files and stay outside it.
//
// Names are slash-separated paths relative to the archive's root, as
// docs/FORMAT.md lays them out ("segments/00000001.lbs",
// "base/16384/00000000016B3748.copy.lz4"). A name is written once: lbt never
// changes an object in place, it writes a new one and deletes the old.
package storage

import (
	"context"
	"io"
	"time"
)

// Info describes one stored object.
type Info struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Store is where the archive's immutable files are kept. Every method may
// block on the network; each takes a context that cancels it. A missing
// object is reported as an error for which errors.Is(err, fs.ErrNotExist)
// holds.
type Store interface {
	// Put stores all of r under name. size is r's length, or -1 when it is
	// not known in advance. The object is durable when Put returns nil, and
	// a reader sees either all of it or nothing: never a part.
	Put(ctx context.Context, name string, r io.Reader, size int64) error

	// ReadRange reads length bytes of name from offset off; a negative
	// length reads to the end.
	ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)

	// Stat describes name.
	Stat(ctx context.Context, name string) (Info, error)

	// List describes every object whose name begins with prefix, sorted by
	// name.
	List(ctx context.Context, prefix string) ([]Info, error)

	// Delete removes name, durably when it returns nil. Deleting an object
	// that does not exist is not an error, so that a purge interrupted
	// half-way can run again.
	Delete(ctx context.Context, name string) error
}
