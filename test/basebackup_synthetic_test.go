package test

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/retention"
	"lbt/test/pgtest"
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

// A basebackup built from the archive rewrites only the chunks that hold a
// row the changes touch and reuses the others by reference (format 5):
// with the changes in the newest part of the table, in memory and spilled,
// and spread over all of it. Each equals a fresh basebackup of the same
// moment row for row, and restores from it equal the source. Purge then
// keeps every file a kept basebackup reuses and removes the rest, sidecars
// of purged basebackups included (among them one whose first file a kept
// basebackup reuses); restores after it equal the source, and a catalog
// rebuilt from the files has exactly the kept basebackups, none of the
// purged ones back.
func TestBasebackup_FromArchiveReusesUntouchedChunks(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `
		CREATE TABLE big (id bigserial PRIMARY KEY, v text NOT NULL, n int);
		INSERT INTO big (v, n) SELECT repeat('v', 40) || g, g FROM generate_series(1, 30000) g;
		CREATE TABLE bag (tag text, n int);
		ALTER TABLE bag REPLICA IDENTITY FULL;
		INSERT INTO bag SELECT 't' || (g % 30), g % 5 FROM generate_series(1, 6000) g;`)
	d, cat, fresh, synth := startSynthetic(t, c, dsn, dir, "big", "bag")
	defer d.stop()
	ctx := context.Background()

	columns := map[string][]string{"big": {"id", "v", "n"}, "bag": {"tag", "n"}}
	target := c.NewDatabase(t)
	type moment struct {
		upTo uint64
		want map[string][]string
	}
	var moments []moment
	// synthesize builds both tables' next basebackups from the archive and
	// checks them; reuse says, per table, how many chunks must be reused
	// (at least; -1: none may be).
	synthesize := func(what string, memory int64, jobs int, compareFresh bool, reuse map[string]int) map[string]catalog.Basebackup {
		t.Helper()
		waitArchived(t, c, dsn, dir)
		m := moment{upTo: archivePosition(t, dir), want: map[string][]string{}}
		synth.Memory, synth.Jobs = memory, jobs
		out := map[string]catalog.Basebackup{}
		for _, table := range []string{"big", "bag"} {
			b, err := basebackup.Synthesize(ctx, cat, synth, table)
			if err != nil {
				t.Fatalf("%s: basebackup of %s from the archive: %v", what, table, err)
			}
			out[table] = b
			reused := reusedChunks(b)
			t.Logf("%s: %s from the archive: %d chunks, %d reused", what, table, len(b.Files()), len(reused))
			switch n := reuse[table]; {
			case n < 0 && len(reused) > 0:
				t.Errorf("%s: %s reuses %d chunks, want none", what, table, len(reused))
			case n > 0 && len(reused) < n:
				t.Errorf("%s: %s reuses %d chunks, want at least %d", what, table, len(reused), n)
			}
			if b.Files()[0].Path != catalog.BasebackupName(b.TableID, b.LSN) {
				t.Errorf("%s: %s's first chunk is %s, not its own file", what, table, b.Files()[0].Path)
			}
			m.want[table] = sourceRows(t, dsn, table, columns[table])
			if got := sortedRows(readBasebackup(t, dir, b)); !slices.Equal(got, m.want[table]) {
				t.Errorf("%s: %s from the archive differs from the source: %s", what, table, diffRows(got, m.want[table]))
			}
			if got := restoreAt(t, dir, table, m.upTo); got.base.LSN != b.LSN {
				t.Errorf("%s: restore of %s starts from the basebackup at %X, not the one from the archive at %X", what, table, got.base.LSN, b.LSN)
			}
			checkRestores(t, dir, target, table, m.upTo, m.want[table], what+", restored from it")
		}
		if compareFresh {
			sameAsFresh(t, cat, fresh, dir, what, out)
		}
		moments = append(moments, m)
		return out
	}

	c.Exec(t, dsn, `
		UPDATE big SET n = n + 1 WHERE id > 29000;
		DELETE FROM big WHERE id > 29900;
		INSERT INTO big (v, n) SELECT 'new' || g, g FROM generate_series(1, 2000) g;
		INSERT INTO bag VALUES ('x', 1), ('x', 1);`)
	synthesize("changes in the newest part", 0, 1, true, map[string]int{"big": 10, "bag": 1})

	c.Exec(t, dsn, `
		UPDATE big SET n = -n WHERE id % 1000 = 0;
		INSERT INTO bag VALUES ('y', 2);`)
	synthesize("changes spread over all of it, spilled", 128<<10, 1, true, map[string]int{"bag": 2})

	// On 2 jobs, each job rewrites the files it reads.
	c.Exec(t, dsn, `
		UPDATE big SET n = n + 7 WHERE id % 500 = 250;
		DELETE FROM big WHERE id % 1000 = 1;
		INSERT INTO bag VALUES ('j', 4);`)
	synthesize("changes spread over all of it, spilled, on 2 jobs", 128<<10, 2, true, map[string]int{"bag": 2})
	c.Exec(t, dsn, `
		UPDATE big SET v = 'j' || id WHERE id % 700 = 350;
		INSERT INTO bag VALUES ('k', 5);`)
	synthesize("changes spread over all of it, in memory, on 2 jobs", 0, 2, true, map[string]int{"bag": 2})

	c.Exec(t, dsn, `
		UPDATE big SET v = 'tail' WHERE id > 31500;
		INSERT INTO big (v, n) SELECT 'newer' || g, g FROM generate_series(1, 500) g;
		INSERT INTO bag VALUES ('z', 3);`)
	last := synthesize("changes in the newest part, spilled", 128<<10, 1, false, map[string]int{"big": 5, "bag": 2})

	// Purge keeps the newest basebackup only: the files it reuses stay
	// (among them the first file of the fresh basebackup it was built
	// from), the others go, and so do the purged basebackups' sidecars.
	d.stop()
	var all []catalog.Basebackup
	for _, table := range []string{"big", "bag"} {
		all = append(all, basebackupsOf(t, dir, table)...)
	}
	popts := retention.NewOptions()
	popts.KeepBasebackups, popts.Logger = 1, testLogger(t, "purge")
	rep, err := retention.Purge(ctx, cat, popts)
	if err != nil {
		t.Fatalf("purge: %v", err)
	}
	t.Logf("purge returned %d basebackup bytes", rep.BasebackupBytes)
	checkPurgedFiles(t, dir, cat, all, last)
	firstKept := 0
	for _, b := range all {
		for _, k := range last {
			if b.LSN < k.LSN && slices.Contains(reusedChunks(k), b.Path) {
				firstKept++
			}
		}
	}
	if firstKept == 0 {
		t.Errorf("no kept basebackup reuses a purged one's first file: the case of a sidecar removed beside its kept first file is not tested")
	}
	// The kept basebackup's moment: its LSN is one past the last
	// transaction it holds (the restore's target), past the newest
	// commit's LSN that the moment recorded.
	for table, b := range last {
		checkRestores(t, dir, target, table, b.LSN-1, moments[len(moments)-1].want[table], "after the purge")
	}
	vrep, err := cat.Verify(ctx, true)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(vrep.Warnings) > 0 {
		t.Errorf("verify warns: %v", vrep.Warnings)
	}

	// A catalog rebuilt from the files has the kept basebackups only.
	cat.Close()
	rrep, err := catalog.Rebuild(ctx, dir, true, nil)
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if len(rrep.Warnings) > 0 {
		t.Errorf("rebuild warns: %v", rrep.Warnings)
	}
	for table, b := range last {
		got := basebackupsOf(t, dir, table)
		if len(got) != 1 || got[0].LSN != b.LSN || !slices.Equal(got[0].Files(), b.Files()) {
			t.Errorf("rebuilt catalog has %d basebackups of %s, want the one kept at %X", len(got), table, b.LSN)
		}
		checkRestores(t, dir, target, table, b.LSN-1, moments[len(moments)-1].want[table], "after the rebuild")
	}
}

