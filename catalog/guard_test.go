package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lbt/catalog"
	"lbt/storage"
)

func TestRemoveSegmentLeftover(t *testing.T) {
	header := func(dir string, id int64) {
		w, err := catalog.CreateSegment(storage.OS{}, dir, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	write := func(dir string, data []byte) {
		os.MkdirAll(filepath.Join(dir, "segments"), 0o750)
		os.WriteFile(filepath.Join(dir, catalog.SegmentName(7)), data, 0o640)
	}
	tests := []struct {
		name    string
		make    func(dir string)
		removed bool
		err     error
	}{
		{"no file", func(string) {}, false, nil},
		{"header alone: a crash before the catalog row", func(dir string) { header(dir, 7) }, true, nil},
		{"empty: a crash between creating the file and writing its header", func(dir string) { write(dir, nil) }, true, nil},
		{"part of a header", func(dir string) {
			header(dir, 7)
			os.Truncate(filepath.Join(dir, catalog.SegmentName(7)), catalog.SegmentHeaderSize-3)
		}, true, nil},
		{"part of another id's header", func(dir string) {
			header(dir, 8)
			os.Rename(filepath.Join(dir, catalog.SegmentName(8)), filepath.Join(dir, catalog.SegmentName(7)))
			os.Truncate(filepath.Join(dir, catalog.SegmentName(7)), catalog.SegmentHeaderSize-1)
		}, false, catalog.ErrUnknownFile},
		{"a few bytes that are no header", func(dir string) { write(dir, []byte("data")) }, false, catalog.ErrUnknownFile},
		{"header and data: a newer catalog's segment", func(dir string) {
			header(dir, 7)
			f, _ := os.OpenFile(filepath.Join(dir, catalog.SegmentName(7)), os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("blob bytes"))
			f.Close()
		}, false, catalog.ErrUnknownFile},
		{"header of another id", func(dir string) {
			header(dir, 8)
			os.Rename(filepath.Join(dir, catalog.SegmentName(8)), filepath.Join(dir, catalog.SegmentName(7)))
		}, false, catalog.ErrUnknownFile},
		{"not a segment", func(dir string) { write(dir, make([]byte, catalog.SegmentHeaderSize)) }, false, catalog.ErrUnknownFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.make(dir)
			_, statErr := os.Stat(filepath.Join(dir, catalog.SegmentName(7)))
			err := catalog.RemoveSegmentLeftover(storage.OS{}, dir, 7)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			_, after := os.Stat(filepath.Join(dir, catalog.SegmentName(7)))
			if gone := statErr == nil && os.IsNotExist(after); gone != tt.removed {
				t.Errorf("removed = %v, want %v", gone, tt.removed)
			}
		})
	}
}

func TestCheckUnknownSegments(t *testing.T) {
	dir := t.TempDir()
	for _, id := range []int64{1, 2, 3} {
		w, err := catalog.CreateSegment(storage.OS{}, dir, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if id < 3 {
			w.Append([]byte("data"))
		}
		w.Close()
	}
	for next, bad := range map[int64]bool{1: true, 2: true, 3: false, 4: false} {
		err := catalog.CheckUnknownSegments(storage.OS{}, dir, next)
		if bad != errors.Is(err, catalog.ErrUnknownFile) {
			t.Errorf("next %d: err = %v, want refusal %v", next, err, bad)
		}
	}
}

// Creating an archive where segments or basebackups lie without a catalog
// is refused, and names the fix.
func TestCreate_RefusesOrphanFiles(t *testing.T) {
	for _, file := range []string{catalog.SegmentName(1), catalog.BasebackupName(1, 0x1000)} {
		dir := t.TempDir()
		os.MkdirAll(filepath.Dir(filepath.Join(dir, file)), 0o750)
		os.WriteFile(filepath.Join(dir, file), []byte("old"), 0o640)
		_, err := catalog.Create(context.Background(), dir, catalog.Source{SystemID: "1", Database: "d"})
		if !errors.Is(err, catalog.ErrCatalogMissing) || !strings.Contains(err.Error(), "lbt repair --rebuild-catalog") {
			t.Errorf("%s: Create: %v", file, err)
		}
		if _, err := catalog.OpenReadOnly(context.Background(), dir); !errors.Is(err, catalog.ErrCatalogMissing) {
			t.Errorf("%s: Open: %v", file, err)
		}
		if _, err := os.Stat(filepath.Join(dir, catalog.CatalogFile)); !os.IsNotExist(err) {
			t.Errorf("%s: a catalog was created", file)
		}
	}
}

// A version-2 archive is refused with the version found, the version read
// and what to do.
func TestOpen_RefusesVersion2(t *testing.T) {
	dir := t.TempDir()
	cat, err := catalog.Create(context.Background(), dir, catalog.Source{SystemID: "1", Database: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.SetMeta(context.Background(), "format_version", "2"); err != nil {
		t.Fatal(err)
	}
	cat.Close()
	_, err = catalog.Open(context.Background(), dir)
	if err == nil {
		t.Fatal("a version-2 archive opened")
	}
	for _, want := range []string{dir, "format version 2", fmt.Sprintf("reads version %d", catalog.FormatVersion), "the lbt that wrote it", "new, empty archiveDir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
}
