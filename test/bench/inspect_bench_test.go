package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"lbt/inspect"
	"lbt/setup"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// BenchmarkInspectHistory archives a workload of LBT_BENCH_CHANGES row
// changes (10 million by default: every row inserted, then updated nine
// times, in transactions of up to 100,000 rows) through the lbt daemon, then
// times `inspect history` of single rows, each on a freshly opened archive,
// against a full scan of the table's blobs for the same row.
func BenchmarkInspectHistory(b *testing.B) {
	changes := envInt("LBT_BENCH_CHANGES", 10_000_000)
	const versions = 10 // changes per row
	rows := max(changes/versions, 1)
	const chunk = 100_000

	c := pgtest.Shared(b)
	dsn := c.NewDatabase(b)
	db := lbtrun.DBName(dsn)
	c.Exec(b, dsn, `CREATE TABLE hist (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL)`)
	dir := b.TempDir()
	cfg := lbtrun.WriteConfig(b, c, db, dir, "bench_inspect")
	p := lbtrun.Start(b, "backup", "--config", cfg)
	waitMessage(b, c, dsn, dir, "ready", p)

	start := time.Now()
	for lo := 1; lo <= rows; lo += chunk {
		hi := min(lo+chunk-1, rows)
		c.Exec(b, dsn, fmt.Sprintf(`INSERT INTO hist SELECT g, 0, md5(g::text) FROM generate_series(%d, %d) g`, lo, hi))
	}
	for round := 1; round < versions; round++ {
		for lo := 1; lo <= rows; lo += chunk {
			hi := min(lo+chunk-1, rows)
			c.Exec(b, dsn, fmt.Sprintf(`UPDATE hist SET v = v + 1 WHERE id BETWEEN %d AND %d`, lo, hi))
		}
	}
	c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'done')`)
	waitMessage(b, c, dsn, dir, "done", p)
	b.Logf("workload of %d changes written and archived in %v", rows*versions, time.Since(start).Round(time.Second))
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(b, time.Minute); code != 0 {
		b.Fatalf("lbt exited %d:\n%s", code, p.Output())
	}
	var archived int64
	inspQuery(b, dir, `SELECT coalesce(sum(inserts + updates + deletes), 0) FROM blob`, &archived)

	ctx := context.Background()
	lookup := func(id int, fullScan bool) time.Duration {
		b.Helper()
		t0 := time.Now()
		in, err := inspect.Open(ctx, dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		h, err := in.History(ctx, inspect.HistoryOptions{Table: "hist", Key: fmt.Sprintf("id=%d", id), FullScan: fullScan})
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(t0)
		in.Close()
		if len(h.Changes) != versions {
			b.Fatalf("history of id=%d has %d changes, want %d", id, len(h.Changes), versions)
		}
		return elapsed
	}

	b.ResetTimer()
	r := rand.New(rand.NewPCG(1, 2))
	var times []time.Duration
	for i := 0; i < 9; i++ {
		times = append(times, lookup(1+r.IntN(rows), false))
	}
	b.StopTimer()
	slices.Sort(times)
	median := times[len(times)/2]
	scan := lookup(1+r.IntN(rows), true)
	fmt.Printf("inspect history: archive of %d row changes; one row's %d changes: median %.1f ms over %d lookups (min %.1f, max %.1f; goal < 100 ms); full scan of the table's blobs %.0f ms; scan/index = %.0fx\n",
		archived, versions, ms(median), len(times), ms(times[0]), ms(times[len(times)-1]), ms(scan), float64(scan)/float64(median))
	b.ReportMetric(ms(median), "ms/history")
	b.ReportMetric(ms(scan), "ms/full-scan")
}

// BenchmarkSetupCaptureActors measures what lbt setup --capture-actors costs
// the source: pgbench simple-update TPS without the triggers, with them,
// and without them again after removal (LBT_BENCH_PGBENCH_SECONDS each, 20
// by default).
func BenchmarkSetupCaptureActors(b *testing.B) {
	seconds := envInt("LBT_BENCH_PGBENCH_SECONDS", 20)
	c := pgtest.Shared(b)
	dsn := c.NewDatabase(b)
	db := lbtrun.DBName(dsn)
	pgbench := func(args ...string) string {
		b.Helper()
		cmd := exec.Command(c.BinDir()+"/pgbench", append(args, "-h", c.SocketDir(), "-p", fmt.Sprint(c.Port()), "-U", "postgres", db)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("pgbench: %v\n%s", err, out)
		}
		return string(out)
	}
	tpsRE := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	tps := func() float64 {
		b.Helper()
		out := pgbench("-n", "-b", "simple-update", "-c", "4", "-j", "2", "-T", fmt.Sprint(seconds))
		m := tpsRE.FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("no tps in pgbench output:\n%s", out)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	pgbench("-i", "-q", "-s", "10")
	c.Exec(b, dsn, `CREATE PUBLICATION lbt FOR ALL TABLES`)
	ctx := context.Background()
	conn := c.Connect(b, dsn)
	opts := setup.NewOptions()

	b.ResetTimer()
	without := tps()
	opts.CaptureActors = true
	if _, err := setup.Install(ctx, conn, opts); err != nil {
		b.Fatal(err)
	}
	with := tps()
	if _, err := setup.Remove(ctx, conn, opts); err != nil {
		b.Fatal(err)
	}
	again := tps()
	b.StopTimer()
	base := (without + again) / 2
	fmt.Printf("setup --capture-actors: pgbench simple-update, 4 clients, %ds each: %.0f tps without, %.0f with the actor triggers, %.0f without again; with/without = %.3f\n",
		seconds, without, with, again, with/base)
	b.ReportMetric(with/base, "tps-ratio")
	b.ReportMetric(with, "tps-with")
	b.ReportMetric(base, "tps-without")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func inspQuery(b *testing.B, dir, q string, dest *int64) {
	b.Helper()
	if !inspTryQuery(dir, q, dest) {
		b.Fatalf("catalog query %s failed", q)
	}
}

func inspTryQuery(dir, q string, dest *int64) bool {
	db, err := archiveDB(dir)
	if err != nil {
		return false
	}
	defer db.Close()
	return db.QueryRow(q).Scan(dest) == nil
}
