package test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/retention"
)

// A basebackup built from the archive (no source connection at all) holds
// the same rows as a fresh one of the same moment, and restores from it
// equal the source, at that moment and after later changes; a second one
// builds on the first, and a third on 2 jobs on a fresh one. Unchanged
// TOAST values, key changes, a keyless table and a TRUNCATE are in the
// changes; the reduced changes spill, but for the third.
func TestBasebackup_FromArchive(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `
		CREATE TABLE acc (id int PRIMARY KEY, owner text NOT NULL, balance bigint, note text);
		ALTER TABLE acc ALTER COLUMN note SET STORAGE EXTERNAL;
		CREATE TABLE bag (tag text, n int);
		ALTER TABLE bag REPLICA IDENTITY FULL;
		INSERT INTO acc SELECT g, 'owner ' || g, g * 10, CASE WHEN g % 100 = 0 THEN repeat('toast', 2000) END FROM generate_series(1, 20000) g;
		INSERT INTO bag SELECT 't' || (g % 30), g % 5 FROM generate_series(1, 6000) g;`)
	d, cat, fresh, synth := startSynthetic(t, c, dsn, dir, "acc", "bag")
	ctx := context.Background()
	synth.Memory = 128 << 10 // the reduced changes spill

	columns := map[string][]string{"acc": {"id", "owner", "balance", "note"}, "bag": {"tag", "n"}}
	target := c.NewDatabase(t)
	synthesize := func(what string) map[string]catalog.Basebackup {
		t.Helper()
		waitArchived(t, c, dsn, dir)
		out := map[string]catalog.Basebackup{}
		for _, table := range []string{"acc", "bag"} {
			b, err := basebackup.Synthesize(ctx, cat, synth, table)
			if err != nil {
				t.Fatalf("%s: basebackup of %s from the archive: %v", what, table, err)
			}
			out[table] = b
			if len(b.Files()) < 2 && table == "acc" {
				t.Errorf("%s: %s from the archive has %d chunk, want several", what, table, len(b.Files()))
			}
			upTo := archivePosition(t, dir)
			want := sourceRows(t, dsn, table, columns[table])
			if got := sortedRows(readBasebackup(t, dir, b)); !slices.Equal(got, want) {
				t.Errorf("%s: %s from the archive differs from the source: %s", what, table, diffRows(got, want))
			}
			if got := restoreAt(t, dir, table, upTo); got.base.LSN != b.LSN {
				t.Errorf("%s: restore of %s starts from the basebackup at %X, not the one from the archive at %X", what, table, got.base.LSN, b.LSN)
			}
			checkRestores(t, dir, target, table, upTo, want, what+", restored from it")
		}
		return out
	}

	c.Exec(t, dsn, `
		UPDATE acc SET balance = balance + 1 WHERE id % 100 = 0;  -- TOASTed notes unchanged
		UPDATE acc SET id = id + 100000 WHERE id % 7 = 0;
		DELETE FROM acc WHERE id % 11 = 0;
		INSERT INTO acc SELECT g, 'new', 0, NULL FROM generate_series(50001, 51000) g;
		DELETE FROM bag WHERE ctid IN (SELECT ctid FROM bag WHERE n = 1 LIMIT 300);
		INSERT INTO bag VALUES ('x', 1), ('x', 1);`)
	first := synthesize("first")

	// Restores after it, from it and the changes after it.
	c.Exec(t, dsn, `
		UPDATE acc SET owner = 'later' WHERE id % 5 = 0;
		TRUNCATE bag; INSERT INTO bag SELECT 'after', g FROM generate_series(1, 50) g;`)
	waitArchived(t, c, dsn, dir)
	upTo := archivePosition(t, dir)
	for table := range first {
		checkRestores(t, dir, target, table, upTo, sourceRows(t, dsn, table, columns[table]), "after the first from the archive")
	}

	second := synthesize("second")
	sameAsFresh(t, cat, fresh, dir, "second", second)

	// On 2 jobs, with the changes in memory: rows whose TOASTed notes are
	// unchanged, their keys changed or not, get them from whichever job
	// reads their basebackup file; rows of the keyless table are removed
	// once each.
	c.Exec(t, dsn, `
		UPDATE acc SET balance = balance + 2 WHERE id % 100 = 0;  -- TOASTed notes unchanged
		UPDATE acc SET id = id + 200000 WHERE id % 13 = 0;
		DELETE FROM bag WHERE n % 3 = 0;
		INSERT INTO bag VALUES ('w', 7), ('w', 7);`)
	synth.Memory, synth.Jobs = 0, 2
	third := synthesize("third, on 2 jobs")
	bases := sameAsFresh(t, cat, fresh, dir, "third, on 2 jobs", third)

	// Purge removes the older basebackups, chunks and all, and verify
	// finds nothing left over.
	d.stop()
	popts := retention.NewOptions()
	popts.KeepBasebackups, popts.Logger = 1, testLogger(t, "purge")
	if _, err := retention.Purge(ctx, cat, popts); err != nil {
		t.Fatalf("purge: %v", err)
	}
	for _, b := range bases {
		if got := basebackupsOf(t, dir, b.Definition.Table.Name); len(got) != 1 || got[0].ID != b.ID {
			t.Errorf("%s keeps %d basebackups after the purge, want the fresh one", b.Definition.Table.Name, len(got))
		}
	}
	for _, old := range []map[string]catalog.Basebackup{first, second, third} {
		for _, b := range old {
			for _, f := range b.Files() {
				if _, err := os.Stat(filepath.Join(dir, f.Path)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s of a purged basebackup: %v", f.Path, err)
				}
			}
		}
	}
	rep, err := cat.Verify(ctx, true)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(rep.Warnings) > 0 {
		t.Errorf("verify warns: %v", rep.Warnings)
	}
}

// sortedRows encodes decoded COPY rows as sourceRows does, sorted.
func sortedRows(rows [][]*string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = encodeRow(r)
	}
	slices.Sort(out)
	return out
}
