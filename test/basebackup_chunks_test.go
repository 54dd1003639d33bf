package test

import (
	"context"
	"slices"
	"testing"
	"time"

	"lbt/catalog"
)

// A basebackup in chunks of a few blocks each, copied by two connections
// under one snapshot while transactions change the tables, holds every row
// once: it plus the deltas after it equals the source, restore reads all
// its chunks, and a catalog rebuilt from the files knows the chunks. An
// inheritance child's rows stay out of its parent's chunks, as COPY of the
// parent leaves them out.
func TestBasebackup_ChunksParallel(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, loadTablesSQL+`
		CREATE TABLE ev_child () INHERITS (ev);
		INSERT INTO acc SELECT g, 'owner ' || g, g * 10, CASE WHEN g % 500 = 0 THEN repeat('toast', 2000) END FROM generate_series(1, 40000) g;
		INSERT INTO ev SELECT g % 100, g, md5(g::text) FROM generate_series(1, 40000) g;
		INSERT INTO ev_child VALUES (1, -1, 'child row');
		INSERT INTO bag SELECT 't' || (g % 50), g % 7 FROM generate_series(1, 30000) g;`)
	d := startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)

	stopLoad := startWriteLoad(t, dsn)

	// Chunks of 8 blocks: tens of chunks per table.
	bases := takeChunked(t, dsn, dir, 8*8192, "acc", "ev", "bag")
	time.Sleep(200 * time.Millisecond) // some more changes after the dump
	stopLoad()
	waitArchived(t, c, dsn, dir)
	upTo := archivePosition(t, dir)

	target := c.NewDatabase(t)
	columns := map[string][]string{"acc": {"id", "owner", "balance", "note"}, "ev": {"a", "b", "payload"}, "bag": {"tag", "n"}}
	check := func(what string) {
		t.Helper()
		for _, b := range bases {
			table := b.Definition.Table.Name
			want := sourceRows(t, dsn, "ONLY "+table, columns[table])
			cat := openArchive(t, dir)
			got := applyFrom(t, cat, b.TableID, b, upTo)
			cat.Close()
			if !slices.Equal(got.rows, want) {
				t.Errorf("%s: %s from its %d chunks plus %d changes differs from the source: %s", what, table, len(b.Files()), got.deltas, diffRows(got.rows, want))
			}
			if rows := restoreRows(t, dir, target, table, upTo, columns[table]); !slices.Equal(rows, want) {
				t.Errorf("%s: %s restored by restore.Run differs from the source: %s", what, table, diffRows(rows, want))
			}
		}
	}
	for _, b := range bases {
		if len(b.Chunks) < 4 {
			t.Fatalf("%s: %d chunks, want many with chunks of 8 blocks", b.Definition.Table.Name, len(b.Chunks))
		}
		for k, ch := range b.Chunks {
			if ch.Path != catalog.ChunkName(b.TableID, b.LSN, k) {
				t.Errorf("%s chunk %d is %s", b.Definition.Table.Name, k, ch.Path)
			}
		}
	}
	check("chunked")

	// The catalog is checked against every chunk, and rebuilt from them.
	ctx := context.Background()
	cat := openArchive(t, dir)
	rep, err := cat.Verify(ctx, true)
	cat.Close()
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(rep.Warnings) > 0 {
		t.Errorf("verify warns: %v", rep.Warnings)
	}
	d.stop()
	if _, err := catalog.Rebuild(ctx, dir, true, nil); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	cat = openArchive(t, dir)
	for _, b := range bases {
		got, err := cat.Basebackups(ctx, b.TableID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !slices.Equal(got[0].Chunks, b.Chunks) || got[0].Rows != b.Rows {
			t.Errorf("%s: the rebuilt catalog has %d basebackups, not its one of %d chunks", b.Definition.Table.Name, len(got), len(b.Chunks))
		}
	}
	cat.Close()
	check("rebuilt")
}
