package storage

import (
	"context"
	"errors"
	"io"
	"io/fs"
)

// Layered is the archive of a backup host that uploads to an object store
// and removes its local copy of a file once the store holds it (and a
// catalog snapshot that points at it): it reads a file from the local
// directory when it is there and from the remote store when it is not.
// What lbt writes goes to the local directory, and what it deletes is
// deleted there: the uploader copies files to the remote store and removes
// from it what no snapshot kept there points at.
type Layered struct {
	local  *Local
	remote Store
}

// NewLayered returns the store that reads local, then remote.
func NewLayered(local *Local, remote Store) *Layered {
	return &Layered{local: local, remote: remote}
}

// Local is the local directory.
func (l *Layered) Local() *Local { return l.local }

// Remote is the store read when a file is not local.
func (l *Layered) Remote() Store { return l.remote }

func (l *Layered) String() string { return l.local.root + " then the object store" }

// Put implements Store: it writes the local directory.
func (l *Layered) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	return l.local.Put(ctx, name, r, size)
}

// PutFile implements FilePutter: it moves the file into the local
// directory.
func (l *Layered) PutFile(ctx context.Context, name, path string) error {
	return l.local.PutFile(ctx, name, path)
}

// ReadRange implements Store.
func (l *Layered) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	rc, err := l.local.ReadRange(ctx, name, off, length)
	if errors.Is(err, fs.ErrNotExist) {
		return l.remote.ReadRange(ctx, name, off, length)
	}
	return rc, err
}

// Stat implements Store.
func (l *Layered) Stat(ctx context.Context, name string) (Info, error) {
	i, err := l.local.Stat(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return l.remote.Stat(ctx, name)
	}
	return i, err
}

// List implements Store: it lists the local directory only, which is
// where a crash leaves what the catalog does not know. The remote store's
// objects are the uploader's to list.
func (l *Layered) List(ctx context.Context, prefix string) ([]Info, error) {
	return l.local.List(ctx, prefix)
}

// Delete implements Store: it removes the local copy.
func (l *Layered) Delete(ctx context.Context, name string) error {
	return l.local.Delete(ctx, name)
}

// Remove implements Remover: it removes the local copy and returns its
// size, without asking the object store. The store loses the file at the
// next upload, which no longer points at it, and need not answer for a
// purge to run.
func (l *Layered) Remove(ctx context.Context, name string) (int64, error) {
	return Remove(ctx, l.local, name)
}

// openReaderAt opens the local file, or else reads the remote store by
// ranges. A local file removed after it was opened stays readable
// through the open handle.
func (l *Layered) openReaderAt(ctx context.Context, name string) (ReaderAtCloser, error) {
	f, err := OpenReaderAt(ctx, l.local, name)
	if errors.Is(err, fs.ErrNotExist) {
		return OpenReaderAt(ctx, l.remote, name)
	}
	return f, err
}
