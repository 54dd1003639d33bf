package restore

import (
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/hashicorp/go-hclog"

	"lbt/catalog"
	"lbt/catalog/catalogtest"
	"lbt/storage"
)

// A plan naming a file that purge removed after the plan's rows were read
// is made again from the rows as they now are; a file missing for good
// fails after a few tries, with the file's error.
func TestPlanAndOpen_ReadsTheRowsAgainWhenAFileIsGone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cat := catalogtest.New(t, dir)
	w, err := catalog.CreateSegment(storage.OS{}, dir, -1, nil) // where purge moved the blobs
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	stale := &plan{blobs: []catalog.Blob{{ID: 1, SegmentID: 3}}} // segment 3 was rewritten into -1
	fresh := &plan{blobs: []catalog.Blob{{ID: 1, SegmentID: -1}}}
	calls := 0
	pl, _, files, err := planAndOpen(ctx, cat, hclog.NewNullLogger(), func(*catalog.Catalog) (*plan, []string, error) {
		calls++
		if calls == 1 {
			return stale, nil, nil
		}
		return fresh, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files.close()
	if pl != fresh || calls != 2 {
		t.Errorf("planned %d times, got the fresh plan: %v", calls, pl == fresh)
	}

	calls = 0
	_, _, _, err = planAndOpen(ctx, cat, hclog.NewNullLogger(), func(*catalog.Catalog) (*plan, []string, error) {
		calls++
		return stale, nil, nil
	})
	if !errors.Is(err, fs.ErrNotExist) || calls != maxReplans {
		t.Errorf("a file gone for good: %v after %d plans, want fs.ErrNotExist after %d", err, calls, maxReplans)
	}
}
