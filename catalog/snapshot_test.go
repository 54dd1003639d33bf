package catalog_test

import (
	"context"
	"path/filepath"
	"testing"

	"lbt/catalog"
)

// A pinned snapshot copies the catalog as of the pin: commits made after
// it, on the pinning catalog's own connection (the daemon's archiver goes on
// while the uploader copies), are not in the copy, and the copy opens
// read-only as an archive catalog of its own.
func TestPin_CopiesTheMomentOfThePin(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w, err := catalog.Create(ctx, dir, catalog.Source{SystemID: "1", Database: "d"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.SetMeta(ctx, "probe", "pinned"); err != nil {
		t.Fatal(err)
	}
	pin, err := w.Pin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pin.Close()
	if err := w.SetMeta(ctx, "probe", "after"); err != nil {
		t.Fatal(err)
	}
	// A commit after the pin larger than SQLite's automatic checkpoint
	// (1,000 pages), which must not reach the pinned pages.
	if _, err := w.DB().Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
		INSERT INTO meta (key, value) SELECT 'filler.' || i, hex(randomblob(50)) FROM n`); err != nil {
		t.Fatal(err)
	}
	copyDir := t.TempDir()
	path := filepath.Join(copyDir, catalog.CatalogFile)
	if err := pin.WriteTo(ctx, path); err != nil {
		t.Fatal(err)
	}
	r, err := catalog.OpenReadOnly(ctx, copyDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got string
	if err := r.DB().QueryRow(`SELECT value FROM meta WHERE key = 'probe'`).Scan(&got); err != nil || got != "pinned" {
		t.Errorf("the copy has probe = %q (%v), want the pinned value", got, err)
	}
	var fillers int
	if err := r.DB().QueryRow(`SELECT count(*) FROM meta WHERE key LIKE 'filler.%'`).Scan(&fillers); err != nil || fillers != 0 {
		t.Errorf("the copy has %d filler rows (%v), committed after the pin", fillers, err)
	}
	if err := w.DB().QueryRow(`SELECT value FROM meta WHERE key = 'probe'`).Scan(&got); err != nil || got != "after" {
		t.Errorf("the live catalog has probe = %q (%v)", got, err)
	}
}
