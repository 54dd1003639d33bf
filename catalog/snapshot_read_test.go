package catalog_test

import (
	"context"
	"testing"

	"lbt/catalog"
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
