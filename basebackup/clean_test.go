package basebackup

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/catalog/catalogtest"
)

// The start-up clean-up removes a basebackup's files only when the
// catalog recorded them as pending and never as a basebackup; a file it
// has no row for is kept and reported.
func TestCleanStray_RemovesOnlyProvenLeftovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cat := catalogtest.New(t, dir)
	write := func(rel string) {
		path := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(path), 0o750)
		if err := os.WriteFile(path, []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	pending := catalog.BasebackupName(1, 0x100)  // a crash after the rename
	unknown := catalog.BasebackupName(2, 0x200)  // a newer catalog's, say
	recorded := catalog.BasebackupName(3, 0x300) // a basebackup
	partial := catalog.BasebackupName(4, 0x400)  // a copy across file systems, interrupted
	for _, p := range []string{pending, catalog.SidecarName(pending), unknown, catalog.SidecarName(unknown),
		recorded, catalog.SidecarName(recorded), partial + ".partial"} {
		write(p)
	}
	for _, p := range []string{pending, recorded, partial} {
		if err := cat.AddPendingBasebackup(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cat.AddBasebackup(ctx, catalog.Basebackup{TableID: 3, LSN: 0x300, Path: recorded, StartedAt: time.Now(), FinishedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	removed, unknownFiles, err := cleanStray(ctx, cat, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rel := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			r, _ := filepath.Rel(dir, p)
			out = append(out, r)
		}
		slices.Sort(out)
		return out
	}
	wantRemoved := []string{pending, catalog.SidecarName(pending), partial + ".partial"}
	slices.Sort(wantRemoved)
	if got := rel(removed); !slices.Equal(got, wantRemoved) {
		t.Errorf("removed %v, want %v", got, wantRemoved)
	}
	wantUnknown := []string{unknown, catalog.SidecarName(unknown)}
	slices.Sort(wantUnknown)
	if got := rel(unknownFiles); !slices.Equal(got, wantUnknown) {
		t.Errorf("reported unknown %v, want %v", got, wantUnknown)
	}
	for _, p := range append(wantUnknown, recorded, catalog.SidecarName(recorded)) {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if ok, err := cat.IsPendingBasebackup(ctx, pending); err != nil || ok {
		t.Errorf("the pending row of the removed leftover is still there (%v)", err)
	}
}
