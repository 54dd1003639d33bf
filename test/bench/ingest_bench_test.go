package bench

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lbt/catalog"
	"lbt/inspect"
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
// disk and lbt's peak memory. It does so over the server's Unix socket, as a
// daemon on the database host would connect, and over TCP on 127.0.0.1, as
// one on another host would: the walsender works differently for each, so
// the ratio differs (go test -bench 'Ingest/unix' runs one).
//
// Throughput on a shared 2-core machine varies from run to run by a third:
// the backlog is drained several times (LBT_BENCH_DRAINS, 3), each time
// from a copy of the slot taken before any drain, alternating
// pg_recvlogical and lbt, and the medians are compared. LBT_BENCH_COMPARE
// names other lbt builds (comma-separated) to drain the same backlog in the
// same rounds, e.g. one of the previous commit.
func BenchmarkIngest(b *testing.B) {
	b.Run("unix", func(b *testing.B) { benchIngest(b, false) })
	b.Run("tcp", func(b *testing.B) { benchIngest(b, true) })
}

func benchIngest(b *testing.B, tcp bool) {
	c := pgtest.Shared(b)
	dsn := c.NewDatabase(b)
	db := lbtrun.DBName(dsn)
	transport := "unix"
	streamDSN := dsn // what the drains connect to
	if tcp {
		transport = "tcp"
		streamDSN = strings.Replace(dsn, "host="+c.SocketDir(), "host=127.0.0.1", 1)
	}
	txs := envInt("LBT_BENCH_CHANGES", 1_000_000) / 2 // simple-update: one UPDATE and one INSERT a transaction
	drains := envInt("LBT_BENCH_DRAINS", 3)
	binaries := []string{lbtrun.Binary(b)}
	if v := os.Getenv("LBT_BENCH_COMPARE"); v != "" {
		binaries = append(binaries, strings.Split(v, ",")...)
	}
	run(b, c.BinDir()+"/pgbench", "-i", "-q", "-s", "10", "-h", c.SocketDir(), "-p", fmt.Sprint(c.Port()), "-U", "postgres", db)

	// Let each build create its archive, publication and slot, then stop
	// it: the backlog accumulates in the slots while nothing consumes. Each
	// drain starts from a copy of its build's archive and of its slot. (One
	// template per build: a build of another format version would refuse
	// this one's archive.)
	// The daemon's defaults: a flush (two fsyncs) a second.
	settings := []string{"flushInterval: 1s", "statusInterval: 10s"}
	templates := make([]string, len(binaries))
	for j, bin := range binaries {
		templates[j] = b.TempDir()
		slot := fmt.Sprintf("bench_lbt_t%d", j)
		p := lbtrun.StartBinary(b, bin, "backup", "--config", lbtrun.WriteConfig(b, c, db, templates[j], slot, settings...))
		waitMessage(b, c, dsn, templates[j], "ready", p)
		// The first basebackups of the pgbench tables are the scheduler's
		// work, not ingest's: let them finish here rather than in every
		// drain. The scheduler sees a table once a change of it arrives.
		c.Exec(b, dsn, `UPDATE pgbench_accounts SET abalance = abalance WHERE aid = 1`)
		c.Exec(b, dsn, `UPDATE pgbench_branches SET bbalance = bbalance WHERE bid = 1`)
		c.Exec(b, dsn, `UPDATE pgbench_tellers SET tbalance = tbalance WHERE tid = 1`)
		c.Exec(b, dsn, `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 0, now())`)
		waitBasebackups(b, c, dsn, templates[j], p)
		p.Signal(syscall.SIGTERM)
		p.Wait(b, time.Minute)
	}
	c.Exec(b, dsn, `SELECT pg_create_logical_replication_slot('bench_recv', 'pgoutput')`)
	for i := 0; i < drains; i++ {
		c.Exec(b, dsn, fmt.Sprintf(`SELECT pg_copy_logical_replication_slot('bench_recv', 'bench_recv_%d')`, i))
		for j := range binaries {
			c.Exec(b, dsn, fmt.Sprintf(`SELECT pg_copy_logical_replication_slot('bench_lbt_t%d', 'bench_lbt_%d_%d')`, j, i, j))
		}
	}

	start := time.Now()
	run(b, c.BinDir()+"/pgbench", "-N", "-c", "4", "-j", "2", "-t", fmt.Sprint(txs/4), "-n", "-h", c.SocketDir(), "-p", fmt.Sprint(c.Port()), "-U", "postgres", db)
	c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'done')`)
	endLSN := c.QueryString(b, dsn, `SELECT pg_current_wal_lsn()`)
	b.Logf("workload: %d transactions in %v", txs, time.Since(start).Round(time.Millisecond))

	profile := os.Getenv("LBT_BENCH_CPUPROFILE")
	b.ResetTimer()
	recvTimes := make([]time.Duration, drains)
	lbtTimes := make([][]time.Duration, len(binaries))
	lbtCPU := make([][]time.Duration, len(binaries))
	// What the walsender used while it served each drain.
	var recvCPU []time.Duration
	var recvWalsender []procUse
	lbtWalsender := make([][]procUse, len(binaries))
	var dir string                            // the last drain of this build's lbt
	lastDirs := make([]string, len(binaries)) // and of each build's
	var peakRSS int64
	var recvBytes int64
	for i := 0; i < drains; i++ {
		out := filepath.Join(b.TempDir(), "recv.out")
		meter := walsenderUse(b, dsn, fmt.Sprintf("bench_recv_%d", i))
		start := time.Now()
		recvCPU = append(recvCPU, runCPU(b, c.BinDir()+"/pg_recvlogical", "-d", streamDSN, "--slot", fmt.Sprintf("bench_recv_%d", i), "--start", "-f", out, "--no-loop",
			"-E", endLSN, "-o", "proto_version=3", "-o", "publication_names=lbt", "-o", "messages=true"))
		recvTimes[i] = time.Since(start)
		recvWalsender = append(recvWalsender, meter())
		if fi, err := os.Stat(out); err == nil {
			recvBytes = fi.Size()
		}
		os.Remove(out)

		for j, bin := range binaries {
			d := filepath.Join(b.TempDir(), "archive")
			if err := os.CopyFS(d, os.DirFS(templates[j])); err != nil {
				b.Fatal(err)
			}
			extra := settings
			debugAddr := "127.0.0.1:" + strconv.Itoa(freePort(b))
			if profile != "" && i == drains-1 && j == 0 {
				extra = append(slices.Clone(settings), "debugAddr: "+debugAddr)
			}
			cfg := lbtrun.WriteConfig(b, c, db, d, fmt.Sprintf("bench_lbt_%d_%d", i, j), extra...)
			if tcp {
				useTCP(b, c, cfg)
			}
			meter := walsenderUse(b, dsn, fmt.Sprintf("bench_lbt_%d_%d", i, j))
			start := time.Now()
			p := lbtrun.StartBinary(b, bin, "backup", "--config", cfg)
			if len(extra) > len(settings) {
				// As long as pg_recvlogical took: the profile covers the
				// drain, not the idle tail.
				go captureProfile(debugAddr, recvTimes[i], profile)
			}
			waitMessage(b, c, dsn, d, "done", p)
			lbtTimes[j] = append(lbtTimes[j], time.Since(start))
			lbtWalsender[j] = append(lbtWalsender[j], meter())
			p.Signal(syscall.SIGTERM)
			if code := p.Wait(b, time.Minute); code != 0 {
				b.Fatalf("lbt exited %d:\n%s", code, p.Output())
			}
			lbtCPU[j] = append(lbtCPU[j], p.CPUTime())
			lastDirs[j] = d
			if j == 0 {
				dir = d
				peakRSS = max(peakRSS, p.MaxRSS())
			}
		}
	}
	b.StopTimer()

	changes, segBytes, catBytes, metaBytes := archiveSize(b, dir)
	if changes < int64(txs)*2 {
		b.Fatalf("archive holds %d changes, the workload made %d", changes, txs*2)
	}
	rate := func(d time.Duration) float64 { return float64(changes) / d.Seconds() }
	goal := "0.9"
	if tcp {
		goal = "1.0"
	}
	recv := median(recvTimes)
	perChange := func(ds []time.Duration) float64 { return float64(median(ds).Microseconds()) / float64(changes) }
	fmt.Printf("ingest over %s: %d changes, %d drains (medians; the machine may be shared: compare within one run); pg_recvlogical %.0f changes/s (%s) at %.0f bytes/change of pgoutput text; pg_recvlogical %.2f µs CPU/change; its walsender %s\n",
		transport, changes, drains, rate(recv), rates(changes, recvTimes), float64(recvBytes)/float64(changes), perChange(recvCPU), walsenderText(recvWalsender, changes))
	for j, bin := range binaries {
		name := "lbt"
		if j > 0 {
			name = bin
		}
		l := median(lbtTimes[j])
		_, _, cb, _ := archiveSize(b, lastDirs[j])
		fmt.Printf("ingest over %s: %s %.0f changes/s (%s); lbt/pg_recvlogical = %.2f (goal >= %s); lbt %.2f µs CPU/change; its walsender %s; catalog %.1f bytes/change\n",
			transport, name, rate(l), rates(changes, lbtTimes[j]), recv.Seconds()/l.Seconds(), goal, perChange(lbtCPU[j]), walsenderText(lbtWalsender[j], changes), float64(cb)/float64(changes))
	}
	if links, bytes, ok := chainSize(b, dir); ok {
		fmt.Printf("ingest over %s: hash chain %d links, %.0f changes a link, %.2f catalog bytes/change (links, anchors, blob digests, blob_first index)\n",
			transport, links, float64(changes)/float64(max(links, 1)), float64(bytes)/float64(changes))
	}
	fmt.Printf("ingest over %s: segments %.1f bytes/change (goal <= 22; metadata blobs %.2f of them), catalog %.1f bytes/change (goal <= 40), lbt peak RSS %.0f MiB\n",
		transport, float64(segBytes)/float64(changes), float64(metaBytes)/float64(changes), float64(catBytes)/float64(changes), float64(peakRSS)/(1<<20))
	hist := historyLatency(b, dsn, dir)
	fmt.Printf("ingest over %s: inspect history of one pgbench_accounts row on lbt's archive: median %.1f ms over %d rows (goal < 100 ms; BenchmarkInspectHistory measures 10M changes)\n",
		transport, ms(median(hist)), len(hist))
	lbt := median(lbtTimes[0])
	b.ReportMetric(rate(lbt), "changes/s")
	b.ReportMetric(recv.Seconds()/lbt.Seconds(), "ratio-to-recvlogical")
	b.ReportMetric(float64(segBytes)/float64(changes), "segment-B/change")
	b.ReportMetric(float64(metaBytes)/float64(changes), "metadata-B/change")
	b.ReportMetric(float64(catBytes)/float64(changes), "catalog-B/change")
}

// historyLatency times `inspect history` of a few updated pgbench_accounts
// rows on the archive in dir, each on a freshly opened archive, and checks
// that each finds as many changes as pgbench_history holds for the row.
func historyLatency(b *testing.B, dsn, dir string) []time.Duration {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT aid, count(*) FROM pgbench_history WHERE aid IN
		(SELECT aid FROM pgbench_history ORDER BY random() LIMIT 9) GROUP BY aid`)
	if err != nil {
		b.Fatal(err)
	}
	type updated struct{ aid, n int64 }
	var accounts []updated
	for rows.Next() {
		var u updated
		if err := rows.Scan(&u.aid, &u.n); err != nil {
			b.Fatal(err)
		}
		accounts = append(accounts, u)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	var times []time.Duration
	for _, u := range accounts {
		t0 := time.Now()
		in, err := inspect.Open(ctx, dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		h, err := in.History(ctx, inspect.HistoryOptions{Table: "pgbench_accounts", Key: fmt.Sprintf("aid=%d", u.aid)})
		if err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(t0))
		in.Close()
		if int64(len(h.Changes)) != u.n {
			b.Errorf("history of pgbench_accounts aid=%d has %d changes, pgbench_history says %d", u.aid, len(h.Changes), u.n)
		}
	}
	if len(times) == 0 {
		b.Fatal("pgbench_history is empty")
	}
	return times
}

