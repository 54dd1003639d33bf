package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Local keeps the archive's files in a directory of an FS: the archive
// directory itself, as docs/FORMAT.md lays it out. It is the one place
// that knows their fsync and rename rules:
//
//   - Put writes "<name>.partial", fsyncs it, renames it to name and
//     fsyncs the directory: a crash leaves the whole object or none (and
//     perhaps a .partial, never read).
//   - Delete removes and fsyncs the directory.
//   - A new directory's entry is fsynced in its parent (FS.MkdirAll).
type Local struct {
	fsys FS
	root string
}

// NewLocal returns the store of the archive in root on fsys.
func NewLocal(fsys FS, root string) *Local {
	return &Local{fsys: fsys, root: root}
}

// FS is the file system the store writes to.
func (l *Local) FS() FS { return l.fsys }

// Path is the file of name on the store's FS.
func (l *Local) Path(name string) string {
	return filepath.Join(l.root, filepath.FromSlash(name))
}

// PartialSuffix ends the name of an object being written.
const PartialSuffix = ".partial"

func checkName(name string) error {
	if name == "" || path.IsAbs(name) || path.Clean(name) != name || strings.HasPrefix(name, "../") || name == ".." {
		return fmt.Errorf("storage: bad object name %q", name)
	}
	return nil
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dst := l.Path(name)
	dir := filepath.Dir(dst)
	if err := l.fsys.MkdirAll(dir); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	tmp := dst + PartialSuffix
	if err := l.fsys.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("put %s: %w", name, err)
	}
	f, err := l.fsys.Create(tmp)
	if err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	fail := func(err error) error {
		f.Close()
		l.fsys.Remove(tmp) // ours, incomplete
		return fmt.Errorf("put %s: %w", name, err)
	}
	n, err := io.Copy(f, r)
	if err != nil {
		return fail(err)
	}
	if size >= 0 && n != size {
		return fail(fmt.Errorf("%d bytes, expected %d", n, size))
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := l.fsys.Rename(tmp, dst); err != nil {
		l.fsys.Remove(tmp)
		return fmt.Errorf("put %s: %w", name, err)
	}
	if err := l.fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	return nil
}

// PutFile implements FilePutter: on the host's file system it renames the
// file at path (complete and fsynced by the caller) into place and fsyncs
// the directory; from another file system, or to an FS other than OS, it
// copies through Put and leaves path to the caller. An open handle on path
// (a flock held on it, say) stays with the stored file when it was renamed.
func (l *Local) PutFile(ctx context.Context, name, src string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if _, ok := l.fsys.(OS); ok {
		dst := l.Path(name)
		dir := filepath.Dir(dst)
		if err := l.fsys.MkdirAll(dir); err != nil {
			return fmt.Errorf("put %s: %w", name, err)
		}
		err := l.fsys.Rename(src, dst)
		if err == nil {
			if err := l.fsys.SyncDir(dir); err != nil {
				return fmt.Errorf("put %s: %w", name, err)
			}
			return nil
		}
		if !errors.Is(err, syscall.EXDEV) {
			return fmt.Errorf("put %s: %w", name, err)
		}
	}
	f, err := OS{}.Open(src)
	if err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	defer f.Close()
	return l.Put(ctx, name, f, -1)
}

// ReadRange implements Store.
func (l *Local) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := l.fsys.Open(l.Path(name))
	if err != nil {
		return nil, err
	}
	if length < 0 {
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		length = max(st.Size()-off, 0)
	}
	return rangeReader{Reader: io.NewSectionReader(f, off, length), f: f}, nil
}

type rangeReader struct {
	io.Reader
	f File
}

func (r rangeReader) Close() error { return r.f.Close() }

// Stat implements Store.
func (l *Local) Stat(ctx context.Context, name string) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, err
	}
	st, err := l.fsys.Stat(l.Path(name))
	if err != nil {
		return Info{}, err
	}
	if st.IsDir() {
		return Info{}, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return Info{Name: name, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// List implements Store. Objects being written (PartialSuffix) are not
// listed.
func (l *Local) List(ctx context.Context, prefix string) ([]Info, error) {
	// Walk only the directories the prefix can be in.
	start := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = prefix[:i]
	}
	var out []Info
	var walk func(rel string) error
	walk = func(rel string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := l.fsys.ReadDir(l.Path(rel))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, e := range ents {
			name := e.Name()
			if rel != "" {
				name = rel + "/" + name
			}
			if e.IsDir() {
				if strings.HasPrefix(name+"/", prefix) || strings.HasPrefix(prefix, name+"/") {
					if err := walk(name); err != nil {
						return err
					}
				}
				continue
			}
			if !strings.HasPrefix(name, prefix) || strings.HasSuffix(name, PartialSuffix) {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while listing
			}
			if err != nil {
				return fmt.Errorf("list %s: %w", prefix, err)
			}
			out = append(out, Info{Name: name, Size: info.Size(), ModTime: info.ModTime()})
		}
		return nil
	}
	if err := walk(start); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete implements Store.
func (l *Local) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	p := l.Path(name)
	if err := l.fsys.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if err := l.fsys.SyncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}