// startSynthetic starts lbt backup on dir, waits until it archived what the
// source holds, and takes basebackups of tables with fresh, the options of
// fresh basebackups it returns, in chunks of 16 heap blocks on 2 jobs. It
// returns too the catalog (closed when the test ends) and the options of
// basebackups from the archive, in chunks of 64 KiB.
func startSynthetic(t *testing.T, c *pgtest.Cluster, dsn, dir string, tables ...string) (*daemon, *catalog.Catalog, basebackup.Options, basebackup.Options) {
	t.Helper()
	d := startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	cat, err := catalog.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	fresh, synth := syntheticOptions(t, dsn, dir)
	if _, err := basebackup.Take(context.Background(), cat, fresh, tables); err != nil {
		t.Fatal(err)
	}
	return d, cat, fresh, synth
}

// sameAsFresh takes fresh basebackups of the tables of synthesized, built
// from the archive, at the same moment (nothing was written since), checks
// that each holds the same rows, and returns them.
func sameAsFresh(t *testing.T, cat *catalog.Catalog, fresh basebackup.Options, dir, what string, synthesized map[string]catalog.Basebackup) []catalog.Basebackup {
	t.Helper()
	tables := slices.Sorted(maps.Keys(synthesized))
	bases, err := basebackup.Take(context.Background(), cat, fresh, tables)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range bases {
		table := f.Definition.Table.Name
		if got, want := sortedRows(readBasebackup(t, dir, synthesized[table])), sortedRows(readBasebackup(t, dir, f)); !slices.Equal(got, want) {
			t.Errorf("%s: %s from the archive differs from a fresh basebackup of the same moment: %s", what, table, diffRows(got, want))
		}
	}
	return bases
}