// waitBasebackups waits until the archive in dir holds a basebackup of
// every table of the publication.
func waitBasebackups(b *testing.B, c *pgtest.Cluster, dsn, dir string, p *lbtrun.Process) {
	b.Helper()
	want, err := strconv.Atoi(c.QueryString(b, dsn, `SELECT count(*) FROM pg_publication_tables WHERE pubname = 'lbt'`))
	if err != nil {
		b.Fatal(err)
	}
	var have int64
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if p.Exited() {
			b.Fatalf("lbt backup ended while waiting for its first basebackups:\n%s", p.Output())
		}
		if inspTryQuery(dir, `SELECT count(DISTINCT table_id) FROM basebackup`, &have) && have >= int64(want) {
			return
		}
	}
	b.Fatalf("the archive has basebackups of %d tables after 3 minutes, the publication %d; lbt backup said:\n%s", have, want, p.Output())
}

// walsenderText says what a walsender used per change, and how often it
// slept and woke, as medians over the drains.
func walsenderText(us []procUse, changes int64) string {
	var cpu []time.Duration
	var wakeups []int64
	for _, u := range us {
		cpu = append(cpu, u.cpu)
		wakeups = append(wakeups, u.wakeups)
	}
	return fmt.Sprintf("%.2f µs CPU/change, %d wake-ups a drain", float64(median(cpu).Nanoseconds())/1000/float64(changes), median(wakeups))
}

