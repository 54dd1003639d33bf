package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/catalog"
	"lbt/restore"
	"lbt/schema"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// BenchmarkRestore restores a table of LBT_BENCH_RESTORE_ROWS rows (1
// million by default) in its basebackup with as many row changes after it
// (updates, some of them twice, deletes and inserts), and compares the time
// with, in the same run: (a) the floor, a plain COPY of the final table
// into an empty table with the same primary key; (b) the naive way,
// replaying the same changes as one SQL statement each through one session.
// (b) runs on a sample of the changes (LBT_BENCH_RESTORE_SAMPLE, 50,000)
// and is extrapolated to all of them. LBT_BENCH_RESTORE_WIDTH pads each
// row's text column to about that many bytes (default: 41, a narrow row).
// The restore's checksum is computed as the rows stream (included in its
// time); the --verify pass and the former sorted md5 are timed apart.
// LBT_BENCH_CPUPROFILE_DIR names a directory for a CPU profile of the
// restore (restore-narrow.pprof, for go tool pprof -top).
func BenchmarkRestore(b *testing.B) {
	rows := envInt("LBT_BENCH_RESTORE_ROWS", 1_000_000)
	sample := envInt("LBT_BENCH_RESTORE_SAMPLE", 50_000)
	pad := max(envInt("LBT_BENCH_RESTORE_WIDTH", 41)-41, 0)
	const chunk = 100_000
	ctx := context.Background()

	c := pgtest.Shared(b)
	dsn := c.NewDatabase(b)
	target := c.NewDatabase(b)
	db := lbtrun.DBName(dsn)
	c.Exec(b, dsn, `CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL, name text NOT NULL)`)
	dir := b.TempDir()
	cfg := lbtrun.WriteConfig(b, c, db, dir, "bench_restore", "deltasPerFile: 1000000")
	p := lbtrun.Start(b, "backup", "--config", cfg)
	waitMessage(b, c, dsn, dir, "ready", p)

	inChunks := func(from, to int, stmt string) {
		for lo := from; lo <= to; lo += chunk {
			c.Exec(b, dsn, fmt.Sprintf(stmt, lo, min(lo+chunk-1, to)))
		}
	}
	start := time.Now()
	inChunks(1, rows, `INSERT INTO acct SELECT g, g %% 1000, 'customer ' || md5(g::text) || repeat('x', `+fmt.Sprint(pad)+`) FROM generate_series(%d, %d) g`)
	c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'loaded')`)
	waitMessage(b, c, dsn, dir, "loaded", p)
	base, _ := takeBasebackup(b, ctx, dir, dsn, "acct")

	// As many row changes as rows: 30% of the rows updated twice, 20%
	// deleted, and as many new rows inserted.
	upd, del := rows*3/10, rows/5
	inChunks(1, upd, `UPDATE acct SET balance = balance + 1 WHERE id BETWEEN %d AND %d`)
	inChunks(1, upd, `UPDATE acct SET balance = balance * 2, name = name || '!' WHERE id BETWEEN %d AND %d`)
	inChunks(rows-del+1, rows, `DELETE FROM acct WHERE id BETWEEN %d AND %d`)
	inChunks(rows+1, rows+del, `INSERT INTO acct SELECT g, 7, 'new ' || g FROM generate_series(%d, %d) g`)
	c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'done')`)
	waitMessage(b, c, dsn, dir, "done", p)
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(b, time.Minute); code != 0 {
		b.Fatalf("lbt exited %d:\n%s", code, p.Output())
	}
	changes := 2*upd + 2*del
	b.Logf("workload: %d rows, basebackup, %d changes, archived in %v", rows, changes, time.Since(start).Round(time.Second))
	wantSum := c.QueryString(b, dsn, `SELECT md5(string_agg(t::text, E'\n' ORDER BY t::text)) FROM acct t`)

	restoreOpts := func(table string) restore.Options {
		o := restore.NewOptions()
		o.Table = "acct"
		o.TargetTable = table
		var err error
		if o.TargetConn, err = pgconn.ParseConfig(target); err != nil {
			b.Fatal(err)
		}
		return o
	}
	runRestore := func(o restore.Options) restore.Result {
		cat, err := catalog.OpenReadOnly(ctx, dir)
		if err != nil {
			b.Fatal(err)
		}
		defer cat.Close()
		res, err := restore.Run(ctx, cat, o)
		if err != nil {
			b.Fatal(err)
		}
		return res
	}

	// The restore: basebackup plus every change, into a new table.
	b.ResetTimer()
	stop := startProfile(b, os.Getenv("LBT_BENCH_CPUPROFILE_DIR"), "restore-narrow.pprof")
	res := runRestore(restoreOpts("restored"))
	stop()
	b.StopTimer()
	// The daemon takes a basebackup of a new table too: when it finishes
	// after the one taken here, restore starts from it, which measures the
	// same work as long as no change comes between the two.
	if res.Changes != int64(changes) {
		b.Fatalf("restore applied %d changes from basebackup %d, want %d from %d or one as recent", res.Changes, res.BasebackupID, changes, base.ID)
	}
	t0 := time.Now()
	if got := c.QueryString(b, target, `SELECT md5(string_agg(t::text, E'\n' ORDER BY t::text)) FROM restored t`); got != wantSum {
		b.Fatalf("restored table differs from the source: md5 %s, want %s", got, wantSum)
	}
	checksumTime := time.Since(t0)
	t0 = time.Now()
	if got := c.QueryString(b, target, restore.ChecksumSQL("restored", []string{"id", "balance", "name"})); got != fmt.Sprint(res.Rows) {
		b.Fatalf("checksum query counts %s rows, restore %d", got, res.Rows)
	}
	verifyTime := time.Since(t0)

	// (a) The floor: COPY of the final table into an empty one with the
	// same primary key.
	var final bytes.Buffer
	src, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := src.CopyTo(ctx, &final, `COPY acct TO STDOUT`); err != nil {
		b.Fatal(err)
	}
	src.Close(ctx)
	tc, err := pgconn.Connect(ctx, target)
	if err != nil {
		b.Fatal(err)
	}
	defer tc.Close(ctx)
	t0 = time.Now()
	if err := tc.Exec(ctx, `CREATE TABLE floor (id int PRIMARY KEY, balance int NOT NULL, name text NOT NULL)`).Close(); err != nil {
		b.Fatal(err)
	}
	if _, err := tc.CopyFrom(ctx, bytes.NewReader(final.Bytes()), `COPY floor FROM STDIN`); err != nil {
		b.Fatal(err)
	}
	floorTime := time.Since(t0)

	// (b) The naive way: the same changes, in commit order, as one
	// statement each, on the table as the basebackup holds it.
	o := restoreOpts("naive")
	o.LSN = base.LSN - 1
	runRestore(o)
	stmts := restoreBenchStatements(b, dir, base, sample)
	conn, err := pgx.Connect(ctx, target)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	t0 = time.Now()
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			b.Fatalf("%s: %v", s, err)
		}
	}
	naiveSample := time.Since(t0)
	naiveTime := time.Duration(float64(naiveSample) * float64(changes) / float64(len(stmts)))

	// Peak memory of the same restore by the command, in its own process.
	cli := lbtrun.Start(b, "restore", "--config", cfg, "--table", "acct", "--target-dsn", target, "--target-table", "by_command", "--quiet")
	if code := cli.Wait(b, 5*time.Minute); code != 0 {
		b.Fatalf("lbt restore exited %d:\n%s", code, cli.Output())
	}

	lbt := res.Duration
	fmt.Printf("restore: %d rows of about %d bytes in the basebackup + %d changes -> %d rows in %.2f s (plan %.2f, read and reduce changes %.2f, COPY with the streamed checksum %.2f, keys %.2f)\n",
		res.BaseRows, 41+pad, res.Changes, res.Rows, lbt.Seconds(), res.Timings.Plan.Seconds(), res.Timings.Deltas.Seconds(),
		res.Timings.Load.Seconds(), res.Timings.Keys.Seconds())
	fmt.Printf("restore: --verify's checksum query on the restored table %.2f s more; the former sorted md5(string_agg) %.2f s\n",
		verifyTime.Seconds(), checksumTime.Seconds())
	fmt.Printf("restore: (a) plain COPY of the final table into a table with its primary key: %.2f s; restore/COPY = %.2f (goal <= 1.5)\n",
		floorTime.Seconds(), lbt.Seconds()/floorTime.Seconds())
	fmt.Printf("restore: with --verify %.2f s: restore/COPY = %.2f\n", (lbt + verifyTime).Seconds(), (lbt+verifyTime).Seconds()/floorTime.Seconds())
	fmt.Printf("restore: (b) one statement per change: %d statements in %.2f s (%.0f/s), extrapolated to %d changes: %.0f s; replay/restore = %.0fx (goal >= 20)\n",
		len(stmts), naiveSample.Seconds(), float64(len(stmts))/naiveSample.Seconds(), changes, naiveTime.Seconds(), naiveTime.Seconds()/lbt.Seconds())
	fmt.Printf("restore: lbt restore (the command) peak RSS %.0f MiB\n", float64(cli.MaxRSS())/(1<<20))
	b.ReportMetric(lbt.Seconds(), "s/restore")
	b.ReportMetric(lbt.Seconds()/floorTime.Seconds(), "ratio-to-COPY")
	b.ReportMetric(naiveTime.Seconds()/lbt.Seconds(), "speedup-over-replay")
}

