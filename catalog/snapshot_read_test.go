package catalog_test

import (
	"context"
	"path/filepath"
	"testing"

	"lbt/catalog"
	"lbt/catalog/catalogtest"
)

// A read snapshot answers from the moment of its first read: a commit made
// meanwhile by another connection (the daemon, a purge) is not seen by the
// view, and is seen by the catalog once the view is released. Both ways of
// holding one are checked: for the span of a call (ReadSnapshot, a
// restore's plan) and until released (BeginRead, an Inspector).
func TestReadSnapshot_SeesOneMoment(t *testing.T) {
	hold := map[string]func(*catalog.Catalog, func(view *catalog.Catalog) error) error{
		"ReadSnapshot": func(c *catalog.Catalog, fn func(*catalog.Catalog) error) error {
			return c.ReadSnapshot(context.Background(), fn)
		},
		"BeginRead": func(c *catalog.Catalog, fn func(*catalog.Catalog) error) error {
			view, release, err := c.BeginRead(context.Background())
			if err != nil {
				return err
			}
			defer release()
			return fn(view)
		},
	}
	for name, read := range hold {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			w, err := catalog.Create(ctx, dir, catalog.Source{SystemID: "1", Database: "d"})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if err := w.SetMeta(ctx, "probe", "before"); err != nil {
				t.Fatal(err)
			}
			r, err := catalog.OpenReadOnly(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var seen []string
			err = read(r, func(view *catalog.Catalog) error {
				for range 2 {
					v, err := view.Meta(ctx, "probe")
					if err != nil {
						return err
					}
					seen = append(seen, v)
					if err := w.SetMeta(ctx, "probe", "after"); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != 2 || seen[0] != "before" || seen[1] != "before" {
				t.Errorf("the view read %q with a commit between; want %q both times", seen, "before")
			}
			if now, err := r.Meta(ctx, "probe"); err != nil || now != "after" {
				t.Errorf("after the view, the catalog reads %q (%v), want %q", now, err, "after")
			}
		})
	}
}

// A pinned snapshot copies the catalog as of the pin: commits made after
// it, on the pinning catalog's own connection (the daemon's archiver goes on
// while the uploader copies), are not in the copy, and the copy opens
// read-only as an archive catalog of its own.
func TestPin_CopiesTheMomentOfThePin(t *testing.T) {
	ctx := context.Background()
	w := catalogtest.New(t, t.TempDir())
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
