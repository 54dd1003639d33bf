package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// envInt reads a size from the environment, so that a quick run can scale
// a benchmark down.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkIngest drains a backlog of pgbench simple-update changes from the
// slot with lbt, and the same backlog with pg_recvlogical writing pgoutput
// to a file, and reports both throughputs, their ratio, bytes per change on
// disk and lbt's peak memory.
func BenchmarkIngest(b *testing.B) {
	c := pgtest.Shared(b)
	dsn := c.NewDatabase(b)
	db := lbtrun.DBName(dsn)
	txs := envInt("LBT_BENCH_CHANGES", 1_000_000) / 2 // simple-update: one UPDATE and one INSERT a transaction
	run(b, c.BinDir()+"/pgbench", "-i", "-q", "-s", "10", "-h", c.SocketDir(), "-p", fmt.Sprint(c.Port()), "-U", "postgres", db)

	dir := b.TempDir()
	// The daemon's defaults: a flush (two fsyncs) a second.
	settings := []string{"flushInterval: 1s", "statusInterval: 10s"}
	profile := os.Getenv("LBT_BENCH_CPUPROFILE")
	debugAddr := "127.0.0.1:" + strconv.Itoa(freePort(b))
	if profile != "" {
		settings = append(settings, "debugAddr: "+debugAddr)
	}
	cfg := lbtrun.WriteConfig(b, c, db, dir, "bench_lbt", settings...)
	// Let lbt create its publication and slot, then stop it: the backlog
	// accumulates in both slots while nothing consumes.
	p := lbtrun.Start(b, "backup", "--config", cfg)
	waitMessage(b, c, dsn, dir, "ready", p)
	p.Signal(syscall.SIGTERM)
	p.Wait(b, time.Minute)
	c.Exec(b, dsn, `SELECT pg_create_logical_replication_slot('bench_recv', 'pgoutput')`)

	start := time.Now()
	run(b, c.BinDir()+"/pgbench", "-N", "-c", "4", "-j", "2", "-t", fmt.Sprint(txs/4), "-n", "-h", c.SocketDir(), "-p", fmt.Sprint(c.Port()), "-U", "postgres", db)
	c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'done')`)
	endLSN := c.QueryString(b, dsn, `SELECT pg_current_wal_lsn()`)
	b.Logf("workload: %d transactions in %v", txs, time.Since(start).Round(time.Millisecond))

	b.ResetTimer()
	out := filepath.Join(b.TempDir(), "recv.out")
	start = time.Now()
	run(b, c.BinDir()+"/pg_recvlogical", "-d", dsn, "--slot", "bench_recv", "--start", "-f", out, "--no-loop",
		"-E", endLSN, "-o", "proto_version=3", "-o", "publication_names=lbt", "-o", "messages=true")
	recvTime := time.Since(start)

	start = time.Now()
	p = lbtrun.Start(b, "backup", "--config", cfg)
	if profile != "" {
		// As long as pg_recvlogical took: the profile covers the drain,
		// not the idle tail.
		go captureProfile(debugAddr, recvTime, profile)
	}
	waitMessage(b, c, dsn, dir, "done", p)
	lbtTime := time.Since(start)
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(b, time.Minute); code != 0 {
		b.Fatalf("lbt exited %d:\n%s", code, p.Output())
	}
	b.StopTimer()

	changes, segBytes, catBytes := archiveSize(b, dir)
	if changes < int64(txs)*2 {
		b.Fatalf("archive holds %d changes, the workload made %d", changes, txs*2)
	}
	recvInfo, _ := os.Stat(out)
	fmt.Printf("ingest: %d changes; pg_recvlogical %.0f changes/s (%.0f bytes/change of pgoutput text); lbt %.0f changes/s; lbt/pg_recvlogical = %.2f (goal >= 0.9)\n",
		changes, float64(changes)/recvTime.Seconds(), float64(recvInfo.Size())/float64(changes),
		float64(changes)/lbtTime.Seconds(), recvTime.Seconds()/lbtTime.Seconds())
	fmt.Printf("ingest: segments %.1f bytes/change (goal <= 22), catalog %.1f bytes/change (goal <= 40), lbt peak RSS %.0f MiB\n",
		float64(segBytes)/float64(changes), float64(catBytes)/float64(changes), float64(p.MaxRSS())/(1<<20))
	b.ReportMetric(float64(changes)/lbtTime.Seconds(), "changes/s")
	b.ReportMetric(recvTime.Seconds()/lbtTime.Seconds(), "ratio-to-recvlogical")
	b.ReportMetric(float64(segBytes)/float64(changes), "segment-B/change")
	b.ReportMetric(float64(catBytes)/float64(changes), "catalog-B/change")
}

// BenchmarkIngestHugeTransaction measures lbt's peak memory while archiving
// one transaction of 3 million rows: it must stream to disk, not be held.
func BenchmarkIngestHugeTransaction(b *testing.B) {
	c := pgtest.Shared(b)
	dsn := c.NewDatabase(b)
	db := lbtrun.DBName(dsn)
	rows := envInt("LBT_BENCH_HUGE_ROWS", 3_000_000)
	c.Exec(b, dsn, `CREATE TABLE huge (id bigint PRIMARY KEY, payload text)`)
	dir := b.TempDir()
	cfg := lbtrun.WriteConfig(b, c, db, dir, "bench_huge")
	p := lbtrun.Start(b, "backup", "--config", cfg)
	waitMessage(b, c, dsn, dir, "ready", p)
	b.ResetTimer()
	start := time.Now()
	c.Exec(b, dsn, fmt.Sprintf(`INSERT INTO huge SELECT g, md5(g::text) FROM generate_series(1, %d) g`, rows))
	c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'done')`)
	waitMessage(b, c, dsn, dir, "done", p)
	elapsed := time.Since(start)
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(b, time.Minute); code != 0 {
		b.Fatalf("lbt exited %d:\n%s", code, p.Output())
	}
	changes, _, _ := archiveSize(b, dir)
	fmt.Printf("huge transaction: %d rows archived in %v; lbt peak RSS %.0f MiB (goal < 256)\n",
		changes, elapsed.Round(time.Millisecond), float64(p.MaxRSS())/(1<<20))
	b.ReportMetric(float64(p.MaxRSS())/(1<<20), "peak-RSS-MiB")
}

