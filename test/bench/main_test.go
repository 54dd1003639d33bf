// Package bench holds lbt's benchmarks: figures printed by `make bench`,
// each against a reference measured in the same run where there is one.
// They are not run by `make test`.
package bench

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"lbt/basebackup"
	"lbt/catalog"
	"os"
	"testing"

	"lbt/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// takeBasebackup takes a basebackup of table into the archive in dir while the
// daemon writes it, and returns it with the time the dump took.
func takeBasebackup(b *testing.B, ctx context.Context, dir, dsn, table string) (catalog.Basebackup, time.Duration) {
	b.Helper()
	cat, err := catalog.Open(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer cat.Close()
	dopts := basebackup.NewOptions()
	dopts.ArchiveDir = dir
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
