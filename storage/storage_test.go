package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What survives MemFS's crash is exactly what POSIX promises: synced bytes,
// and directory entries made durable by a directory fsync.
func TestMemFS_CrashKeepsOnlyWhatWasSynced(t *testing.T) {
	tests := []struct {
		name     string
		do       func(t *testing.T, m *MemFS)
		want     string // the file's content after the crash
		wantGone bool
	}{
		{"written, never synced", func(t *testing.T, m *MemFS) {
			f := create(t, m, "/a/f")
			write(t, f, "hello")
			must(t, m.SyncDir("/a"))
		}, "", false},
		{"synced, entry not durable", func(t *testing.T, m *MemFS) {
			f := create(t, m, "/a/f")
			write(t, f, "hello")
			must(t, f.Sync())
		}, "", true},
		{"synced and entry durable", func(t *testing.T, m *MemFS) {
			f := create(t, m, "/a/f")
			write(t, f, "hello")
			must(t, f.Sync())
			must(t, m.SyncDir("/a"))
			write(t, f, " world") // not synced
		}, "hello", false},
		{"rename without directory fsync", func(t *testing.T, m *MemFS) {
			f := create(t, m, "/a/tmp")
			write(t, f, "hello")
			must(t, f.Sync())
			must(t, m.Rename("/a/tmp", "/a/f"))
		}, "", true},
		{"remove without directory fsync", func(t *testing.T, m *MemFS) {
			f := create(t, m, "/a/f")
			write(t, f, "hello")
			must(t, f.Sync())
			must(t, m.SyncDir("/a"))
			must(t, m.Remove("/a/f"))
		}, "hello", false},
		{"truncate not synced", func(t *testing.T, m *MemFS) {
			f := create(t, m, "/a/f")
			write(t, f, "hello")
			must(t, f.Sync())
			must(t, m.SyncDir("/a"))
			must(t, f.Truncate(2))
		}, "hello", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewCrashableMem()
			must(t, m.MkdirAll("/a"))
			tt.do(t, m)
			m.Crash()
			f, err := m.Open("/a/f")
			if tt.wantGone {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("file survived the crash (%v)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(f)
			if string(got) != tt.want {
				t.Errorf("after the crash %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMemFS_FailAfter(t *testing.T) {
	m := NewCrashableMem()
	must(t, m.MkdirAll("/a"))
	f := create(t, m, "/a/f")
	m.FailAfter(1)
	write(t, f, "x")
	if _, err := f.Write([]byte("y")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("write after the crash point: %v", err)
	}
	if _, err := m.Stat("/a/f"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("stat after the crash point: %v", err)
	}
	m.Crash()
	if _, err := m.Stat("/a/f"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the unsynced file survived: %v", err)
	}
}

// Local's Put is atomic and durable on return, on the host and on MemFS
// whatever the crash point.
func TestLocal_PutIsAtomicAtEveryCrashPoint(t *testing.T) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	probe := NewCrashableMem()
	must(t, NewLocal(probe, "/arch").Put(ctx, "base/1/x.copy.lz4", bytes.NewReader(data), int64(len(data))))
	total := probe.Ops()
	for at := int64(0); at <= total; at++ {
		m := NewCrashableMem()
		s := NewLocal(m, "/arch")
		m.FailAfter(at)
		err := s.Put(ctx, "base/1/x.copy.lz4", bytes.NewReader(data), int64(len(data)))
		m.Crash()
		rc, rerr := s.ReadRange(ctx, "base/1/x.copy.lz4", 0, -1)
		switch {
		case err == nil && rerr != nil:
			t.Fatalf("crash after op %d: Put returned nil but the object is gone: %v", at, rerr)
		case rerr == nil:
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, data) {
				t.Fatalf("crash after op %d: %d bytes survive, want all %d or none", at, len(got), len(data))
			}
		case !errors.Is(rerr, fs.ErrNotExist):
			t.Fatal(rerr)
		}
		list, err := s.List(ctx, "base/")
		if err != nil {
			t.Fatal(err)
		}
		if rerr != nil && len(list) != 0 {
			t.Fatalf("crash after op %d: List shows %v", at, list)
		}
	}
}

func TestLocal_ReadRangeListDelete(t *testing.T) {
	ctx := context.Background()
	for name, fsys := range map[string]FS{"os": OS{}, "mem": NewCrashableMem()} {
		t.Run(name, func(t *testing.T) {
			root := "/arch"
			if name == "os" {
				root = t.TempDir()
			}
			s := NewLocal(fsys, root)
			for _, n := range []string{"segments/00000002.lbs", "segments/00000001.lbs", "base/7/A.copy.lz4", "base/7/A.meta.json"} {
				must(t, s.Put(ctx, n, strings.NewReader("content of "+n), -1))
			}
			rc, err := s.ReadRange(ctx, "segments/00000001.lbs", 3, 4)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != "tent" {
				t.Errorf("ReadRange read %q", got)
			}
			ra, err := OpenReaderAt(ctx, s, "segments/00000001.lbs")
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2)
			if _, err := ra.ReadAt(buf, 0); err != nil || string(buf) != "co" {
				t.Errorf("ReadAt %q %v", buf, err)
			}
			ra.Close()
			names := func(prefix string) string {
				list, err := s.List(ctx, prefix)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, i := range list {
					out = append(out, i.Name)
				}
				return strings.Join(out, " ")
			}
			if got := names("segments/"); got != "segments/00000001.lbs segments/00000002.lbs" {
				t.Errorf("List segments/: %s", got)
			}
			if got := names("base/7/A.c"); got != "base/7/A.copy.lz4" {
				t.Errorf("List base/7/A.c: %s", got)
			}
			must(t, s.Delete(ctx, "base/7/A.copy.lz4"))
			must(t, s.Delete(ctx, "base/7/A.copy.lz4")) // again: not an error
			if _, err := s.Stat(ctx, "base/7/A.copy.lz4"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat after Delete: %v", err)
			}
		})
	}
}

// PutFile moves a file on the same file system, so that an open handle
// (and its flock) goes with it; from MemFS's point of view it copies.
func TestLocal_PutFileRenames(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	src := filepath.Join(root, "tmp", "x.partial")
	must(t, os.MkdirAll(filepath.Dir(src), 0o700))
	must(t, os.WriteFile(src, []byte("basebackup"), 0o600))
	before, _ := os.Stat(src)
	s := NewLocal(OS{}, root)
	must(t, PutFile(ctx, s, "base/1/x.copy.lz4", src))
	after, err := os.Stat(s.Path("base/1/x.copy.lz4"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("PutFile copied the file instead of renaming it")
	}
	if _, err := os.Stat(src); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the source is still there: %v", err)
	}

	m := NewCrashableMem()
	must(t, os.WriteFile(src, []byte("basebackup"), 0o600))
	ms := NewLocal(m, "/arch")
	must(t, PutFile(ctx, ms, "base/1/x.copy.lz4", src))
	m.Crash()
	rc, err := ms.ReadRange(ctx, "base/1/x.copy.lz4", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "basebackup" {
		t.Errorf("copied %q", got)
	}
}

func create(t *testing.T, m *MemFS, name string) File {
	t.Helper()
	f, err := m.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func write(t *testing.T, f File, s string) {
	t.Helper()
	if _, err := f.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
