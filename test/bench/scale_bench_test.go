//go:build scale

package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pierrec/lz4/v4"

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
// the peak RSS of each command. For each command and reference it prints
// where the CPU went: lbt's own, each new server backend's, the server's
// other processes', and the whole machine's (other users included), so
// that what two jobs can gain on two cores is known: a run that needs C
// seconds of CPU takes at least C/2 seconds.
//
// LBT_BENCH_CPUPROFILE_DIR names a directory for CPU profiles (go tool
// pprof -top) of the restore and the basebackup in this process, with 1
// and 2 jobs. LBT_BENCH_COMPARE names other lbt builds whose restores run
// in the same rounds. LBT_BENCH_SCALE_RUNS=0 runs no rounds: the restore
// in this process and --from-archive only.
//
// A disk without room for about five times the table's text (the source,
// two restored copies, the text in files) over the 8 GiB the run leaves
// free selects the low-disk mode (LBT_BENCH_SCALE_LOWDISK=1 or 0 chooses):
// the files are lz4-compressed, each basebackup is purged once a newer one
// is taken, the source table is dropped once its row
// count, checksum and final rows are taken, each restored copy is dropped
// once checked, and pg_dump, pg_restore and the --verify round are left
// out. Between steps the run stops if less than 8 GiB is free.
func BenchmarkRestoreScale(b *testing.B) {
	mb := envInt("LBT_BENCH_SCALE_MB", 1280)
	rounds := envInt("LBT_BENCH_SCALE_RUNS", 3)
	if os.Getenv("LBT_BENCH_SCALE_RUNS") == "0" {
		rounds = 0
	}
	profiles := os.Getenv("LBT_BENCH_CPUPROFILE_DIR")
	rows := mb << 10 // rows of 1 KB
	const chunk = 100_000
	ctx := context.Background()

	c := pgtest.Shared(b)
	lowDisk := lowDiskMode(b, c.DataDir(), int64(mb)<<20)
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
		if lo/chunk%20 == 0 {
			checkDisk(b, c.DataDir(), "loading the source")
		}
	}
	c.Exec(b, dsn, `VACUUM ANALYZE bigt`)
	sizeSQL := `SELECT pg_size_pretty(sum(length(t::text))) FROM bigt t`
	if lowDisk {
		// A table that large is read from disk: a 1% sample saves a scan.
		sizeSQL = `SELECT 'about ' || pg_size_pretty(100 * sum(length(t::text))) FROM bigt t TABLESAMPLE SYSTEM (1)`
	}
	size := c.QueryString(b, dsn, sizeSQL)
	heap := c.QueryString(b, dsn, `SELECT pg_size_pretty(pg_total_relation_size('bigt'))`)
	b.Logf("source: %d rows, %s of text (%s on disk), loaded in %v", rows, size, heap, time.Since(start).Round(time.Second))
	checkDisk(b, c.DataDir(), "loading the source")

	dir := b.TempDir()
	cfg := lbtrun.WriteConfig(b, c, db, dir, "bench_scale")
	keepOne := lbtrun.WriteConfig(b, c, db, dir, "bench_scale", "retentionBasebackups: 1")
	p := lbtrun.Start(b, "backup", "--config", cfg)
	waitMessage(b, c, dsn, dir, "ready", p)
	_, baseTime := takeBasebackup(b, ctx, dir, dsn, "bigt")
	fmt.Printf("scale: basebackup (in this process, first) %.1f s; load average %s\n", baseTime.Seconds(), loadAverage())
	profileBasebackups(b, ctx, profiles, dir, dsn)

	// Basebackups: the command, with 1 and 2 jobs, against COPY TO a file
	// and pg_dump -Fd -j 2. With little disk, the file is lz4-compressed
	// as it is written, like a basebackup's, and pg_dump is not run.
	scratch := b.TempDir()
	var baseJobs [2][]command
	var copyOut, dumpOut []time.Duration
	var copyOutCPU serverCPU
	var copyOutClient time.Duration
	pgDump := func(out string, jobs int) time.Duration {
		t0 := time.Now()
		run(b, c.BinDir()+"/pg_dump", "-Fd", "-j", fmt.Sprint(jobs), "-t", "bigt", "-f", out, "-h", c.SocketDir(), "-p", fmt.Sprint(c.Port()), "-U", "postgres", db)
		return time.Since(t0)
	}
	for range rounds {
		for j := range baseJobs {
			baseJobs[j] = append(baseJobs[j], runSampled(b, c, lbtrun.Binary(b), "basebackup", "--config", cfg, "--table", "bigt", "--jobs", fmt.Sprint(j+1)))
			if lowDisk {
				// The restores need only the newest basebackup.
				runCommand(b, "purge", "--config", keepOne)
			}
			checkDisk(b, c.DataDir(), "basebackups")
		}
		stop, client := sampleServer(b, c), selfCPU()
		copyOut = append(copyOut, copyToFile(b, ctx, dsn, filepath.Join(scratch, "bigt.copy"), lowDisk))
		copyOutCPU, copyOutClient = stop(), selfCPU()-client
		os.Remove(filepath.Join(scratch, "bigt.copy"))
		if !lowDisk {
			dumpOut = append(dumpOut, pgDump(filepath.Join(scratch, "dump"), 2))
			os.RemoveAll(filepath.Join(scratch, "dump"))
		}
	}

	// The rows with id % 1000 = 0 and 1, found by the primary key rather
	// than by a scan of the table.
	c.Exec(b, dsn, fmt.Sprintf(`UPDATE bigt SET payload = 'changed ' || id WHERE id IN (SELECT generate_series(1000, %d, 1000))`, rows))
	c.Exec(b, dsn, fmt.Sprintf(`DELETE FROM bigt WHERE id IN (SELECT generate_series(1, %d, 1000))`, rows))
	c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'done')`)
	waitMessage(b, c, dsn, dir, "done", p)
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(b, time.Minute); code != 0 {
		b.Fatalf("lbt exited %d:\n%s", code, p.Output())
	}
	// Nothing below streams again: the slot would only hold the WAL of
	// every restore into the same server.
	c.Exec(b, dsn, `SELECT pg_drop_replication_slot('bench_scale')`)

	t0 := time.Now()
	wantRows, want, _ := strings.Cut(c.QueryString(b, dsn, "SELECT n || ' ' || s FROM ("+restore.ChecksumSQL("bigt", []string{"id", "payload"})+") q (n, s)"), " ")
	sourceSum := time.Since(t0)
	// What the floor and pg_restore load: the table after the changes.
	final := filepath.Join(scratch, "final.copy")
	dump := filepath.Join(scratch, "dump")
	if rounds > 0 {
		copyToFile(b, ctx, dsn, final, lowDisk)
	}
	if !lowDisk && rounds > 0 {
		pgDump(dump, 2)
	}
	if lowDisk {
		// The restores need the room: the source table has given its
		// count, its checksum and its final rows, and nothing below reads
		// it.
		c.Exec(b, dsn, `DROP TABLE bigt`)
		c.Exec(b, dsn, `CHECKPOINT`)
	}
	checkDisk(b, c.DataDir(), "the final rows")

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
		stop, server, client := startProfile(b, profiles, profile), sampleServer(b, c), selfCPU()
		res, err := restore.Run(ctx, cat, o)
		stop()
		fmt.Println(cpuLine(fmt.Sprintf("restore --jobs %d in this process (lbt is this process)", jobs), res.Duration, selfCPU()-client, server()))
		if err != nil {
			b.Fatalf("restore of %s of text: %v", size, err)
		}
		if res.Checksum != want || fmt.Sprint(res.Rows) != wantRows {
			b.Fatalf("restore: %d rows, checksum %s; the source has %s rows, checksum %s", res.Rows, res.Checksum, wantRows, want)
		}
		// Each restored copy is dropped once checked, so that at most one
		// is on disk at a time.
		checkDisk(b, c.DataDir(), "a restore")
		c.Exec(b, target, "DROP TABLE "+table)
		return res
	}
	b.ResetTimer()
	res := runIn("restored", false, 1, "restore-jobs1.pprof")
	b.StopTimer()
	fmt.Printf("scale: restore %.1f s (plan %.1f, changes %.1f, COPY with the streamed checksum %.1f, keys %.1f), %d rows, md5-sum64 %s equal to the source's; load average %s\n",
		res.Duration.Seconds(), res.Timings.Plan.Seconds(), res.Timings.Deltas.Seconds(), res.Timings.Load.Seconds(), res.Timings.Keys.Seconds(), res.Rows, res.Checksum, loadAverage())
	var ver restore.Result
	if !lowDisk {
		ver = runIn("verified", true, 1, "")
	}
	if profiles != "" {
		runIn("restored_jobs2", false, 2, "restore-jobs2.pprof")
	}

	// Restores: the command with 1 and 2 jobs from the same basebackup
	// and changes; the floor, COPY of the final rows from a file into an
	// empty table with the same primary key; pg_restore -j 2 of the dump.
	// LBT_BENCH_COMPARE names other lbt builds (comma-separated, of the
	// same archive format) whose restores run in the same rounds.
	builds := []string{lbtrun.Binary(b)}
	if v := os.Getenv("LBT_BENCH_COMPARE"); v != "" {
		builds = append(builds, strings.Split(v, ",")...)
	}
	restores := make([][2][]command, len(builds)) // by build, by jobs - 1
	var floor, pgRestore []time.Duration
	var floorCPU serverCPU
	var floorClient time.Duration
	for range rounds {
		for k, build := range builds {
			for j := range restores[k] {
				table := fmt.Sprintf("by_command_%d", j+1)
				restores[k][j] = append(restores[k][j], runSampled(b, c, build, "restore", "--config", cfg, "--table", "bigt", "--target-dsn", target,
					"--target-table", table, "--jobs", fmt.Sprint(j+1), "--quiet"))
				checkDisk(b, c.DataDir(), "a restore")
				c.Exec(b, target, "DROP TABLE "+table)
			}
		}
		stop, client := sampleServer(b, c), selfCPU()
		tc, err := pgconn.Connect(ctx, target)
		if err != nil {
			b.Fatal(err)
		}
		floor = append(floor, copyFromFile(b, ctx, tc, final, lowDisk))
		tc.Close(ctx)
		floorCPU, floorClient = stop(), selfCPU()-client
		if got := c.QueryString(b, target, `SELECT count(*) FROM floor`); got != wantRows {
			b.Fatalf("COPY from the file: %s rows, want %s", got, wantRows)
		}
		c.Exec(b, target, "DROP TABLE floor")
		if lowDisk {
			continue
		}
		t0 := time.Now()
		run(b, c.BinDir()+"/pg_restore", "-j", "2", "--no-owner", "-d", target, dump)
		pgRestore = append(pgRestore, time.Since(t0))
		if got := c.QueryString(b, target, `SELECT count(*) FROM bigt`); got != wantRows {
			b.Fatalf("pg_restore: %s rows, want %s", got, wantRows)
		}
		c.Exec(b, target, "DROP TABLE bigt")
	}

	// From the archive: the source is not even connected to; its count of
	// the table's heap blocks read (from disk or its cache) says so. With
	// little disk the source table is gone by now, which says it better.
	blocks := func() string {
		if lowDisk {
			return "none (the table was dropped)"
		}
		time.Sleep(1500 * time.Millisecond) // other sessions' statistics reach the view within a second
		return c.QueryString(b, dsn, `SELECT coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0) FROM pg_statio_user_tables WHERE relname = 'bigt'`)
	}
	before := blocks()
	synth := runCommand(b, "basebackup", "--config", cfg, "--table", "bigt", "--from-archive")
	after := blocks()
	fmt.Printf("scale: %d rows, %s of text (%s on disk); medians of %d rounds; load average %s\n", res.Rows, size, heap, rounds, loadAverage())
	fmt.Printf("scale: lbt basebackup --from-archive %.1f s (peak RSS %.0f MiB); heap blocks of bigt the source read meanwhile: %s before, %s after\n",
		synth.took.Seconds(), synth.rss, before, after)
	if rounds == 0 {
		return // LBT_BENCH_SCALE_RUNS=0: the restore in this process and --from-archive only
	}

	b1, b2 := medianCommand(baseJobs[0]), medianCommand(baseJobs[1])
	restoreJobs := restores[0]
	r1, r2 := medianCommand(restoreJobs[0]), medianCommand(restoreJobs[1])
	cp, fl := median(copyOut).Seconds(), median(floor).Seconds()
	pd, pr := math.NaN(), math.NaN()
	if !lowDisk {
		pd, pr = median(dumpOut).Seconds(), median(pgRestore).Seconds()
	}
	copyTo, copyFrom := "COPY bigt TO a file", "plain COPY from a file into a table with its primary key"
	if lowDisk {
		copyTo, copyFrom = "COPY bigt TO an lz4 file", "plain COPY from an lz4 file into a table with its primary key"
		fmt.Printf("scale: low-disk mode: one table of this size on disk at a time (source, then each restored copy), files lz4-compressed, no pg_dump/pg_restore and no --verify round\n")
	}
	fmt.Printf("scale: lbt basebackup --jobs 1 %.1f s (peak RSS %.0f MiB), --jobs 2 %.1f s (%.0f MiB); %s %.1f s; pg_dump -Fd -j 2 %.1f s\n",
		b1.took.Seconds(), b1.rss, b2.took.Seconds(), b2.rss, copyTo, cp, pd)
	fmt.Printf("scale: basebackup jobs 1/COPY = %.2f, jobs 2/COPY = %.2f, jobs 2/pg_dump = %.2f, 1 job/2 jobs = %.2f (goal >= 1.5); rounds: %s\n",
		b1.took.Seconds()/cp, b2.took.Seconds()/cp, b2.took.Seconds()/pd, b1.took.Seconds()/b2.took.Seconds(),
		rounds2(baseJobs[0], baseJobs[1], copyOut, dumpOut))
	fmt.Printf("scale: restore --verify %.1f s (its checksum query on the target %.1f s); the checksum query on the source %.1f s\n",
		ver.Duration.Seconds(), ver.Timings.Checksum.Seconds(), sourceSum.Seconds())
	fmt.Printf("scale: lbt restore --jobs 1 %.1f s (peak RSS %.0f MiB, CPU %.1f s), --jobs 2 %.1f s (%.0f MiB, CPU %.1f s); %s %.1f s; pg_restore -j 2 %.1f s\n",
		r1.took.Seconds(), r1.rss, r1.cpu.Seconds(), r2.took.Seconds(), r2.rss, r2.cpu.Seconds(), copyFrom, fl, pr)
	fmt.Printf("scale: restore jobs 1/COPY = %.2f, jobs 2/COPY = %.2f (goal <= 1.2), jobs 2/pg_restore -j 2 = %.2f, 1 job/2 jobs = %.2f (goal >= 1.5); rounds: %s\n",
		r1.took.Seconds()/fl, r2.took.Seconds()/fl, r2.took.Seconds()/pr, r1.took.Seconds()/r2.took.Seconds(),
		rounds2(restoreJobs[0], restoreJobs[1], floor, pgRestore))
	// Where the CPU went, in the median round of each: whether one job
	// already keeps both cores busy, and so how much faster two could be.
	fmt.Println(cpuLine("lbt basebackup --jobs 1", b1.took, b1.cpu, b1.server))
	fmt.Println(cpuLine("lbt basebackup --jobs 2", b2.took, b2.cpu, b2.server))
	fmt.Println(cpuLine(copyTo+" (last round; lbt is this process)", copyOut[len(copyOut)-1], copyOutClient, copyOutCPU))
	fmt.Println(cpuLine("lbt restore --jobs 1", r1.took, r1.cpu, r1.server))
	fmt.Println(cpuLine("lbt restore --jobs 2", r2.took, r2.cpu, r2.server))
	fmt.Println(cpuLine(copyFrom+" (last round; lbt is this process)", floor[len(floor)-1], floorClient, floorCPU))
	for k, build := range builds[1:] {
		c1, c2 := medianCommand(restores[k+1][0]), medianCommand(restores[k+1][1])
		fmt.Printf("scale: compare %s: lbt restore --jobs 1 %.1f s, --jobs 2 %.1f s, 1 job/2 jobs = %.2f; this build/that build: --jobs 1 %.2f, --jobs 2 %.2f; rounds: %s\n",
			build, c1.took.Seconds(), c2.took.Seconds(), c1.took.Seconds()/c2.took.Seconds(), r1.took.Seconds()/c1.took.Seconds(), r2.took.Seconds()/c2.took.Seconds(),
			rounds2(restores[k+1][0], restores[k+1][1], floor, nil))
		fmt.Println(cpuLine("that build's restore --jobs 1", c1.took, c1.cpu, c1.server))
		fmt.Println(cpuLine("that build's restore --jobs 2", c2.took, c2.cpu, c2.server))
	}
	b.ReportMetric(r1.took.Seconds()/fl, "ratio-to-COPY")
	b.ReportMetric(r1.took.Seconds()/r2.took.Seconds(), "restore-1job/2jobs")
}

// lowDiskMode says whether the disk under dir lacks room for a run that
// keeps, at one time, the source table, two restored copies and the
// table's text in files: about five times the text, with the server's
// WAL, over the minFree the run must leave. LBT_BENCH_SCALE_LOWDISK=1 or
// 0 chooses instead.
func lowDiskMode(b *testing.B, dir string, text int64) bool {
	if v := os.Getenv("LBT_BENCH_SCALE_LOWDISK"); v != "" {
		return v == "1"
	}
	return freeBytes(b, dir) < 5*text+minFree
}

// minFree is the free disk space the run stops at: the machine is shared.
const minFree = 8 << 30

// checkDisk stops the run, which then removes its data, when the disk
// under dir has less than minFree left.
func checkDisk(b *testing.B, dir, during string) {
	b.Helper()
	if free := freeBytes(b, dir); free < minFree {
		b.Fatalf("%s: %.1f GiB free on the disk of %s, under the %d GiB the run leaves; set LBT_BENCH_SCALE_LOWDISK=1 or a smaller LBT_BENCH_SCALE_MB", during, float64(free)/(1<<30), dir, minFree>>30)
	}
}

func freeBytes(b *testing.B, dir string) int64 {
	b.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		b.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
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
	server    serverCPU
}

func runCommand(b *testing.B, args ...string) command {
	b.Helper()
	return runBinary(b, lbtrun.Binary(b), args...)
}

// runBinary is runCommand with another build of lbt.
func runBinary(b *testing.B, binary string, args ...string) command {
	b.Helper()
	t0 := time.Now()
	p := lbtrun.StartBinary(b, binary, args...)
	if code := p.Wait(b, time.Hour); code != 0 {
		b.Fatalf("lbt %s exited %d:\n%s", args[0], code, p.Output())
	}
	return command{took: time.Since(t0), cpu: p.CPUTime(), rss: float64(p.MaxRSS()) / (1 << 20)}
}

// runSampled is runBinary with the CPU time c's server used meanwhile.
func runSampled(b *testing.B, c *pgtest.Cluster, binary string, args ...string) command {
	b.Helper()
	stop := sampleServer(b, c)
	cmd := runBinary(b, binary, args...)
	cmd.server = stop()
	return cmd
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
			r.rss = rss
			return r
		}
	}
	return command{}
}

// rounds2 lists each round's times of the two commands and two references,
// in seconds; a reference not run is "-".
func rounds2(a, b []command, c, d []time.Duration) string {
	var out []string
	for i := range a {
		last := "-"
		if i < len(d) {
			last = fmt.Sprintf("%.1f", d[i].Seconds())
		}
		out = append(out, fmt.Sprintf("%.1f/%.1f/%.1f/%s", a[i].took.Seconds(), b[i].took.Seconds(), c[i].Seconds(), last))
	}
	return strings.Join(out, " ")
}

// copyToFile copies the table from the source into a file, lz4-compressed
// if asked: the floor of a basebackup.
func copyToFile(b *testing.B, ctx context.Context, dsn, path string, compressed bool) time.Duration {
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
	var w io.Writer = f
	zw := lz4.NewWriter(f)
	if compressed {
		w = zw
	}
	if _, err := conn.CopyTo(ctx, w, `COPY bigt TO STDOUT`); err != nil {
		b.Fatal(err)
	}
	if compressed {
		if err := zw.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

// copyFromFile creates table floor with bigt's primary key and copies the
// file (lz4-compressed if so written) into it, in one transaction, as psql's \copy would: the floor of a
// restore.
func copyFromFile(b *testing.B, ctx context.Context, conn *pgconn.PgConn, path string, compressed bool) time.Duration {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if compressed {
		r = lz4.NewReader(f)
	}
	t0 := time.Now()
	for _, s := range []string{"BEGIN", `CREATE TABLE floor (id bigint PRIMARY KEY, payload text NOT NULL)`} {
		if err := conn.Exec(ctx, s).Close(); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := conn.CopyFrom(ctx, r, `COPY floor FROM STDIN`); err != nil {
		b.Fatal(err)
	}
	if err := conn.Exec(ctx, "COMMIT").Close(); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

// serverCPU is the CPU time the PostgreSQL server used while one command
// ran: each backend that started meanwhile (the command's connections),
// and the server's other processes (checkpointer, WAL writer, autovacuum,
// backends that were there before) together. The figures come from
// /proc/<pid>/schedstat sampled every cpuSampleInterval, so a backend's
// last interval before it exits can be missed: they are lower bounds.
// busy is the CPU time the whole machine used, other users included.
type serverCPU struct {
	backends []schedTime // most CPU first
	other    time.Duration
	busy     time.Duration
	// waits counts, over the samples of the new backends that were
	// active, each wait event pg_stat_activity showed ("CPU": none, so
	// running or waiting for a CPU).
	waits map[string]int
}

// schedTime is how long a process ran on a CPU, and how long it was
// ready to run but waited for one (the run queue): the rest of its life it
// was blocked (on I/O, a lock, or its client).
type schedTime struct{ run, wait time.Duration }

// total is the server's CPU time, all processes.
func (s serverCPU) total() time.Duration {
	t := s.other
	for _, b := range s.backends {
		t += b.run
	}
	return t
}

func (s serverCPU) String() string {
	var bs []string
	for _, b := range s.backends {
		bs = append(bs, fmt.Sprintf("%.1f (%.1f queued)", b.run.Seconds(), b.wait.Seconds()))
	}
	if len(bs) == 0 {
		bs = []string{"none"}
	}
	return fmt.Sprintf("server %.1f s (new backends %s, other server processes %.1f; the new backends' wait events %s)", s.total().Seconds(), strings.Join(bs, "+"), s.other.Seconds(), s.waitShares())
}

// waitShares lists the wait events of the new backends by their share of
// the samples, largest first.
func (s serverCPU) waitShares() string {
	var n int
	var events []string
	for e, k := range s.waits {
		n += k
		events = append(events, e)
	}
	if n == 0 {
		return "none sampled"
	}
	slices.SortFunc(events, func(a, b string) int { return s.waits[b] - s.waits[a] })
	var out []string
	for _, e := range events {
		out = append(out, fmt.Sprintf("%s %.0f%%", e, 100*float64(s.waits[e])/float64(n)))
	}
	return strings.Join(out, ", ")
}

const cpuSampleInterval = 200 * time.Millisecond

// sampleServer starts sampling the CPU time of c's server processes; the
// function it returns stops and reports what they used since.
func sampleServer(b *testing.B, c *pgtest.Cluster) (stop func() serverCPU) {
	b.Helper()
	data, err := os.ReadFile(filepath.Join(c.DataDir(), "postmaster.pid"))
	if err != nil {
		b.Fatal(err)
	}
	postmaster, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]))
	if err != nil {
		b.Fatalf("postmaster.pid: %v", err)
	}
	conn, err := pgconn.Connect(context.Background(), c.DSN("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	start := serverProcesses(postmaster)
	busy0 := machineBusy()
	last := make(map[int]schedTime)
	for pid, t := range start {
		last[pid] = t
	}
	waits := make(map[string]int)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(cpuSampleInterval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			for pid, t := range serverProcesses(postmaster) {
				last[pid] = t
			}
			sampleWaits(conn, start, waits)
		}
	}()
	return func() serverCPU {
		close(done)
		<-exited
		conn.Close(context.Background())
		for pid, t := range serverProcesses(postmaster) {
			last[pid] = t
		}
		s := serverCPU{waits: waits}
		s.busy = machineBusy() - busy0
		for pid, t := range last {
			if t0, ok := start[pid]; ok {
				s.other += t.run - t0.run
			} else {
				s.backends = append(s.backends, t)
			}
		}
		slices.SortFunc(s.backends, func(a, b schedTime) int { return int(b.run - a.run) })
		return s
	}
}

// sampleWaits counts the wait event of each active client backend not in
// old.
func sampleWaits(conn *pgconn.PgConn, old map[int]schedTime, waits map[string]int) {
	res := conn.ExecParams(context.Background(), `SELECT pid, coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()`, nil, nil, nil, nil)
	for res.NextRow() {
		pid, _ := strconv.Atoi(string(res.Values()[0]))
		if _, ok := old[pid]; !ok {
			waits[string(res.Values()[1])]++
		}
	}
	res.Close()
}

// serverProcesses is the scheduling times of the postmaster and each of
// its children by process id.
func serverProcesses(postmaster int) map[int]schedTime {
	out := make(map[int]schedTime)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pid != postmaster && parentPID(pid) != postmaster {
			continue
		}
		if t, ok := scheduled(pid); ok {
			out[pid] = t
		}
	}
	return out
}

// parentPID reads the parent's id from /proc/<pid>/stat, whose second
// field (the command in parentheses) may hold spaces.
func parentPID(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// scheduled is the time a (single-threaded) process ran and waited to
// run, the first two fields of /proc/<pid>/schedstat, in nanoseconds.
func scheduled(pid int) (schedTime, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return schedTime{}, false
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return schedTime{}, false
	}
	run, err1 := strconv.ParseInt(f[0], 10, 64)
	wait, err2 := strconv.ParseInt(f[1], 10, 64)
	return schedTime{time.Duration(run), time.Duration(wait)}, err1 == nil && err2 == nil
}

// machineBusy is the CPU time all cores of the machine spent outside idle
// and I/O wait since boot, from /proc/stat (in USER_HZ ticks of 10 ms).
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// cpuLine describes where the CPU of one command went: its own, the
// server's, and the floor two cores put under a run that used as much.
func cpuLine(name string, took, own time.Duration, server serverCPU) string {
	total := own + server.total()
	line := fmt.Sprintf("scale: cpu %s: %.1f s; lbt %.1f s CPU, %s; together %.1f s = %.2f cores busy; the machine (all users) %.2f cores busy; %.1f s CPU on 2 cores takes at least %.1f s",
		name, took.Seconds(), own.Seconds(), server, total.Seconds(), total.Seconds()/took.Seconds(),
		server.busy.Seconds()/took.Seconds(), total.Seconds(), total.Seconds()/2)
	if len(server.backends) > 0 {
		// A command's backends live about as long as it runs.
		b := server.backends[0]
		line += fmt.Sprintf("; the busiest backend ran %.0f%% of the time, queued for a CPU %.0f%%, blocked %.0f%%",
			100*b.run.Seconds()/took.Seconds(), 100*b.wait.Seconds()/took.Seconds(), 100*(took-b.run-b.wait).Seconds()/took.Seconds())
	}
	return line
}

// selfCPU is the user and system time this process used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
