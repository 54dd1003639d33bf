// Package catalogtest gives tests an empty catalog to write and read, as
// net/http/httptest gives them a server.
package catalogtest

import (
	"context"
	"testing"

	"lbt/catalog"
)

// New creates an empty catalog in dir, closed when the test ends.
func New(tb testing.TB, dir string) *catalog.Catalog {
	tb.Helper()
	c, err := catalog.Create(context.Background(), dir, catalog.Source{SystemID: "1", Database: "app"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
