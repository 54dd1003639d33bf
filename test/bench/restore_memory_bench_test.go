package bench

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// BenchmarkRestoreMemory measures lbt restore's peak resident memory and
// time as the number of keys the changes touch grows: LBT_BENCH_SPILL_KEYS
// (10 million by default) touched keys, half of them rows of the
// basebackup updated, half inserted after it, restored with the default
// memory budget (the reduced changes spill to files) and with --memory 0
// (all in memory); and 1 million touched keys, in memory, with the default
// budget, and with a budget small enough to spill (LBT_BENCH_SPILL_SMALL,
// 32 MiB), for the time spilling costs. Every restored table is compared
// with the source (row count and an order-independent hash of the rows).
// LBT_BENCH_SPILL_INMEMORY=0 leaves out the all-in-memory restore of every
// key, which needs about 2 GB at 10 million; LBT_BENCH_SPILL_1M=0 the restores of 1
// million keys.
func BenchmarkRestoreMemory(b *testing.B) {
	keys := envInt("LBT_BENCH_SPILL_KEYS", 2_000_000)
	small := envInt("LBT_BENCH_SPILL_SMALL", 32<<20)
	inMemory := os.Getenv("LBT_BENCH_SPILL_INMEMORY") != "0"
	first := min(1_000_000, keys/2)
	const chunk = 1_000_000
	ctx := context.Background()

	c := pgtest.Shared(b)
	dsn := c.NewDatabase(b)
	target := c.NewDatabase(b)
	db := lbtrun.DBName(dsn)
	inChunks := func(from, to int, stmt string) {
		for lo := from; lo <= to; lo += chunk {
			c.Exec(b, dsn, fmt.Sprintf(stmt, lo, min(lo+chunk-1, to)))
		}
	}
	start := time.Now()
	// The basebackup's rows are loaded before lbt streams: only the
	// changes after the basebackup are archived.
	c.Exec(b, dsn, `CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL, name text NOT NULL)`)
	inChunks(1, keys/2, `INSERT INTO acct SELECT g, g %% 1000, 'customer ' || md5(g::text) FROM generate_series(%d, %d) g`)
	dir := b.TempDir()
	cfg := lbtrun.WriteConfig(b, c, db, dir, "bench_memory", "fsync: false", "backupThreshold: 1000000")
	p := lbtrun.Start(b, "backup", "--config", cfg)
	waitMessage(b, c, dsn, dir, "ready", p)
	c.Exec(b, dsn, `UPDATE acct SET balance = balance WHERE id = 1`)
	c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'known')`)
	waitMessage(b, c, dsn, dir, "known", p)
	takeBasebackup(b, ctx, dir, dsn, "acct")

	// sig is what a restored table is compared with: its row count and an
	// order-independent hash of its rows.
	sig := func(conn, table string) string {
		return c.QueryString(b, conn, `SELECT count(*) || ' ' || coalesce(sum(hashtext(t::text)::bigint), 0) FROM `+table+` t`)
	}
	type moment struct {
		lsn, sig string
		touched  int
	}
	mark := func(touched int) moment {
		return moment{lsn: c.QueryString(b, dsn, `SELECT pg_current_wal_lsn()`), sig: sig(dsn, "acct"), touched: touched}
	}
	inChunks(1, first, `UPDATE acct SET balance = balance + 1, name = name || '!' WHERE id BETWEEN %d AND %d`)
	at1M := mark(first)
	inChunks(first+1, keys/2, `UPDATE acct SET balance = balance + 1, name = name || '!' WHERE id BETWEEN %d AND %d`)
	inChunks(keys/2+1, keys, `INSERT INTO acct SELECT g, 7, 'new ' || md5(g::text) FROM generate_series(%d, %d) g`)
	atAll := mark(keys)
	c.Exec(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'done')`)
	waitMessage(b, c, dsn, dir, "done", p)
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(b, time.Minute); code != 0 {
		b.Fatalf("lbt exited %d:\n%s", code, p.Output())
	}
	b.Logf("workload: %d rows in the basebackup, %d changes after it, archived in %v", keys/2, keys, time.Since(start).Round(time.Second))

	spills := regexp.MustCompile(`spilled to tempDir (\d+) times`)
	applied := regexp.MustCompile(`transactions \((\d+) changes\)`)
	n := 0
	restore := func(m moment, memory string) {
		n++
		table := fmt.Sprintf("r%d", n)
		args := []string{"restore", "--config", cfg, "--table", "acct", "--lsn", m.lsn, "--target-dsn", target, "--target-table", table}
		if memory != "" {
			args = append(args, "--memory", memory)
		}
		t0 := time.Now()
		cli := lbtrun.Start(b, args...)
		if code := cli.Wait(b, 30*time.Minute); code != 0 {
			b.Fatalf("lbt %s exited %d:\n%s", strings.Join(args, " "), code, cli.Output())
		}
		took := time.Since(t0)
		// The basebackup taken above, not one the daemon took later.
		if s := applied.FindStringSubmatch(cli.Output()); s == nil || s[1] != fmt.Sprint(m.touched) {
			b.Fatalf("restore applied %v changes, want %d:\n%s", s, m.touched, cli.Output())
		}
		if got := sig(target, table); got != m.sig {
			b.Fatalf("restore of %d touched keys with --memory %q differs from the source: %s, want %s", m.touched, memory, got, m.sig)
		}
		c.Exec(b, target, "DROP TABLE "+table)
		budget, spilled := memory, "no spill"
		if budget == "" {
			budget = "default (256 MiB)"
		}
		if s := spills.FindStringSubmatch(cli.Output()); s != nil {
			spilled = "spilled " + s[1] + " times"
		}
		fmt.Printf("restore memory: %9d touched keys, --memory %-17s: peak RSS %5.0f MiB, %6.1f s, %.1f s CPU (%s); load average %s\n",
			m.touched, budget, float64(cli.MaxRSS())/(1<<20), took.Seconds(), cli.CPUTime().Seconds(), spilled, loadAverage())
	}
	b.ResetTimer()
	restore(atAll, "")
	if inMemory {
		restore(atAll, "0")
	}
	if os.Getenv("LBT_BENCH_SPILL_1M") != "0" {
		restore(at1M, "0")
		restore(at1M, "")
		restore(at1M, fmt.Sprintf("%dMiB", small>>20))
	}
	b.StopTimer()
}
