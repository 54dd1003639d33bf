package catalog_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"lbt/catalog"
)

// A version-4 archive (the golden one, made version 4 again should it be
// newer) is read as it is, and upgraded in place to version 5 when opened
// for writing: the new purge_file table, empty, and the new version;
// everything else reads as before.
func TestFormat4_UpgradedInPlace(t *testing.T) {
	ctx := context.Background()
	dir := copyGolden(t)
	db, err := sql.Open("sqlite", filepath.Join(dir, catalog.CatalogFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TABLE IF EXISTS purge_file`, `UPDATE meta SET value = '4' WHERE key = 'format_version'`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	before := describeArchive(t, dir) // read-only: as it is

	cat, err := catalog.Open(ctx, dir)
	if err != nil {
		t.Fatalf("open a version-4 archive for writing: %v", err)
	}
	if v, err := cat.Meta(ctx, "format_version"); err != nil || v != "5" {
		t.Errorf("format_version after the upgrade: %q (%v), want 5", v, err)
	}
	if left, err := cat.PurgeFiles(ctx); err != nil || len(left) > 0 {
		t.Errorf("purge_file after the upgrade: %v (%v), want it empty", left, err)
	}
	cat.Close()
	var kept []string
	for _, l := range strings.Split(describeArchive(t, dir), "\n") {
		if !strings.HasPrefix(l, "catalog table purge_file: ") {
			kept = append(kept, l)
		}
	}
	after := strings.Join(kept, "\n")
	if want := strings.Replace(before, `key="format_version" value="4"`, `key="format_version" value="5"`, 1); after != want {
		t.Errorf("the upgraded archive reads differently from the version-4 one:\n%s", firstDifference(after, want))
	}
}

// firstDifference shows the first line where two descriptions differ.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return "line " + g[i] + "\nwant " + w[i]
		}
	}
	return "one is longer than the other"
}