// syntheticOptions are the options of fresh basebackups in chunks of 16
// heap blocks on 2 jobs, and of basebackups from the archive in chunks of
// 64 KiB.
func syntheticOptions(t *testing.T, dsn, dir string) (fresh, synth basebackup.Options) {
	t.Helper()
	fresh = dumpOptions(t, dsn, dir)
	fresh.Jobs, fresh.ChunkBytes = 2, 16*8192
	synth = basebackup.NewOptions()
	synth.ArchiveDir, synth.TempDir, synth.Logger = dir, fresh.TempDir, testLogger(t, "synthetic")
	synth.ChunkBytes = 64 << 10
	return fresh, synth
}

// reusedChunks are the files of b that an older basebackup wrote.
func reusedChunks(b catalog.Basebackup) []string {
	var out []string
	for k, f := range b.Files() {
		if f.Path != catalog.ChunkName(b.TableID, b.LSN, k) {
			out = append(out, f.Path)
		}
	}
	return out
}

// checkPurgedFiles checks the files after a purge that kept the basebackups
// in kept, of those in all: every file a kept one lists is there, every
// other file of the others is gone, as are their sidecars, and the catalog
// has no file left to remove.
func checkPurgedFiles(t *testing.T, dir string, cat *catalog.Catalog, all []catalog.Basebackup, kept map[string]catalog.Basebackup) {
	t.Helper()
	held := map[string]bool{}
	for _, b := range kept {
		held[catalog.SidecarName(b.Path)] = true
		for _, f := range b.Files() {
			held[f.Path] = true
		}
	}
	for _, b := range all {
		files := []string{catalog.SidecarName(b.Path)}
		for _, f := range b.Files() {
			files = append(files, f.Path)
		}
		for _, f := range files {
			_, err := os.Stat(filepath.Join(dir, f))
			switch {
			case held[f] && err != nil:
				t.Errorf("%s, which a kept basebackup lists, is gone: %v", f, err)
			case !held[f] && !errors.Is(err, fs.ErrNotExist):
				t.Errorf("%s of a purged basebackup is still there (%v)", f, err)
			}
		}
	}
	left, err := cat.PurgeFiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("purge left files to remove: %v", left)
	}
}
