//go:build scale

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"lbt/catalog"
	"lbt/restore"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// BenchmarkRestoreScale (make bench-scale) restores a table whose text form
// is larger than PostgreSQL's 1 GB string limit (LBT_BENCH_SCALE_MB, 1280
// by default: 1.25 GB in rows of 1 KB), which the former sorted
// md5(string_agg) checksum could not restore at all, and checks the
// restore's streamed checksum against the documented query on the source.
// It prints, in one run, the medians of LBT_BENCH_SCALE_RUNS (3) rounds,
// each round running every contender once in turn so that the load of the
// machine falls on all of them alike:
//   - basebackups by the command with 1 and 2 jobs, against COPY t TO a
//     file and pg_dump -Fd -j 2;
//   - restores by the command with 1 and 2 jobs, against a plain COPY of
//     the same rows from a file into an empty table with the same primary
//     key (what psql's \copy does), and against pg_restore -j 2 of a
//     pg_dump -Fd of the same table;
//
// and, once: the restore in this process with its timings (and with
// --verify), the checksum query on the source, a basebackup from the
// archive with the heap blocks of the table the source read meanwhile, and
// the peak RSS of each command. LBT_BENCH_CPUPROFILE_DIR names a directory
// for CPU profiles (go tool pprof -top) of the restore and the basebackup
// in this process, with 1 and 2 jobs.
func BenchmarkRestoreScale(b *testing.B) {
	mb := envInt("LBT_BENCH_SCALE_MB", 1280)
	rounds := envInt("LBT_BENCH_SCALE_RUNS", 3)
	profiles := os.Getenv("LBT_BENCH_CPUPROFILE_DIR")
	rows := mb << 10 // rows of 1 KB
	const chunk = 100_000
	ctx := context.Background()

	c := pgtest.Shared(b)
	dsn := c.NewDatabase(b)
	target := c.NewDatabase(b)
	db := lbtrun.DBName(dsn)
	const ddl = `CREATE TABLE bigt (id bigint PRIMARY KEY, payload text NOT NULL)`
	c.Exec(b, dsn, ddl)
	start := time.Now()
	for lo := 1; lo <= rows; lo += chunk {
		// 1 KB of text per row that compresses as real data would (not a
		// single repeated byte).
		c.Exec(b, dsn, fmt.Sprintf(`INSERT INTO bigt SELECT g, repeat(md5(g::text) || md5((g * 7)::text), 16) FROM generate_series(%d, %d) g`, lo, min(lo+chunk-1, rows)))
	}
	c.Exec(b, dsn, `VACUUM ANALYZE bigt`)
	size := c.QueryString(b, dsn, `SELECT pg_size_pretty(sum(length(t::text))) FROM bigt t`)
	b.Logf("source: %d rows, %s of text, loaded in %v", rows, size, time.Since(start).Round(time.Second))

	dir := b.TempDir()
	cfg := lbtrun.WriteConfig(b, c, db, dir, "bench_scale")
	p := lbtrun.Start(b, "backup", "--config", cfg)
	waitMessage(b, c, dsn, dir, "ready", p)
	_, baseTime := takeBasebackup(b, ctx, dir, dsn, "bigt")
	profileBasebackups(b, ctx, profiles, dir, dsn)

	// Basebackups: the command, with 1 and 2 jobs, against COPY TO a file
	// and pg_dump -Fd -j 2.
	scratch := b.TempDir()
	var baseJobs [2][]command
	var copyOut, dumpOut []time.Duration
	pgDump := func(out string, jobs int) time.Duration {
		t0 := time.Now()
		run(b, c.BinDir()+"/pg_dump", "-Fd", "-j", fmt.Sprint(jobs), "-t", "bigt", "-f", out, "-h", c.SocketDir(), "-p", fmt.Sprint(c.Port()), "-U", "postgres", db)
		return time.Since(t0)
	}
	for range rounds {
		for j := range baseJobs {
			baseJobs[j] = append(baseJobs[j], runCommand(b, "basebackup", "--config", cfg, "--table", "bigt", "--jobs", fmt.Sprint(j+1)))
		}
		copyOut = append(copyOut, copyToFile(b, ctx, dsn, filepath.Join(scratch, "bigt.copy")))
		os.Remove(filepath.Join(scratch, "bigt.copy"))
		dumpOut = append(dumpOut, pgDump(filepath.Join(scratch, "dump"), 2))
		os.RemoveAll(filepath.Join(scratch, "dump"))
	}

	c.Exec(b, dsn, `UPDATE bigt SET payload = 'changed ' || id WHERE id % 1000 = 0`)
	c.Exec(b, dsn, `DELETE FROM bigt WHERE id % 1000 = 1`)
	c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'done')`)
	waitMessage(b, c, dsn, dir, "done", p)
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(b, time.Minute); code != 0 {
		b.Fatalf("lbt exited %d:\n%s", code, p.Output())
	}

	t0 := time.Now()
	wantRows := c.QueryString(b, dsn, `SELECT count(*) FROM bigt`)
	want := c.QueryString(b, dsn, "SELECT s FROM ("+restore.ChecksumSQL("bigt", []string{"id", "payload"})+") q (n, s)")
	sourceSum := time.Since(t0)
	// What the floor and pg_restore load: the table after the changes.
	final := filepath.Join(scratch, "final.copy")
	copyToFile(b, ctx, dsn, final)
	dump := filepath.Join(scratch, "dump")
	pgDump(dump, 2)

	runIn := func(table string, verify bool, jobs int, profile string) restore.Result {
		o := restore.NewOptions()
		o.Table, o.TargetTable, o.Verify, o.Jobs = "bigt", table, verify, jobs
		var err error
		if o.TargetConn, err = pgconn.ParseConfig(target); err != nil {
			b.Fatal(err)
		}
		cat, err := catalog.OpenReadOnly(ctx, dir)
		if err != nil {
			b.Fatal(err)
		}
		defer cat.Close()
		stop := startProfile(b, profiles, profile)
		res, err := restore.Run(ctx, cat, o)
		stop()
		if err != nil {
			b.Fatalf("restore of %s of text: %v", size, err)
		}
		if res.Checksum != want || fmt.Sprint(res.Rows) != wantRows {
			b.Fatalf("restore: %d rows, checksum %s; the source has %s rows, checksum %s", res.Rows, res.Checksum, wantRows, want)
		}
		return res
	}
	b.ResetTimer()
	res := runIn("restored", false, 1, "restore-jobs1.pprof")
	b.StopTimer()
	ver := runIn("verified", true, 1, "")
	if profiles != "" {
		runIn("restored_jobs2", false, 2, "restore-jobs2.pprof")
	}
	for _, t := range []string{"restored", "verified", "restored_jobs2"} {
		c.Exec(b, target, "DROP TABLE IF EXISTS "+t)
	}

	// Restores: the command with 1 and 2 jobs from the same basebackup
	// and changes; the floor, COPY of the final rows from a file into an
	// empty table with the same primary key; pg_restore -j 2 of the dump.
	tc, err := pgconn.Connect(ctx, target)
	if err != nil {
		b.Fatal(err)
	}
	defer tc.Close(ctx)
	var restoreJobs [2][]command
	var floor, pgRestore []time.Duration
	for range rounds {
		for j := range restoreJobs {
			table := fmt.Sprintf("by_command_%d", j+1)
			restoreJobs[j] = append(restoreJobs[j], runCommand(b, "restore", "--config", cfg, "--table", "bigt", "--target-dsn", target,
				"--target-table", table, "--jobs", fmt.Sprint(j+1), "--quiet"))
			c.Exec(b, target, "DROP TABLE "+table)
		}
		floor = append(floor, copyFromFile(b, ctx, tc, final))
		c.Exec(b, target, "DROP TABLE floor")
		t0 := time.Now()
		run(b, c.BinDir()+"/pg_restore", "-j", "2", "--no-owner", "-d", target, dump)
		pgRestore = append(pgRestore, time.Since(t0))
		if got := c.QueryString(b, target, `SELECT count(*) FROM bigt`); got != wantRows {
			b.Fatalf("pg_restore: %s rows, want %s", got, wantRows)
		}
		c.Exec(b, target, "DROP TABLE bigt")
	}

	// From the archive: the source is not even connected to; its count of
	// the table's heap blocks read (from disk or its cache) says so.
	blocks := func() string {
		time.Sleep(1500 * time.Millisecond) // other sessions' statistics reach the view within a second
		return c.QueryString(b, dsn, `SELECT coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0) FROM pg_statio_user_tables WHERE relname = 'bigt'`)
	}
	before := blocks()
	synth := runCommand(b, "basebackup", "--config", cfg, "--table", "bigt", "--from-archive")
	after := blocks()

	b1, b2 := medianCommand(baseJobs[0]), medianCommand(baseJobs[1])
	r1, r2 := medianCommand(restoreJobs[0]), medianCommand(restoreJobs[1])
	cp, pd, fl, pr := median(copyOut).Seconds(), median(dumpOut).Seconds(), median(floor).Seconds(), median(pgRestore).Seconds()
	fmt.Printf("scale: %d rows, %s of text; medians of %d rounds; load average %s\n", res.Rows, size, rounds, loadAverage())
	fmt.Printf("scale: basebackup (in this process, first) %.1f s\n", baseTime.Seconds())
	fmt.Printf("scale: lbt basebackup --jobs 1 %.1f s (peak RSS %.0f MiB), --jobs 2 %.1f s (%.0f MiB); COPY bigt TO a file %.1f s; pg_dump -Fd -j 2 %.1f s\n",
		b1.took.Seconds(), b1.rss, b2.took.Seconds(), b2.rss, cp, pd)
	fmt.Printf("scale: basebackup jobs 1/COPY = %.2f, jobs 2/COPY = %.2f, jobs 2/pg_dump = %.2f, 1 job/2 jobs = %.2f (goal >= 1.5); rounds: %s\n",
		b1.took.Seconds()/cp, b2.took.Seconds()/cp, b2.took.Seconds()/pd, b1.took.Seconds()/b2.took.Seconds(),
		rounds2(baseJobs[0], baseJobs[1], copyOut, dumpOut))
	fmt.Printf("scale: restore %.1f s (plan %.1f, changes %.1f, COPY with the streamed checksum %.1f, keys %.1f), md5-sum64 %s equal to the source's\n",
		res.Duration.Seconds(), res.Timings.Plan.Seconds(), res.Timings.Deltas.Seconds(), res.Timings.Load.Seconds(), res.Timings.Keys.Seconds(), res.Checksum)
	fmt.Printf("scale: restore --verify %.1f s (its checksum query on the target %.1f s); the checksum query on the source %.1f s\n",
		ver.Duration.Seconds(), ver.Timings.Checksum.Seconds(), sourceSum.Seconds())
	fmt.Printf("scale: lbt restore --jobs 1 %.1f s (peak RSS %.0f MiB, CPU %.1f s), --jobs 2 %.1f s (%.0f MiB, CPU %.1f s); plain COPY from a file into a table with its primary key %.1f s; pg_restore -j 2 %.1f s\n",
		r1.took.Seconds(), r1.rss, r1.cpu.Seconds(), r2.took.Seconds(), r2.rss, r2.cpu.Seconds(), fl, pr)
	fmt.Printf("scale: restore jobs 1/COPY = %.2f, jobs 2/COPY = %.2f (goal <= 1.2), jobs 2/pg_restore -j 2 = %.2f, 1 job/2 jobs = %.2f (goal >= 1.5); rounds: %s\n",
		r1.took.Seconds()/fl, r2.took.Seconds()/fl, r2.took.Seconds()/pr, r1.took.Seconds()/r2.took.Seconds(),
		rounds2(restoreJobs[0], restoreJobs[1], floor, pgRestore))
	fmt.Printf("scale: lbt basebackup --from-archive %.1f s (peak RSS %.0f MiB); heap blocks of bigt the source read meanwhile: %s before, %s after\n",
		synth.took.Seconds(), synth.rss, before, after)
	b.ReportMetric(r1.took.Seconds()/fl, "ratio-to-COPY")
	b.ReportMetric(r1.took.Seconds()/r2.took.Seconds(), "restore-1job/2jobs")
}

// profileBasebackups writes CPU profiles of basebackups of bigt with 1 and
// 2 jobs taken in this process, when dir is not empty.
func profileBasebackups(b *testing.B, ctx context.Context, dir, archive, dsn string) {
	if dir == "" {
		return
	}
	for _, jobs := range []int{1, 2} {
		stop := startProfile(b, dir, fmt.Sprintf("basebackup-jobs%d.pprof", jobs))
		_, took := takeBasebackupJobs(b, ctx, archive, dsn, "bigt", jobs)
		stop()
		fmt.Printf("scale: profiled basebackup --jobs %d %.1f s\n", jobs, took.Seconds())
	}
}

// command is a run of lbt: how long it took, its CPU time and its peak RSS
// in MiB.
type command struct {
	took, cpu time.Duration
	rss       float64
}

func runCommand(b *testing.B, args ...string) command {
	b.Helper()
	t0 := time.Now()
	p := lbtrun.Start(b, args...)
	if code := p.Wait(b, time.Hour); code != 0 {
		b.Fatalf("lbt %s exited %d:\n%s", args[0], code, p.Output())
	}
	return command{took: time.Since(t0), cpu: p.CPUTime(), rss: float64(p.MaxRSS()) / (1 << 20)}
}

// medianCommand is the run of median time, with the highest peak RSS of
// all runs.
func medianCommand(runs []command) command {
	var took []time.Duration
	var rss float64
	for _, r := range runs {
		took = append(took, r.took)
		rss = max(rss, r.rss)
	}
	m := median(took)
	for _, r := range runs {
		if r.took == m {
			return command{took: m, cpu: r.cpu, rss: rss}
		}
	}
	return command{}
}

// rounds2 lists each round's times of the two commands and two references,
// in seconds.
func rounds2(a, b []command, c, d []time.Duration) string {
	var out []string
	for i := range a {
		out = append(out, fmt.Sprintf("%.1f/%.1f/%.1f/%.1f", a[i].took.Seconds(), b[i].took.Seconds(), c[i].Seconds(), d[i].Seconds()))
	}
	return strings.Join(out, " ")
}

// copyToFile copies the table from the source into a file: the floor of a
// basebackup.
func copyToFile(b *testing.B, ctx context.Context, dsn, path string) time.Duration {
	b.Helper()
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	t0 := time.Now()
	if _, err := conn.CopyTo(ctx, f, `COPY bigt TO STDOUT`); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

// copyFromFile creates table floor with bigt's primary key and copies the
// file into it, in one transaction, as psql's \copy would: the floor of a
// restore.
func copyFromFile(b *testing.B, ctx context.Context, conn *pgconn.PgConn, path string) time.Duration {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	t0 := time.Now()
	for _, s := range []string{"BEGIN", `CREATE TABLE floor (id bigint PRIMARY KEY, payload text NOT NULL)`} {
		if err := conn.Exec(ctx, s).Close(); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := conn.CopyFrom(ctx, f, `COPY floor FROM STDIN`); err != nil {
		b.Fatal(err)
	}
	if err := conn.Exec(ctx, "COMMIT").Close(); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}
