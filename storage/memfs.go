package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// ErrCrashed is what every operation of a MemFS returns once it has
// "crashed" (FailAfter): the process is considered dead from then on.
var ErrCrashed = errors.New("simulated crash: file system gone")

// MemFS is an in-memory FS that can simulate a crash of the machine, in the
// manner of pebble's vfs.NewCrashableMem: Crash keeps of each file only the
// bytes of its last Sync, and of each directory only the entries of its
// last SyncDir. A write-ordering bug that kill -9 cannot show (the page
// cache survives a killed process) fails a test run on it. Directories
// themselves are durable once MkdirAll returns, as OS makes them.
//
// FailAfter sets the crash point: after n more operations that change
// something (a create, write, truncate, sync, rename or removal), every
// operation, reads included, fails with ErrCrashed, as if the machine had
// stopped there; Crash then drops what was not durable and lets it work
// again, like the restarted machine.
type MemFS struct {
	mu        sync.Mutex
	dirs      map[string]*memDir
	ops       int64 // operations that changed something, ever
	failAt    int64 // ops at which it fails; 0 never
	failed    bool
	down      chan struct{} // closed when it fails
	crashedAt string        // the operation that failed first
	syncCount int64
}

type memDir struct {
	entries map[string]*memNode // what the file system shows now
	durable map[string]*memNode // what survives a crash
}

type memNode struct {
	data    []byte
	synced  []byte
	modTime time.Time
}

// NewCrashableMem returns an empty MemFS with a root directory "/".
func NewCrashableMem() *MemFS {
	m := &MemFS{dirs: map[string]*memDir{}, down: make(chan struct{})}
	m.dirs["/"] = newMemDir()
	return m
}

func newMemDir() *memDir {
	return &memDir{entries: map[string]*memNode{}, durable: map[string]*memNode{}}
}

// FailAfter makes every operation fail with ErrCrashed once n more
// operations that change something have run; n <= 0 fails from now on.
func (m *MemFS) FailAfter(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failAt = m.ops + max(n, 0)
	m.crashedAt = ""
	if n <= 0 {
		m.fail()
	}
}

// Down is closed once the crash point is reached, so that a test can stop
// the process that crashed at once.
func (m *MemFS) Down() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down
}

// fail marks the file system gone. The caller holds mu.
func (m *MemFS) fail() {
	if !m.failed {
		m.failed = true
		close(m.down)
	}
}

// Ops is the number of operations that changed something so far: the crash
// points a test can choose from.
func (m *MemFS) Ops() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ops
}

// CrashedAt names the operation at which the last crash point was hit
// ("sync /archive/segments/00000003.lbs"), or "" when it was not.
func (m *MemFS) CrashedAt() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.crashedAt
}

// Syncs is the number of File.Sync and SyncDir calls that succeeded.
func (m *MemFS) Syncs() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncCount
}

// Crash simulates the machine's restart: every byte not fsynced and every
// directory entry not made durable by SyncDir is gone, and operations work
// again. Files still open from before must not be used.
func (m *MemFS) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.dirs {
		d.entries = make(map[string]*memNode, len(d.durable))
		for name, n := range d.durable {
			n.data = slices.Clone(n.synced)
			d.entries[name] = n
		}
	}
	m.failAt = 0
	if m.failed {
		m.failed = false
		m.down = make(chan struct{})
	}
}

// change counts one operation that changes something and reports whether
// it may run. The caller holds mu.
func (m *MemFS) change(op, name string) error {
	if err := m.alive(); err != nil {
		return err
	}
	if m.failAt > 0 && m.ops >= m.failAt {
		m.fail()
		m.crashedAt = op + " " + name
		return ErrCrashed
	}
	m.ops++
	return nil
}

func (m *MemFS) alive() error {
	if m.failed {
		return ErrCrashed
	}
	return nil
}

func clean(name string) string { return filepath.Clean("/" + name) }

// lookup returns the directory of name and name's base. The caller holds mu.
func (m *MemFS) lookup(op, name string) (*memDir, string, error) {
	name = clean(name)
	d, ok := m.dirs[filepath.Dir(name)]
	if !ok {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return d, filepath.Base(name), nil
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.lookup("create", name)
	if err != nil {
		return nil, err
	}
	if err := m.change("create", name); err != nil {
		return nil, err
	}
	if _, ok := d.entries[base]; ok || m.dirs[clean(name)] != nil {
		return nil, &fs.PathError{Op: "create", Path: name, Err: fs.ErrExist}
	}
	n := &memNode{modTime: time.Now()}
	d.entries[base] = n
	return &memFile{fs: m, node: n, name: base, path: clean(name), write: true}, nil
}

func (m *MemFS) open(op, name string, write bool) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.alive(); err != nil {
		return nil, err
	}
	d, base, err := m.lookup(op, name)
	if err != nil {
		return nil, err
	}
	n, ok := d.entries[base]
	if !ok {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{fs: m, node: n, name: base, path: clean(name), write: write}, nil
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) { return m.open("open", name, false) }

// OpenRW implements FS.
func (m *MemFS) OpenRW(name string) (File, error) { return m.open("open", name, true) }

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	od, ob, err := m.lookup("rename", oldname)
	if err != nil {
		return err
	}
	nd, nb, err := m.lookup("rename", newname)
	if err != nil {
		return err
	}
	if err := m.change("rename", oldname); err != nil {
		return err
	}
	n, ok := od.entries[ob]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	delete(od.entries, ob)
	nd.entries[nb] = n
	return nil
}

