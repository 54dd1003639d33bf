package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbt/storage"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
	"lbt/test/s3test"
)

// BenchmarkObjectStorage prints the S3 store's upload throughput against a
// local directory's Put of the same file, and a one-table restore from the
// bucket alone against the same restore from the local archive (same table,
// same run), with the bytes the bucket restore downloaded against the
// archive's size. LBT_BENCH_S3_MB sets the upload size (default 128) and
// LBT_BENCH_S3_ROWS the rows of the noise table beside the restored one
// (default 200000).
func BenchmarkObjectStorage(b *testing.B) {
	ctx := context.Background()
	srv, bucket, store := benchStore(b, "bench", "upload")

	// Upload throughput: one file, PutFile (multipart) against Local's Put.
	size := envInt("LBT_BENCH_S3_MB", 128) << 20
	data := make([]byte, size)
	rand.Read(data)
	file := filepath.Join(b.TempDir(), "segment")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		b.Fatal(err)
	}
	local := storage.NewLocal(storage.OS{}, b.TempDir())
	b.ResetTimer()
	t0 := time.Now()
	if err := local.Put(ctx, "segments/00000001.lbs", bytes.NewReader(data), int64(size)); err != nil {
		b.Fatal(err)
	}
	localPut := time.Since(t0)
	t0 = time.Now()
	if err := storage.PutFile(ctx, store, "segments/00000001.lbs", file); err != nil {
		b.Fatal(err)
	}
	s3Put := time.Since(t0)
	mbps := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	b.Logf("upload of %d MiB: S3 PutFile %.0f MiB/s, local Put (fsync) %.0f MiB/s: %.2fx the local directory's time",
		size>>20, mbps(s3Put), mbps(localPut), s3Put.Seconds()/localPut.Seconds())
	b.ReportMetric(mbps(s3Put), "s3-MiB/s")

	// One-table restore, bucket against local.
	c := pgtest.Shared(b)
	dsn := c.NewDatabase(b)
	target := c.NewDatabase(b)
	db := lbtrun.DBName(dsn)
	c.Exec(b, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE noise (id int PRIMARY KEY, v text)`)
	work := filepath.Join(b.TempDir(), "work")
	s3Keys := []string{"archiveUrl: s3://" + bucket + "/pg", "s3Endpoint: " + srv.Endpoint(), "s3ForcePathStyle: true", "uploadInterval: 1s"}
	cfg := lbtrun.WriteConfig(b, c, db, work, "bench_s3", s3Keys...)
	p := lbtrun.Start(b, "backup", "--config", cfg)
	waitMessage(b, c, dsn, work, "ready", p)
	rows := envInt("LBT_BENCH_S3_ROWS", 200000)
	c.Exec(b, dsn, `INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
	c.Exec(b, dsn, fmt.Sprintf(`INSERT INTO noise SELECT g, (SELECT string_agg(md5(g::text || k::text), '') FROM generate_series(1, 10) k) FROM generate_series(1, %d) g`, rows))
	c.Exec(b, dsn, `UPDATE t SET v = v || 'x' WHERE id % 3 = 0`)
	// The scheduler's first basebackups of t and noise, then a marker
	// after them: once it is confirmed, the bucket holds both.
	deadline := time.Now().Add(10 * time.Minute)
	for n := int64(0); !inspTryQuery(work, `SELECT count(*) FROM basebackup`, &n) || n < 2; {
		if p.Exited() || time.Now().After(deadline) {
			b.Fatalf("no basebackups of t and noise; lbt:\n%s", p.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	marker := c.QueryString(b, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'done')`)
	for c.QueryString(b, dsn, fmt.Sprintf(`SELECT (confirmed_flush_lsn > '%s')::text FROM pg_replication_slots WHERE slot_name = 'bench_s3'`, marker)) != "true" {
		if p.Exited() || time.Now().After(deadline) {
			b.Fatalf("the bucket never covered the workload; lbt:\n%s", p.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.Signal(syscall.SIGTERM)
	p.Wait(b, time.Minute)

	restore := func(cfg, table string) (time.Duration, string) {
		t0 := time.Now()
		code, out := lbtrun.Run(b, "restore", "--config", cfg, "--table", "t", "--target-dsn", target, "--target-table", table)
		if code != 0 {
			b.Fatalf("lbt restore: exit %d:\n%s", code, out)
		}
		return time.Since(t0), out
	}
	localTime, _ := restore(cfg, "from_local")
	fresh := lbtrun.WriteConfig(b, c, db, filepath.Join(b.TempDir(), "fresh"), "bench_s3", s3Keys...)
	bucketTime, out := restore(fresh, "from_bucket")
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "downloaded ") {
			line = l
		}
	}
	b.Logf("one-table restore of t (20000 rows, beside %d of noise): from the bucket %v, from the local archive %v: %.2fx; %s",
		rows, bucketTime.Round(time.Millisecond), localTime.Round(time.Millisecond), bucketTime.Seconds()/localTime.Seconds(), line)
	if a, bb := c.QueryString(b, target, `SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM from_local`),
		c.QueryString(b, target, `SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM from_bucket`); a != bb {
		b.Errorf("the two restores differ")
	}
}

// benchStore starts versitygw with a bucket named after name, sets the AWS
// variables that lbt processes inherit, and returns the server, the bucket
// and a Store of it under prefix.
func benchStore(b *testing.B, name, prefix string) (*s3test.Server, string, storage.Store) {
	b.Helper()
	ctx := context.Background()
	srv, err := s3test.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Stop() })
	bucket, err := srv.CreateBucket(ctx, name)
	if err != nil {
		b.Fatal(err)
	}
	b.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	b.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	b.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(b.TempDir(), "none"))
	store, err := storage.NewS3(storage.S3Config{Bucket: bucket, Prefix: prefix, Endpoint: srv.Endpoint(), Region: s3test.Region, ForcePathStyle: true})
	if err != nil {
		b.Fatal(err)
	}
	return srv, bucket, store
}
