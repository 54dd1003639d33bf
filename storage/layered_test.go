package storage

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
)

// newLayered returns a Layered store of two MemFS directories: the remote
// store holds segments 1 and 2, the local directory a copy of segment 2
// that reads "local two".
func newLayered(t *testing.T) (s *Layered, local, remote *Local) {
	t.Helper()
	ctx := context.Background()
	local = NewLocal(NewCrashableMem(), "/arch")
	remote = NewLocal(NewCrashableMem(), "/bucket")
	must(t, remote.Put(ctx, "segments/00000001.lbs", strings.NewReader("remote one"), -1))
	must(t, remote.Put(ctx, "segments/00000002.lbs", strings.NewReader("remote two"), -1))
	must(t, local.Put(ctx, "segments/00000002.lbs", strings.NewReader("local two"), -1))
	return NewLayered(local, remote), local, remote
}

// A Layered store reads the local copy while it is there and the remote
// one after; it writes, lists and deletes only the local directory.
func TestLayered_ReadsLocalThenRemote(t *testing.T) {
	ctx := context.Background()
	s, _, remote := newLayered(t)
	must(t, s.Put(ctx, "segments/00000003.lbs", strings.NewReader("local three"), -1))

	read := func(name string) string {
		t.Helper()
		rc, err := s.ReadRange(ctx, name, 0, -1)
		if err != nil {
			t.Fatalf("ReadRange %s: %v", name, err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		ra, err := OpenReaderAt(ctx, s, name)
		if err != nil {
			t.Fatalf("OpenReaderAt %s: %v", name, err)
		}
		defer ra.Close()
		buf := make([]byte, len(b))
		if n, err := ra.ReadAt(buf, 0); n != len(b) || (err != nil && !errors.Is(err, io.EOF)) {
			t.Fatalf("ReadAt %s: %d bytes, %v", name, n, err)
		}
		if string(buf) != string(b) {
			t.Errorf("%s: ReadAt %q, ReadRange %q", name, buf, b)
		}
		return string(b)
	}
	for name, want := range map[string]string{
		"segments/00000001.lbs": "remote one",
		"segments/00000002.lbs": "local two",
		"segments/00000003.lbs": "local three",
	} {
		if got := read(name); got != want {
			t.Errorf("%s reads %q, want %q", name, got, want)
		}
		if i, err := s.Stat(ctx, name); err != nil || i.Size != int64(len(want)) {
			t.Errorf("Stat %s: %+v %v", name, i, err)
		}
	}
	if _, err := remote.Stat(ctx, "segments/00000003.lbs"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Put wrote the remote store: %v", err)
	}
	if _, err := s.Stat(ctx, "segments/00000004.lbs"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a file in neither: %v", err)
	}
	if _, err := OpenReaderAt(ctx, s, "segments/00000004.lbs"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReaderAt of a file in neither: %v", err)
	}
	list, err := s.List(ctx, "segments/")
	if err != nil || len(list) != 2 || list[0].Name != "segments/00000002.lbs" {
		t.Errorf("List lists %+v, %v: want the local files", list, err)
	}

	// The local copy goes: the remote one is read, and is not deleted.
	ra, err := OpenReaderAt(ctx, s, "segments/00000002.lbs")
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	must(t, s.Delete(ctx, "segments/00000002.lbs"))
	if got := read("segments/00000002.lbs"); got != "remote two" {
		t.Errorf("after the local copy went, reads %q", got)
	}
	buf := make([]byte, 5)
	if _, err := ra.ReadAt(buf, 0); err != nil || string(buf) != "local" {
		t.Errorf("a reader opened before the local copy went reads %q, %v", buf, err)
	}
	must(t, s.Delete(ctx, "segments/00000001.lbs"))
	if got := read("segments/00000001.lbs"); got != "remote one" {
		t.Errorf("Delete removed the remote copy: reads %q", got)
	}
}

// Remove on a Layered store removes the local copy and counts its bytes
// alone: a file only the remote store holds frees nothing and stays there.
func TestLayered_RemoveCountsTheLocalCopy(t *testing.T) {
	ctx := context.Background()
	s, local, remote := newLayered(t)

	for _, c := range []struct {
		name string
		want int64
	}{
		{"segments/00000001.lbs", 0},
		{"segments/00000002.lbs", int64(len("local two"))},
		{"segments/00000003.lbs", 0},
	} {
		if n, err := Remove(ctx, s, c.name); err != nil || n != c.want {
			t.Errorf("Remove %s: %d bytes, %v; want %d", c.name, n, err, c.want)
		}
		if _, err := local.Stat(ctx, c.name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: the local copy is still there: %v", c.name, err)
		}
	}
	for _, name := range []string{"segments/00000001.lbs", "segments/00000002.lbs"} {
		if _, err := remote.Stat(ctx, name); err != nil {
			t.Errorf("Remove touched the remote copy of %s: %v", name, err)
		}
	}
}
