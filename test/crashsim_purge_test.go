package test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/restore"
	"lbt/retention"
	"lbt/storage"
	"lbt/test/pgtest"
)

// A crash of the machine in the middle of a purge of basebackups whose
// chunk files newer basebackups reuse (format 5). Each round changes the
// newest part of the table, builds a basebackup from the archive that
// reuses most chunks, and purges all but it with the file system failing
// at a random operation. After each crash, on the files as the restarted
// machine finds them:
//   - catalog verify passes;
//   - with the live catalog, and with one rebuilt from the files alone
//     (lbt repair --rebuild-catalog), every moment recorded so far
//     restores equal to the source at that moment, or is refused: a
//     rebuilt catalog never brings back a purged basebackup whose deltas
//     are gone;
//   - the next purge finishes the work: the catalog has no file left to
//     remove, every file a kept basebackup lists is there, no sidecar of
//     a purged basebackup is, and a rebuilt catalog has the live one's
//     basebackups.
//
// LBT_CRASH_POINTS sets the number of rounds.
func TestCrashSim_PurgeWithSharedChunks(t *testing.T) {
	points := crashPoints(t, 5)
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	target := c.NewDatabase(t)
	dir := t.TempDir()
	ctx := context.Background()
	c.Exec(t, dsn, `
		CREATE TABLE big (id bigserial PRIMARY KEY, v text NOT NULL, n int);
		INSERT INTO big (v, n) SELECT repeat('v', 40) || g, g FROM generate_series(1, 20000) g;`)

	mem := storage.NewCrashableMem()
	slot := fmt.Sprintf("lbt_crash_purge_%d", time.Now().UnixNano()%1e9)
	d := startCrashable(t, c, dsn, dir, slot, mem, mem, nil)
	defer func() { d.stop() }()
	waitArchived(t, c, dsn, dir)
	cat := openOn(t, dir, mem, false, nil)
	fresh, synth := syntheticOptions(t, dsn, dir)
	if _, err := basebackup.Take(ctx, cat, fresh, []string{"big"}); err != nil {
		t.Fatalf("basebackup: %v", err)
	}
	popts := retention.NewOptions()
	popts.KeepBasebackups, popts.Logger = 1, testLogger(t, "purge")

	type moment struct {
		upTo uint64
		sum  string
	}
	var moments []moment
	// restores checks every recorded moment against the catalog in
	// catDir (the archive's files on mem) and returns how many were
	// refused.
	restores := func(what, catDir string) int {
		t.Helper()
		rc, err := catalog.OpenReadOnly(ctx, catDir)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer rc.Close()
		rc.SetFiles(mem, storage.NewLocal(mem, dir))
		refused := 0
		for i, m := range moments {
			o := restore.NewOptions()
			into := fmt.Sprintf("r_%d", restoreSeq.Add(1))
			o.Table, o.LSN, o.TargetConn, o.TargetTable, o.Logger = "big", m.upTo, connConfig(t, target), into, testLogger(t, "restore")
			_, err := restore.Run(ctx, rc, o)
			switch {
			case errors.Is(err, restore.ErrNotRestorable) && i < len(moments)-1:
				refused++
			case err != nil:
				t.Errorf("%s: restore at moment %d (%X): %v", what, i+1, m.upTo, err)
			default:
				if got := c.QueryString(t, target, checksumSQL(into)); got != m.sum {
					t.Errorf("%s: restore at moment %d (%X) differs from the source then: checksum %s, want %s", what, i+1, m.upTo, got, m.sum)
				}
			}
		}
		return refused
	}
	// rebuilt rebuilds a catalog from the files alone, beside the live one.
	rebuilt := func(what string) string {
		t.Helper()
		scratch := t.TempDir()
		if _, err := catalog.RebuildFrom(ctx, scratch, storage.NewLocal(mem, dir), false, nil); err != nil {
			segs, _ := storage.NewLocal(mem, dir).List(ctx, "segments/")
			t.Fatalf("%s: rebuild: %v (segment files: %v)", what, err, segs)
		}
		return scratch
	}
	lsns := func(catDir string) []uint64 {
		t.Helper()
		var out []uint64
		for _, b := range basebackupsOf(t, catDir, "big") {
			out = append(out, b.LSN)
		}
		return out
	}

	reusedAny := false
	span := int64(4) // crash points are drawn from the first span operations of a purge: the most a whole one took
	for i := range points {
		what := fmt.Sprintf("round %d", i+1)
		c.Exec(t, dsn, fmt.Sprintf(`
			UPDATE big SET n = n + 1 WHERE id > (SELECT max(id) - 300 FROM big);
			INSERT INTO big (v, n) SELECT 'r%d-' || g, g FROM generate_series(1, 3000) g;`, i)) // a segment sealed each round: purge reclaims segments too
		if i%2 == 1 {
			c.Exec(t, dsn, `DELETE FROM big WHERE id = (SELECT min(id) FROM big)`) // the head too
		}
		waitArchived(t, c, dsn, dir)
		sum := c.QueryString(t, dsn, checksumSQL("big"))
		b, err := basebackup.Synthesize(ctx, cat, synth, "big")
		if err != nil {
			t.Fatalf("%s: basebackup from the archive: %v", what, err)
		}
		// Its moment: one before its LSN, the last transaction it holds.
		moments = append(moments, moment{upTo: b.LSN - 1, sum: sum})
		reusedAny = reusedAny || len(reusedChunks(b)) > 0
		d.stop()

		mem.FailAfter(1 + rand.Int64N(span))
		ops := mem.Ops()
		_, perr := retention.Purge(ctx, cat, popts)
		cat.Close()
		if at := mem.CrashedAt(); at != "" {
			t.Logf("%s: crash at %s (purge: %v)", what, strings.ReplaceAll(at, dir+"/", ""), perr)
			mem.Crash()
		} else {
			mem.FailAfter(1 << 40)
			if perr != nil {
				t.Fatalf("%s: purge: %v", what, perr)
			}
			span = max(span, mem.Ops()-ops) // a whole purge's operations: crash points
			t.Logf("%s: the purge finished before its crash point, in %d operations (no crash)", what, mem.Ops()-ops)
		}

		vc := openOn(t, dir, mem, true, nil)
		_, err = vc.Verify(ctx, true)
		vc.Close()
		if err != nil {
			t.Errorf("%s: catalog verify after the crash: %v", what, err)
		}
		t.Logf("%s: %d of %d moments refused by the live catalog, %d by a rebuilt one", what,
			restores(what+", live catalog after the crash", dir), len(moments), restores(what+", catalog rebuilt after the crash", rebuilt(what)))

		// The next purge finishes the work.
		cat = openOn(t, dir, mem, false, nil)
		if _, err := retention.Purge(ctx, cat, popts); err != nil {
			t.Fatalf("%s: purge after the crash: %v", what, err)
		}
		left, err := cat.PurgeFiles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Errorf("%s: files left to remove after the next purge: %v", what, left)
		}
		kept, err := cat.Basebackups(ctx, b.TableID)
		if err != nil {
			t.Fatal(err)
		}
		held := map[string]bool{}
		for _, k := range kept {
			held[catalog.SidecarName(k.Path)] = true
			for _, f := range k.Files() {
				held[f.Path] = true
				if _, err := mem.Stat(filepath.Join(dir, f.Path)); err != nil {
					t.Errorf("%s: %s, which a kept basebackup lists, is gone: %v", what, f.Path, err)
				}
			}
		}
		entries, err := mem.ReadDir(filepath.Join(dir, "base", fmt.Sprint(b.TableID)))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if rel := filepath.Join("base", fmt.Sprint(b.TableID), e.Name()); strings.HasSuffix(rel, ".meta.json") && !held[rel] {
				t.Errorf("%s: the sidecar %s of a purged basebackup is still there", what, rel)
			}
		}
		if got, want := lsns(rebuilt(what+", finished")), lsns(dir); !slices.Equal(got, want) {
			t.Errorf("%s: a rebuilt catalog has basebackups at %X, the live one at %X", what, got, want)
		}
		restores(what+", after the next purge", dir)

		d = startCrashable(t, c, dsn, dir, slot, mem, mem, nil)
	}
	if !reusedAny {
		t.Errorf("no basebackup from the archive reused a chunk: the test did not test shared chunks")
	}
}

// crashPoints is the number of crashes a storm runs: LBT_CRASH_POINTS (make
// soak sets many), or def.
func crashPoints(t *testing.T, def int) int {
	t.Helper()
	s := os.Getenv("LBT_CRASH_POINTS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("LBT_CRASH_POINTS=%q: want a number of crashes, at least 1", s)
	}
	return n
}