// captureProfile saves a CPU profile of the daemon, taken through its
// debugAddr, for `go tool pprof`.
func captureProfile(addr string, d time.Duration, path string) {
	time.Sleep(500 * time.Millisecond) // the daemon's HTTP server starts first
	secs := max(1, int(d.Seconds()))
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
	if err != nil {
		fmt.Fprintf(os.Stderr, "ingest: cpu profile: %v\n", err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ingest: cpu profile: %v\n", err)
		return
	}
	fmt.Printf("ingest: cpu profile of %ds of lbt's drain written to %s\n", secs, path)
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func run(b *testing.B, name string, args ...string) {
	b.Helper()
	cmd := exec.Command(name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", filepath.Base(name), err, out)
	}
}

// waitMessage waits until the archive holds the sync message with content
// token; "ready" emits new ones until one lands (the slot may not exist yet).
func waitMessage(b *testing.B, c *pgtest.Cluster, dsn, dir, token string, p *lbtrun.Process) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		if p.Exited() {
			b.Fatalf("lbt backup ended while waiting for message %q:\n%s", token, p.Output())
		}
		if token == "ready" && i%40 == 0 {
			c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'ready')`)
		}
		cat, err := catalog.OpenReadOnly(context.Background(), dir)
		if err == nil {
			var n int
			cat.DB().QueryRow(`SELECT count(*) FROM tx_message WHERE prefix = 'lbt.test.sync' AND content = CAST(? AS BLOB)`, token).Scan(&n)
			cat.Close()
			if n > 0 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("archive never got message %q", token)
}

// archiveSize returns the number of archived row changes and the bytes of
// segments and catalog.
func archiveSize(b *testing.B, dir string) (changes, segBytes, catBytes int64) {
	b.Helper()
	cat, err := catalog.OpenReadOnly(context.Background(), dir)
	if err != nil {
		b.Fatal(err)
	}
	defer cat.Close()
	if err := cat.DB().QueryRow(`SELECT coalesce(sum(changes), 0) FROM blob`).Scan(&changes); err != nil {
		b.Fatal(err)
	}
	var pages, pageSize int64
	cat.DB().QueryRow(`PRAGMA page_count`).Scan(&pages)
	cat.DB().QueryRow(`PRAGMA page_size`).Scan(&pageSize)
	catBytes = pages * pageSize
	filepath.Walk(filepath.Join(dir, "segments"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			segBytes += fi.Size()
		}
		return nil
	})
	return changes, segBytes, catBytes
}