// useTCP points a daemon's config at the server's TCP address.
func useTCP(b *testing.B, c *pgtest.Cluster, cfg string) {
	text, err := os.ReadFile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	text = []byte(strings.Replace(string(text), "host: "+c.SocketDir(), "host: 127.0.0.1", 1))
	if err := os.WriteFile(cfg, text, 0o600); err != nil {
		b.Fatal(err)
	}
}

func median[T cmp.Ordered](ds []T) T {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// rates lists each drain's throughput.
func rates(changes int64, ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.0fk", float64(changes)/d.Seconds()/1000))
	}
	return strings.Join(parts, " ")
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
	changes, _, _, _ := archiveSize(b, dir)
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
	runCPU(b, name, args...)
}

// runCPU runs a program to completion and returns the CPU time it used.
func runCPU(b *testing.B, name string, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", filepath.Base(name), err, out)
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// waitMessage waits until the archive holds the sync message with content
// token; "ready" emits new ones until one lands (the slot may not exist yet).
func waitMessage(b *testing.B, c *pgtest.Cluster, dsn, dir, token string, p *lbtrun.Process) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Minute)
	if token == "ready" {
		// A daemon that does not start says why in its output: do not
		// wait long for it.
		deadline = time.Now().Add(2 * time.Minute)
	}
	for i := 0; time.Now().Before(deadline); i++ {
		if p.Exited() {
			b.Fatalf("lbt backup ended while waiting for message %q:\n%s", token, p.Output())
		}
		if token == "ready" && i%40 == 0 {
			c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'ready')`)
		}
		db, err := archiveDB(dir)
		if err == nil {
			var n int
			db.QueryRow(`SELECT count(*) FROM tx_message WHERE prefix = 'lbt.test.sync' AND content = CAST(? AS BLOB)`, token).Scan(&n)
			db.Close()
			if n > 0 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("archive never got message %q; lbt backup said:\n%s", token, p.Output())
}

// archiveSize returns the number of archived row changes and the bytes of
// segments and catalog.
func archiveSize(b *testing.B, dir string) (changes, segBytes, catBytes, metaBytes int64) {
	b.Helper()
	db, err := archiveDB(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var blobBytes int64
	if err := db.QueryRow(`SELECT coalesce(sum(changes), 0), coalesce(sum(length), 0) FROM blob`).Scan(&changes, &blobBytes); err != nil {
		b.Fatal(err)
	}
	var pages, pageSize int64
	db.QueryRow(`PRAGMA page_count`).Scan(&pages)
	db.QueryRow(`PRAGMA page_size`).Scan(&pageSize)
	catBytes = pages * pageSize
	var headers int64
	filepath.Walk(filepath.Join(dir, "segments"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			segBytes += fi.Size()
			headers += catalog.SegmentHeaderSize
		}
		return nil
	})
	// What is neither a data blob nor a header is the metadata blobs that
	// make segments self-describing (docs/FORMAT.md).
	return changes, segBytes, catBytes, segBytes - blobBytes - headers
}

// chainSize returns the hash chain's links and its catalog bytes
// (docs/FORMAT.md, format 4), as SQLite's dbstat counts pages; ok is false
// for an archive without a chain.
func chainSize(b *testing.B, dir string) (links, bytes int64, ok bool) {
	b.Helper()
	db, err := archiveDB(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT count(*) FROM chain`).Scan(&links); err != nil {
		return 0, 0, false
	}
	var pages, digests int64
	db.QueryRow(`SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ('chain', 'chain_first', 'chain_anchor', 'blob_first')`).Scan(&pages)
	db.QueryRow(`SELECT coalesce(sum(length(sha256) + 1), 0) FROM blob`).Scan(&digests)
	return links, pages + digests, true
}