// Remove implements FS. Only files are removed.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.lookup("remove", name)
	if err != nil {
		return err
	}
	if err := m.change("remove", name); err != nil {
		return err
	}
	if _, ok := d.entries[base]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(d.entries, base)
	return nil
}

// MkdirAll implements FS.
func (m *MemFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = clean(dir)
	if _, ok := m.dirs[dir]; ok {
		return m.alive()
	}
	if err := m.change("mkdir", dir); err != nil {
		return err
	}
	for p := dir; ; p = filepath.Dir(p) {
		if _, ok := m.dirs[p]; ok {
			break
		}
		if d, ok := m.dirs[filepath.Dir(p)]; ok {
			if _, isFile := d.entries[filepath.Base(p)]; isFile {
				return &fs.PathError{Op: "mkdir", Path: p, Err: fs.ErrExist}
			}
		}
		m.dirs[p] = newMemDir()
	}
	return nil
}

// SyncDir implements FS.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.dirs[clean(dir)]
	if !ok {
		return &fs.PathError{Op: "fsync", Path: dir, Err: fs.ErrNotExist}
	}
	if err := m.change("fsync", dir); err != nil {
		return err
	}
	d.durable = make(map[string]*memNode, len(d.entries))
	for name, n := range d.entries {
		d.durable[name] = n
	}
	m.syncCount++
	return nil
}

// ReadDir implements FS.
func (m *MemFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.alive(); err != nil {
		return nil, err
	}
	dir = clean(dir)
	d, ok := m.dirs[dir]
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var out []fs.DirEntry
	for name, n := range d.entries {
		out = append(out, fs.FileInfoToDirEntry(memInfo{name: name, size: int64(len(n.data)), modTime: n.modTime}))
	}
	for p := range m.dirs {
		if p != dir && filepath.Dir(p) == dir {
			out = append(out, fs.FileInfoToDirEntry(memInfo{name: filepath.Base(p), dir: true}))
		}
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int {
		switch {
		case a.Name() < b.Name():
			return -1
		case a.Name() > b.Name():
			return 1
		}
		return 0
	})
	return out, nil
}

// Stat implements FS.
func (m *MemFS) Stat(name string) (fs.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.alive(); err != nil {
		return nil, err
	}
	if _, ok := m.dirs[clean(name)]; ok {
		return memInfo{name: filepath.Base(clean(name)), dir: true}, nil
	}
	d, base, err := m.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	n, ok := d.entries[base]
	if !ok {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return memInfo{name: base, size: int64(len(n.data)), modTime: n.modTime}, nil
}

// memFile is an open file of a MemFS.
type memFile struct {
	fs     *MemFS
	node   *memNode
	name   string
	path   string
	off    int64
	write  bool
	closed bool
}

func (f *memFile) check(op string, write bool) error {
	if err := f.fs.alive(); err != nil {
		return err
	}
	if f.closed {
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	}
	if write && !f.write {
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrPermission}
	}
	if write {
		return f.fs.change(op, f.path)
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.fs.mu.Lock()
	f.off += int64(n)
	f.fs.mu.Unlock()
	if n > 0 && err == io.EOF {
		err = nil // a short read, as a file gives; EOF comes with the next
	}
	return n, err
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("read %s: negative offset", f.name)
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	n, err := f.WriteAt(p, f.off)
	f.fs.mu.Lock()
	f.off += int64(n)
	f.fs.mu.Unlock()
	return n, err
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("write", true); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("write %s: negative offset", f.name)
	}
	if end := off + int64(len(p)); end > int64(len(f.node.data)) {
		f.node.data = append(f.node.data, make([]byte, end-int64(len(f.node.data)))...)
	}
	copy(f.node.data[off:], p)
	f.node.modTime = time.Now()
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("sync", true); err != nil {
		return err
	}
	f.node.synced = slices.Clone(f.node.data)
	f.fs.syncCount++
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("truncate", true); err != nil {
		return err
	}
	if size < int64(len(f.node.data)) {
		f.node.data = f.node.data[:size]
	} else {
		f.node.data = append(f.node.data, make([]byte, size-int64(len(f.node.data)))...)
	}
	return nil
}

func (f *memFile) Stat() (fs.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("stat", false); err != nil {
		return nil, err
	}
	return memInfo{name: f.name, size: int64(len(f.node.data)), modTime: f.node.modTime}, nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.closed = true
	return nil
}

type memInfo struct {
	name    string
	size    int64
	modTime time.Time
	dir     bool
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) ModTime() time.Time { return i.modTime }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | DirMode
	}
	return FileMode
}