// restoreBenchStatements turns the first n changes after a basebackup into
// one SQL statement each, as a statement-by-statement replay would run them.
func restoreBenchStatements(b *testing.B, dir string, base catalog.Basebackup, n int) []string {
	b.Helper()
	ctx := context.Background()
	cat, err := catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer cat.Close()
	blobs, err := cat.Blobs(ctx, base.TableID, base.LSN, 1<<62)
	if err != nil {
		b.Fatal(err)
	}
	src := catalog.NewBlobSource(ctx, cat.Store(), nil)
	defer src.Close()
	lit := func(v catalog.Value) string {
		if v.Kind == catalog.ValueNull {
			return "NULL"
		}
		return schema.QuoteLiteral(string(v.Data))
	}
	var out []string
	for _, bl := range blobs {
		raw, err := src.Read(bl, nil)
		if err != nil {
			b.Fatal(err)
		}
		r := catalog.NewRecordReader(raw, bl.Schema)
		for len(out) < n {
			ch, ok, err := r.Next()
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			if ch.CommitLSN < base.LSN {
				continue
			}
			switch ch.Tag {
			case catalog.TagInsert:
				out = append(out, fmt.Sprintf("INSERT INTO naive VALUES (%s, %s, %s)", lit(ch.New[0]), lit(ch.New[1]), lit(ch.New[2])))
			case catalog.TagUpdate:
				key := ch.New[0]
				if ch.OldKind != catalog.OldNone {
					key = ch.Old[0]
				}
				out = append(out, fmt.Sprintf("UPDATE naive SET id = %s, balance = %s, name = %s WHERE id = %s",
					lit(ch.New[0]), lit(ch.New[1]), lit(ch.New[2]), lit(key)))
			case catalog.TagDelete:
				out = append(out, "DELETE FROM naive WHERE id = "+lit(ch.Old[0]))
			}
		}
	}
	if len(out) == 0 {
		b.Fatal("no changes after the basebackup")
	}
	return out
}