// archiveDB opens an archive's catalog file read-only as a plain SQLite
// database, whatever its format version: LBT_BENCH_COMPARE may name a build
// of another one, whose archive this lbt's catalog package refuses.
func archiveDB(dir string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, catalog.CatalogFile)+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	return db, db.Ping()
}

// procUse is what a process has used so far: CPU time from
// /proc/PID/schedstat (nanoseconds, unlike /proc/PID/stat's 10 ms ticks)
// and its voluntary context switches, each one a sleep and a wake-up.
type procUse struct {
	cpu     time.Duration
	wakeups int64
}

// walsenderUse follows the walsender that serves a slot and reports what it
// used, read from /proc every 100 ms until stop is called: the walsender
// exits with its client, so the last reading is kept.
func walsenderUse(b *testing.B, dsn, slot string) (stop func() procUse) {
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan procUse)
	go func() {
		defer conn.Close(context.Background())
		var last procUse
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			var pid *int32
			if err := conn.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid); err == nil && pid != nil {
				if u, ok := readProcUse(int(*pid)); ok {
					last = u
				}
			}
			select {
			case <-ctx.Done():
				done <- last
				return
			case <-tick.C:
			}
		}
	}()
	return func() procUse {
		cancel()
		return <-done
	}
}

// readProcUse reads a process's CPU time and voluntary context switches.
func readProcUse(pid int) (procUse, bool) {
	sched, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return procUse{}, false
	}
	f := strings.Fields(string(sched))
	if len(f) < 1 {
		return procUse{}, false
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return procUse{}, false
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procUse{}, false
	}
	u := procUse{cpu: time.Duration(ns)}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
			u.wakeups, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return u, true
}
