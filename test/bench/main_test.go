// Package bench holds lbt's benchmarks: figures printed by `make bench`,
// each against a reference measured in the same run where there is one.
// They are not run by `make test`.
package bench

import (
	"context"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	lbtrun.RemoveBinary()
	os.Exit(code)
}

// takeBasebackup takes a basebackup of table into the archive in dir while the
// daemon writes it, and returns it with the time the dump took.
func takeBasebackup(b *testing.B, ctx context.Context, dir, dsn, table string) (catalog.Basebackup, time.Duration) {
	b.Helper()
	return takeBasebackupJobs(b, ctx, dir, dsn, table, basebackup.NewOptions().Jobs)
}

// takeBasebackupJobs is takeBasebackup on jobs connections.
func takeBasebackupJobs(b *testing.B, ctx context.Context, dir, dsn, table string, jobs int) (catalog.Basebackup, time.Duration) {
	b.Helper()
	cat, err := catalog.Open(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer cat.Close()
	dopts := basebackup.NewOptions()
	dopts.ArchiveDir = dir
	dopts.Jobs = jobs
	if dopts.Conn, err = pgconn.ParseConfig(dsn); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	bases, err := basebackup.Take(ctx, cat, dopts, []string{table})
	if err != nil {
		b.Fatal(err)
	}
	return bases[0], time.Since(t0)
}

// loadAverage is the machine's load average over 1, 5 and 15 minutes.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// startProfile starts a CPU profile into dir/name and returns what stops
// it; with dir or name empty it does nothing.
func startProfile(b *testing.B, dir, name string) (stop func()) {
	if dir == "" || name == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
