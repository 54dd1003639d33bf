//go:build scale

package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
// It prints, in one run: basebackups by the command with 1 and 2 jobs
// against COPY t TO a file; the restore (with and without --verify), the
// checksum query on the source, restores by the command with 1 and 2 jobs,
// and a plain COPY of the table into an empty table with the same primary
// key; a basebackup from the archive with the heap blocks of the table the
// source read meanwhile; the peak RSS of each command.
func BenchmarkRestoreScale(b *testing.B) {
	mb := envInt("LBT_BENCH_SCALE_MB", 1280)
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
	// The command, with 1 and 2 jobs, against COPY TO a file.
	var baseJobs [2]command
	for j := range baseJobs {
		baseJobs[j] = runCommand(b, "basebackup", "--config", cfg, "--table", "bigt", "--jobs", fmt.Sprint(j+1))
	}
	copyOut := copyToFile(b, ctx, dsn, filepath.Join(b.TempDir(), "bigt.copy"))
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

	run := func(table string, verify bool) restore.Result {
		o := restore.NewOptions()
		o.Table, o.TargetTable, o.Verify = "bigt", table, verify
		var err error
		if o.TargetConn, err = pgconn.ParseConfig(target); err != nil {
			b.Fatal(err)
		}
		cat, err := catalog.OpenReadOnly(ctx, dir)
		if err != nil {
			b.Fatal(err)
		}
		defer cat.Close()
		res, err := restore.Run(ctx, cat, o)
		if err != nil {
			b.Fatalf("restore of %s of text: %v", size, err)
		}
		if res.Checksum != want || fmt.Sprint(res.Rows) != wantRows {
			b.Fatalf("restore: %d rows, checksum %s; the source has %s rows, checksum %s", res.Rows, res.Checksum, wantRows, want)
		}
		return res
	}
	b.ResetTimer()
	res := run("restored", false)
	b.StopTimer()
	ver := run("verified", true)

	// The floor: COPY of the source table into an empty table with the
	// same primary key, streamed from one server session to the other.
	src, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close(ctx)
	tc, err := pgconn.Connect(ctx, target)
	if err != nil {
		b.Fatal(err)
	}
	defer tc.Close(ctx)
	if err := tc.Exec(ctx, `CREATE TABLE floor (id bigint PRIMARY KEY, payload text NOT NULL)`).Close(); err != nil {
		b.Fatal(err)
	}
	t0 = time.Now()
	pr, pw := io.Pipe()
	go func() {
		_, err := src.CopyTo(ctx, pw, `COPY bigt TO STDOUT`)
		pw.CloseWithError(err)
	}()
	if _, err := tc.CopyFrom(ctx, pr, `COPY floor FROM STDIN`); err != nil {
		b.Fatal(err)
	}
	floorTime := time.Since(t0)

	// The command, with 1 and 2 jobs, from the same basebackup and changes.
	var restoreJobs [2]command
	for j := range restoreJobs {
		restoreJobs[j] = runCommand(b, "restore", "--config", cfg, "--table", "bigt", "--target-dsn", target,
			"--target-table", fmt.Sprintf("by_command_%d", j+1), "--jobs", fmt.Sprint(j+1), "--quiet")
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

	fmt.Printf("scale: %d rows, %s of text; basebackup %.1f s\n", res.Rows, size, baseTime.Seconds())
	fmt.Printf("scale: lbt basebackup --jobs 1 %.1f s (peak RSS %.0f MiB), --jobs 2 %.1f s (%.0f MiB); COPY bigt TO a file %.1f s; jobs 1/COPY = %.2f, 1 job/2 jobs = %.2f\n",
		baseJobs[0].took.Seconds(), baseJobs[0].rss, baseJobs[1].took.Seconds(), baseJobs[1].rss, copyOut.Seconds(),
		baseJobs[0].took.Seconds()/copyOut.Seconds(), baseJobs[0].took.Seconds()/baseJobs[1].took.Seconds())
	fmt.Printf("scale: restore %.1f s (COPY with the streamed checksum %.1f, keys %.1f), md5-sum64 %s equal to the source's\n",
		res.Duration.Seconds(), res.Timings.Load.Seconds(), res.Timings.Keys.Seconds(), res.Checksum)
	fmt.Printf("scale: restore --verify %.1f s (its checksum query on the target %.1f s); the checksum query on the source %.1f s\n",
		ver.Duration.Seconds(), ver.Timings.Checksum.Seconds(), sourceSum.Seconds())
	fmt.Printf("scale: plain COPY from the source into a table with its primary key %.1f s; restore/COPY = %.2f, with --verify %.2f\n",
		floorTime.Seconds(), res.Duration.Seconds()/floorTime.Seconds(), ver.Duration.Seconds()/floorTime.Seconds())
	fmt.Printf("scale: lbt restore --jobs 1 %.1f s (peak RSS %.0f MiB), --jobs 2 %.1f s (%.0f MiB); restore/COPY %.2f and %.2f, 1 job/2 jobs = %.2f\n",
		restoreJobs[0].took.Seconds(), restoreJobs[0].rss, restoreJobs[1].took.Seconds(), restoreJobs[1].rss,
		restoreJobs[0].took.Seconds()/floorTime.Seconds(), restoreJobs[1].took.Seconds()/floorTime.Seconds(),
		restoreJobs[0].took.Seconds()/restoreJobs[1].took.Seconds())
	fmt.Printf("scale: lbt basebackup --from-archive %.1f s (peak RSS %.0f MiB); heap blocks of bigt the source read meanwhile: %s before, %s after\n",
		synth.took.Seconds(), synth.rss, before, after)
	b.ReportMetric(res.Duration.Seconds(), "s/restore")
	b.ReportMetric(res.Duration.Seconds()/floorTime.Seconds(), "ratio-to-COPY")
}

// command is a run of lbt: how long it took and its peak RSS in MiB.
type command struct {
	took time.Duration
	rss  float64
}

func runCommand(b *testing.B, args ...string) command {
	b.Helper()
	t0 := time.Now()
	p := lbtrun.Start(b, args...)
	if code := p.Wait(b, time.Hour); code != 0 {
		b.Fatalf("lbt %s exited %d:\n%s", args[0], code, p.Output())
	}
	return command{took: time.Since(t0), rss: float64(p.MaxRSS()) / (1 << 20)}
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
	defer os.Remove(path)
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
