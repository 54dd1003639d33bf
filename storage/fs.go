package storage

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// The modes of everything lbt creates in an archive, whatever the umask:
// the catalog holds row keys, who changed what and DDL text, and the files
// hold the rows themselves. Only the user lbt runs as may read them.
const (
	DirMode  os.FileMode = 0o700
	FileMode os.FileMode = 0o600
)

// FS is the little of a file system that the archive's files need. Its
// durability rules are POSIX's, which MemFS enforces at a simulated crash:
// a file's bytes are durable once File.Sync returns, and the creation,
// rename or removal of a directory entry once SyncDir of that directory
// returns. Names are paths of the host (OS) or of the simulation (MemFS).
type FS interface {
	// Create creates name, which must not exist, for reading and writing.
	Create(name string) (File, error)
	// Open opens name for reading.
	Open(name string) (File, error)
	// OpenRW opens the existing file name for reading and writing.
	OpenRW(name string) (File, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	// MkdirAll creates dir and its parents; new directories' entries are
	// durable when it returns.
	MkdirAll(dir string) error
	// SyncDir makes the entries created, renamed or removed in dir durable.
	SyncDir(dir string) error
	// ReadDir lists dir sorted by name.
	ReadDir(dir string) ([]fs.DirEntry, error)
	Stat(name string) (fs.FileInfo, error)
}

// File is an open file of an FS.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	// Sync makes the file's bytes durable.
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
}

// OS is the host's file system.
type OS struct{}

// Create implements FS.
func (OS) Create(name string) (File, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
}

// Open implements FS.
func (OS) Open(name string) (File, error) { return os.Open(name) }

// OpenRW implements FS.
func (OS) OpenRW(name string) (File, error) { return os.OpenFile(name, os.O_RDWR, 0) }

// Rename implements FS.
func (OS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// Remove implements FS.
func (OS) Remove(name string) error { return os.Remove(name) }

// MkdirAll implements FS. The parent of a directory it creates is fsynced,
// so that the new entry survives a crash.
func (o OS) MkdirAll(dir string) error {
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := o.MkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, DirMode); err != nil && !os.IsExist(err) {
		return err
	}
	return o.SyncDir(parent)
}

// SyncDir implements FS.
func (OS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// ReadDir implements FS.
func (OS) ReadDir(dir string) ([]fs.DirEntry, error) { return os.ReadDir(dir) }

// Stat implements FS.
func (OS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }
