//go:build scale

package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/config"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// BenchmarkSyntheticScale (make bench-scale) times lbt basebackup
// --from-archive against a fresh lbt basebackup (default jobs) of the same
// table at the same moment, in one run: with 1% of the rows changed in the
// newest part of the table (updates of the last rows and as many new ones),
// where the chunks that hold no changed row are reused by reference, and
// with 1% changed spread over all of it, where every chunk is rewritten.
// Both use basebackupJobs' default (the number of cores, up to 4). Each
// is repeated LBT_BENCH_SYNTH_RUNS times (3) and the medians printed,
// with the chunks reused and the heap blocks of the table the source read
// during the synthetic one. LBT_BENCH_SYNTH_MB sets the table's size (256 MB
// of COPY text in rows of about 200 bytes), basebackupChunkSize is 16 MiB.
func BenchmarkSyntheticScale(b *testing.B) {
	mb := envInt("LBT_BENCH_SYNTH_MB", 256)
	runs := envInt("LBT_BENCH_SYNTH_RUNS", 3)
	rows := mb * 5 << 10 // rows of about 200 bytes
	const batch = 200_000
	ctx := context.Background()

	c := pgtest.Shared(b)
	dsn := c.NewDatabase(b)
	db := lbtrun.DBName(dsn)
	c.Exec(b, dsn, `CREATE TABLE syn (id bigint PRIMARY KEY, payload text NOT NULL)`)
	for lo := 1; lo <= rows; lo += batch {
		c.Exec(b, dsn, fmt.Sprintf(`INSERT INTO syn SELECT g, repeat(md5(g::text), 6) FROM generate_series(%d, %d) g`, lo, min(lo+batch-1, rows)))
	}
	c.Exec(b, dsn, `VACUUM ANALYZE syn`)
	size := c.QueryString(b, dsn, `SELECT pg_size_pretty(sum(length(t::text))) FROM syn t`)

	dir := b.TempDir()
	cfg := lbtrun.WriteConfig(b, c, db, dir, "bench_synth", "basebackupChunkSize: 16MiB")
	p := lbtrun.Start(b, "backup", "--config", cfg)
	waitMessage(b, c, dsn, dir, "ready", p)
	runCommand(b, "basebackup", "--config", cfg, "--table", "syn")

	// blocks is the count of the table's heap blocks read once it settled:
	// other sessions' statistics reach the view about a second after they
	// end, later under load (the fresh basebackup before may still be
	// coming in).
	blocks := func() int64 {
		read := func() (n int64) {
			fmt.Sscan(c.QueryString(b, dsn, `SELECT coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0) FROM pg_statio_user_tables WHERE relname = 'syn'`), &n)
			return n
		}
		n := read()
		for range 30 {
			time.Sleep(1500 * time.Millisecond)
			m := read()
			if m == n {
				break
			}
			n = m
		}
		return n
	}
	next := rows + 1
	token := 0
	type result struct {
		synth, fresh []float64
		cpu          []float64 // of the --from-archive command
		rss          []float64
		reused, all  int
		blocksRead   int64
	}
	scenario := func(change func() string) result {
		var r result
		for range runs {
			c.Exec(b, dsn, change())
			token++
			c.Exec(b, dsn, fmt.Sprintf(`SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'synth%d')`, token))
			waitMessage(b, c, dsn, dir, fmt.Sprintf("synth%d", token), p)
			before := blocks()
			s := runCommand(b, "basebackup", "--config", cfg, "--table", "syn", "--from-archive")
			r.blocksRead += blocks() - before
			f := runCommand(b, "basebackup", "--config", cfg, "--table", "syn")
			r.synth, r.fresh, r.rss = append(r.synth, s.took.Seconds()), append(r.fresh, f.took.Seconds()), append(r.rss, s.rss)
			r.cpu = append(r.cpu, s.cpu.Seconds())
			reused, all := lastSyntheticChunks(b, ctx, dir)
			r.reused, r.all = r.reused+reused, r.all+all
		}
		return r
	}
	tail := scenario(func() string {
		n := rows / 100
		q := fmt.Sprintf(`UPDATE syn SET payload = 'changed ' || id WHERE id >= %d;
			INSERT INTO syn SELECT g, repeat(md5(g::text), 6) FROM generate_series(%d, %d) g`, next-n/2, next, next+n/2-1)
		next += n / 2
		return q
	})
	spread := scenario(func() string {
		token := token
		return fmt.Sprintf(`UPDATE syn SET payload = 'spread %d ' || id WHERE id %% 100 = %d`, token, token%100)
	})
	profileSynthetic(b, ctx, os.Getenv("LBT_BENCH_CPUPROFILE_DIR"), dir, func() {
		token++
		c.Exec(b, dsn, fmt.Sprintf(`UPDATE syn SET payload = 'profiled %d ' || id WHERE id %% 100 = %d`, token, token%100))
		c.Exec(b, dsn, fmt.Sprintf(`SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'synth%d')`, token))
		waitMessage(b, c, dsn, dir, fmt.Sprintf("synth%d", token), p)
	})
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(b, time.Minute); code != 0 {
		b.Fatalf("lbt exited %d:\n%s", code, p.Output())
	}
	for _, s := range []struct {
		name string
		r    result
	}{{"in the newest part", tail}, {"spread over all of it", spread}} {
		ms, mf := median(s.r.synth), median(s.r.fresh)
		fmt.Printf("scale: %s of text, 1%% of rows changed %s: lbt basebackup --from-archive %.1f s (%.1f s of CPU, peak RSS %.0f MiB), fresh lbt basebackup %.1f s, both on %d jobs; from-archive/fresh = %.2f (medians of %d); chunks reused %d of %d; heap blocks of the table the source read during --from-archive: %d; load average %s\n",
			size, s.name, ms, median(s.r.cpu), median(s.r.rss), mf, config.DefaultBasebackupJobs(), ms/mf, runs, s.r.reused, s.r.all, s.r.blocksRead, loadAverage())
	}
}

// profileSynthetic writes a CPU profile (go tool pprof -top) of a
// basebackup from the archive taken in this process after change, spread
// over the table, when dir is not empty.
func profileSynthetic(b *testing.B, ctx context.Context, dir, archive string, change func()) {
	if dir == "" {
		return
	}
	change()
	cat, err := catalog.Open(ctx, archive)
	if err != nil {
		b.Fatal(err)
	}
	defer cat.Close()
	opts := basebackup.NewOptions()
	opts.ArchiveDir, opts.ChunkBytes, opts.Jobs = archive, 16<<20, config.DefaultBasebackupJobs()
	stop := startProfile(b, dir, "synthetic-spread.pprof")
	t0 := time.Now()
	if _, err := basebackup.Synthesize(ctx, cat, opts, "syn"); err != nil {
		b.Fatal(err)
	}
	stop()
	fmt.Printf("scale: profiled basebackup --from-archive (changes spread) %.1f s\n", time.Since(t0).Seconds())
}

// lastSyntheticChunks counts the chunks of the table's newest basebackup
// built from the archive, and those of them it reuses.
func lastSyntheticChunks(b *testing.B, ctx context.Context, dir string) (reused, all int) {
	b.Helper()
	cat, err := catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer cat.Close()
	ids, err := cat.FindTable(ctx, "public", "syn")
	if err != nil || len(ids) == 0 {
		b.Fatalf("table syn: %v", err)
	}
	bases, err := cat.Basebackups(ctx, ids[0])
	if err != nil {
		b.Fatal(err)
	}
	for _, bb := range slices.Backward(bases) {
		if !strings.HasSuffix(bb.Reason, basebackup.ReasonFromArchive) {
			continue
		}
		for k, f := range bb.Files() {
			if f.Path != catalog.ChunkName(bb.TableID, bb.LSN, k) {
				reused++
			}
		}
		return reused, len(bb.Files())
	}
	b.Fatal("no basebackup from the archive")
	return 0, 0
}
