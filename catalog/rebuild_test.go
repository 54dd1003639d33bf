package catalog_test

import (
	"context"
	"strings"
	"testing"

	"lbt/catalog"
	"lbt/storage"
)

func TestRebuild_Refuses(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"a catalog exists", func(t *testing.T, dir string) {
			cat, err := catalog.Create(ctx, dir, catalog.Source{SystemID: "1", Database: "d"})
			if err != nil {
				t.Fatal(err)
			}
			cat.Close()
		}, "--force"},
		{"no files", func(*testing.T, string) {}, "nothing to rebuild"},
		{"segments of format version 2", func(t *testing.T, dir string) {
			w, err := catalog.CreateSegment(storage.OS{}, dir, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			var enc catalog.BlobEncoder
			frame, _, err := enc.Encode(1, 1, 0x100, catalog.AppendTx(nil, 0x100, 0, 5, 0))
			if err != nil {
				t.Fatal(err)
			}
			w.Append(frame)
			w2, _ := catalog.CreateSegment(storage.OS{}, dir, 2) // the newest may end in undescribed blobs
			w2.Close()
		}, "format version 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			_, err := catalog.Rebuild(ctx, dir, false)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to say %q", err, tt.want)
			}
		})
	}
}
