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
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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

// FilePutter is implemented by a Store that can take a finished local file
// without the caller streaming it through Put: the local directory renames
// it into place when it is on the archive's file system, an object store
// uploads it from disk (in parts, retried part by part). A 100 GB
// basebackup is thus never copied twice. Use PutFile, which falls back to
// Put for a Store without it.
type FilePutter interface {
	// PutFile stores the local file at path, complete and fsynced by the
	// caller, under name, with Put's guarantees. On success path may be
	// gone (moved into the store): the caller must not use it again, and
	// an open handle on it may now be the stored object's.
	PutFile(ctx context.Context, name, path string) error
}

// PutFile stores the local file at path under name: through s's PutFile
// when it has one, else by reading the file into Put. path is left in place
// by the fallback; the caller removes it.
func PutFile(ctx context.Context, s Store, name, path string) error {
	if p, ok := s.(FilePutter); ok {
		return p.PutFile(ctx, name, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	return s.Put(ctx, name, f, st.Size())
}

// Remover is implemented by a Store whose Delete removes something other
// than what its Stat describes: a Layered store deletes its local copy
// alone, while its Stat answers from the object store when that copy is
// gone. Use Remove, which falls back to Stat and Delete for a Store
// without it.
type Remover interface {
	// Remove deletes name as Delete does and returns the size of what it
	// deleted: 0 when name was not there.
	Remove(ctx context.Context, name string) (int64, error)
}

// Remove deletes name from s, durably, and returns the bytes that freed; a
// missing name is no error, as for Delete.
func Remove(ctx context.Context, s Store, name string) (int64, error) {
	if r, ok := s.(Remover); ok {
		return r.Remove(ctx, name)
	}
	st, err := s.Stat(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if err := s.Delete(ctx, name); err != nil {
		return 0, err
	}
	return st.Size, nil
}

// ReaderAtCloser reads an object at offsets.
type ReaderAtCloser interface {
	io.ReaderAt
	io.Closer
}

// OpenReaderAt returns a reader of name at any offset: the file itself in a
// Local store (and in a Layered one while the local copy is there), ranged
// reads (one ReadRange per ReadAt) elsewhere. It checks that name exists.
func OpenReaderAt(ctx context.Context, s Store, name string) (ReaderAtCloser, error) {
	switch l := s.(type) {
	case *Local:
		if err := checkName(name); err != nil {
			return nil, err
		}
		return l.fsys.Open(l.Path(name))
	case *Layered:
		return l.openReaderAt(ctx, name)
	}
	if _, err := s.Stat(ctx, name); err != nil {
		return nil, err
	}
	return &rangeReaderAt{ctx: ctx, s: s, name: name}, nil
}

type rangeReaderAt struct {
	ctx  context.Context
	s    Store
	name string
}

func (r *rangeReaderAt) ReadAt(p []byte, off int64) (int, error) {
	rc, err := r.s.ReadRange(r.ctx, r.name, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := io.ReadFull(rc, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

func (r *rangeReaderAt) Close() error { return nil }
