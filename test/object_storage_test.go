package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"lbt/catalog"
	"lbt/ship"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
	"lbt/test/s3test"
)

// s3Config writes the config of a daemon or reader whose archive is in
// bucket of srv, with archiveDir work, and sets the AWS variables that the
// lbt processes inherit.
func s3Config(t *testing.T, c *pgtest.Cluster, dsn, work, slot string, srv *s3test.Server, bucket string, extra ...string) string {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_REGION", s3test.Region)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	return writeConfig(t, c, dsn, work, slot, append([]string{
		"archiveUrl: s3://" + bucket + "/pg/main",
		"s3Endpoint: " + srv.Endpoint(),
		"s3ForcePathStyle: true",
		"uploadInterval: 1s",
	}, extra...)...)
}

// syncMarker emits a transaction of its own and returns its LSN: once the
// slot has confirmed past it (waitConfirmed), everything committed before
// it is archived and, with confirmAfterUpload, in the bucket.
func syncMarker(t *testing.T, c *pgtest.Cluster, dsn string) string {
	t.Helper()
	return c.QueryString(t, dsn, `SELECT pg_logical_emit_message(true, 'lbt.test.sync', 'upload')`)
}

// waitConfirmed waits until the slot has confirmed past lsn.
func waitConfirmed(t *testing.T, c *pgtest.Cluster, dsn, slot, lsn string, p *lbtrun.Process) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if c.QueryString(t, dsn, fmt.Sprintf(`SELECT coalesce(confirmed_flush_lsn > '%s', false)::text FROM pg_replication_slots WHERE slot_name = '%s'`, lsn, slot)) == "true" {
			return
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("slot %s never confirmed past %s (it has %s); lbt:\n%s", slot, lsn, confirmedLSN(t, c, dsn, slot), p.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitBasebackups waits until the archive in dir has n basebackups.
func waitBasebackups(t *testing.T, dir string, n int, p *lbtrun.Process) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for countArchived(t, dir, `SELECT count(*) FROM basebackup`) < n {
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("no %d basebackups in %s; lbt:\n%s", n, dir, p.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func confirmedLSN(t *testing.T, c *pgtest.Cluster, dsn, slot string) string {
	t.Helper()
	return c.QueryString(t, dsn, fmt.Sprintf(`SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '%s'`, slot))
}

func lsnBelow(t *testing.T, c *pgtest.Cluster, dsn, a, b string) bool {
	t.Helper()
	return c.QueryString(t, dsn, fmt.Sprintf(`SELECT ('%s'::pg_lsn < '%s'::pg_lsn)::text`, a, b)) == "true"
}

// objectWorkload changes t in round i: inserts, updates and deletes in
// several transactions, while noise changes another table throughout.
func objectWorkload(t *testing.T, c *pgtest.Cluster, dsn string, i int) {
	t.Helper()
	c.Exec(t, dsn, fmt.Sprintf(`INSERT INTO t SELECT g, md5(g::text || '%d') FROM generate_series(%d, %d) g`, i, i*1000, i*1000+999))
	c.Exec(t, dsn, fmt.Sprintf(`UPDATE t SET v = v || '-%d' WHERE id %% 7 = %d`, i, i%7))
	c.Exec(t, dsn, fmt.Sprintf(`DELETE FROM t WHERE id %% 11 = %d AND id < %d`, i%11, i*1000))
	c.Exec(t, dsn, fmt.Sprintf(`INSERT INTO noise SELECT g, repeat('x', 200) FROM generate_series(%d, %d) g`, i*500, i*500+499))
}

// objectSource makes the source and target databases of one test, the
// source with tables t and noise, and names the test's archiveDir.
func objectSource(t *testing.T, c *pgtest.Cluster) (dsn, target, work string) {
	t.Helper()
	dsn = c.NewDatabase(t)
	target = c.NewDatabase(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE noise (id int PRIMARY KEY, v text)`)
	return dsn, target, filepath.Join(t.TempDir(), "work")
}

// startArchiving starts the daemon with cfg and waits until t and noise
// are archived, each with a basebackup: a table is archived from its first
// change on, with a basebackup.
func startArchiving(t *testing.T, c *pgtest.Cluster, dsn, work, cfg string) *lbtrun.Process {
	t.Helper()
	p := lbtrun.Start(t, "backup", "--config", cfg)
	waitArchived(t, c, dsn, work)
	c.Exec(t, dsn, `INSERT INTO t SELECT g, 'base' FROM generate_series(1, 500) g; INSERT INTO noise VALUES (0, 'x')`)
	waitBasebackups(t, work, 2, p)
	return p
}

// loseHost deletes the archiveDir work, as when the backup host is lost,
// so that only the bucket is left.
func loseHost(t *testing.T, work string) {
	t.Helper()
	if err := os.RemoveAll(work); err != nil {
		t.Fatal(err)
	}
}

// privateServer starts an object store of the test's own, for a test that
// halts it and so must not disturb others, and makes a bucket on it.
func privateServer(t *testing.T, prefix string) (*s3test.Server, string) {
	t.Helper()
	ctx := t.Context()
	srv, err := s3test.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	bucket, err := srv.CreateBucket(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return srv, bucket
}

// bucketKeys lists the keys of the objects under prefix in bucket.
func bucketKeys(t *testing.T, srv *s3test.Server, bucket, prefix string) []string {
	t.Helper()
	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for oi := range client.ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		keys = append(keys, oi.Key)
	}
	return keys
}

// restoreFromBucket restores t as of cp from the bucket alone, with a fresh
// archiveDir, into a new table of target, and checks it against cp.
func restoreFromBucket(t *testing.T, c *pgtest.Cluster, cfg, target, table string, cp checkpoint) string {
	t.Helper()
	args := []string{"restore", "--config", cfg, "--table", "t", "--target-dsn", target, "--target-table", table}
	if !cp.at.IsZero() {
		args = append(args, "--until", cp.at.UTC().Format(time.RFC3339Nano))
	}
	code, out := lbtrun.Run(t, args...)
	if code != 0 {
		t.Fatalf("lbt restore %s: exit %d:\n%s", cp.name, code, out)
	}
	checkRestored(t, c, target, table, cp.tables["t"], "from the bucket, "+cp.name)
	return out
}

// A daemon archives into the bucket under load; the backup host is then
// lost (its archiveDir deleted); a machine with only the config restores
// every moment from the bucket, equal to the source, downloads less than
// the whole archive for one table, and answers inspect history.
func TestObjectStorage_RestoreFromBucketAlone(t *testing.T) {
	c := pgtest.Shared(t)
	srv, bucket := s3test.Bucket(t)
	dsn, target, work := objectSource(t, c)
	cfg := s3Config(t, c, dsn, work, "s3e2e", srv, bucket)
	p := startArchiving(t, c, dsn, work, cfg)

	var cps []checkpoint
	for i := 1; i <= 4; i++ {
		objectWorkload(t, c, dsn, i)
		cps = append(cps, recordCheckpoint(t, c, dsn, fmt.Sprintf("round %d", i), map[string]string{"t": "t"}))
	}
	// The noise table alone grows the archive past what t needs.
	for i := 5; i <= 12; i++ {
		c.Exec(t, dsn, fmt.Sprintf(`INSERT INTO noise SELECT g, (SELECT string_agg(md5(g::text || k::text), '') FROM generate_series(1, 10) k) FROM generate_series(%d, %d) g`, i*5000, i*5000+4999))
	}
	end := syncMarker(t, c, dsn)
	waitConfirmed(t, c, dsn, "s3e2e", end, p)

	code, out := lbtrun.Run(t, "status", "--config", cfg, "--format", "json")
	var st struct {
		Upload *struct {
			CoveredLSN   string `json:"covered_lsn"`
			BacklogFiles int    `json:"backlog_files"`
		} `json:"upload"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err != nil || st.Upload == nil || st.Upload.CoveredLSN == "" {
		t.Errorf("lbt status --format json (exit %d) shows no upload state: %v\n%s", code, err, out)
	}

	if _, out := lbtrun.Run(t, "status", "--config", cfg); !strings.Contains(out, "covered up to ") {
		t.Errorf("lbt status shows no upload line:\n%s", out)
	}

	stopDaemon(t, p)
	loseHost(t, work)
	// Old snapshots are deleted as new ones arrive: the newest two stay.
	if snapshots := len(bucketKeys(t, srv, bucket, "pg/main/catalog/")); snapshots < 1 || snapshots > 2 {
		t.Errorf("the bucket holds %d catalog snapshots, want the newest one or two", snapshots)
	}

	fresh := filepath.Join(t.TempDir(), "fresh")
	cfg2 := s3Config(t, c, dsn, fresh, "s3e2e", srv, bucket)
	for i, cp := range cps {
		out := restoreFromBucket(t, c, cfg2, target, fmt.Sprintf("r%d", i+1), cp)
		if i == 0 {
			var got, total float64
			var gotUnit, totalUnit, url string
			var pct float64
			line := lastLine(out)
			if _, err := fmt.Sscanf(line, "downloaded %f %s of the archive's %f %s in %s (%f%%)", &got, &gotUnit, &total, &totalUnit, &url, &pct); err != nil {
				t.Fatalf("restore from the bucket does not say what it downloaded (%v):\n%s", err, out)
			}
			t.Logf("restore of t as of %s: %s", cp.name, line)
			if pct >= 50 {
				t.Errorf("a one-table restore downloaded %.1f%% of the archive", pct)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(fresh, "catalog.db")); err == nil {
		t.Errorf("a reader wrote a live catalog into the fresh archiveDir")
	}

	code, out = lbtrun.Run(t, "inspect", "history", "--config", cfg2, "--table", "t", "--key", "id=1001", "--format", "json")
	if code != 0 || !strings.Contains(out, `"insert"`) && !strings.Contains(out, `"INSERT"`) {
		t.Errorf("lbt inspect history from the bucket: exit %d:\n%s", code, out)
	}
	code, out = lbtrun.Run(t, "verify", "--config", cfg2)
	if code != 0 {
		t.Errorf("lbt verify from the bucket: exit %d:\n%s", code, out)
	}
	// A new archive must not mix its files with the bucket's: a daemon
	// of another database with an empty archiveDir would continue the
	// bucket's archive (TestObjectStorage_NewHostContinuesTheArchive),
	// and is refused as the source of another archive.
	other := c.NewDatabase(t)
	cfg3 := s3Config(t, c, other, filepath.Join(t.TempDir(), "other"), "s3e2eother", srv, bucket)
	code, out = lbtrun.Run(t, "backup", "--config", cfg3)
	if code == 0 || !strings.Contains(out, "belongs to database") {
		t.Errorf("lbt backup of a new archive into the bucket of another: exit %d:\n%s", code, out)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// The object store goes away under load, for at least 30 s (the issue's
// outage) and until lbt status has shown the backlog (at most a minute):
// the daemon archives on locally, confirms nothing the store lacks, shows
// the backlog in lbt status, and catches up when the store returns; the
// bucket then restores the table exactly, nothing lost or duplicated.
func TestObjectStorage_StoreOutage(t *testing.T) { storeOutage(t, archiveKeys{}) }

// archiveKeys are the config lines of an encrypted archive: the daemon's
// (the recipients only) and a reader's (the identity); none for a
// plaintext one.
type archiveKeys struct{ daemon, reader []string }

func storeOutage(t *testing.T, keys archiveKeys) {
	c := pgtest.Shared(t)
	srv, bucket := privateServer(t, "outage")
	ctx := t.Context()
	dsn, target, work := objectSource(t, c)
	cfg := s3Config(t, c, dsn, work, "s3outage", srv, bucket, keys.daemon...)
	p := startArchiving(t, c, dsn, work, cfg)
	objectWorkload(t, c, dsn, 1)
	waitConfirmed(t, c, dsn, "s3outage", syncMarker(t, c, dsn), p)

	srv.Halt()
	before := confirmedLSN(t, c, dsn, "s3outage")
	var during string
	sawBacklog := false
	outageStart := time.Now()
	for i := 2; time.Since(outageStart) < time.Minute && (!sawBacklog || time.Since(outageStart) < 30*time.Second); i++ {
		objectWorkload(t, c, dsn, i)
		during = syncMarker(t, c, dsn)
		code, out := lbtrun.Run(t, "status", "--config", cfg, "--format", "json")
		var st struct {
			Upload struct {
				BacklogFiles    int        `json:"backlog_files"`
				OldestUnshipped *time.Time `json:"oldest_unshipped_commit"`
				LastError       string     `json:"last_error"`
			} `json:"upload"`
		}
		if start := strings.Index(out, "{"); start >= 0 && json.Unmarshal([]byte(out[start:]), &st) == nil &&
			st.Upload.BacklogFiles > 0 && st.Upload.OldestUnshipped != nil && st.Upload.LastError != "" {
			if !sawBacklog {
				t.Logf("during the outage, lbt status (exit %d): backlog %d files, oldest unshipped commit %s, last error %q",
					code, st.Upload.BacklogFiles, st.Upload.OldestUnshipped.Format(time.RFC3339), st.Upload.LastError)
			}
			sawBacklog = true
		}
		time.Sleep(time.Second)
	}
	if !sawBacklog {
		t.Errorf("lbt status never showed the upload backlog during the outage")
	}
	cp := recordCheckpoint(t, c, dsn, "after the outage's writes", map[string]string{"t": "t"})
	if now := confirmedLSN(t, c, dsn, "s3outage"); !lsnBelow(t, c, dsn, now, during) {
		t.Errorf("with the store down the slot confirmed %s, past what the store holds (%s before the outage, last marker %s)", now, before, during)
	}

	if err := srv.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, c, dsn, "s3outage", syncMarker(t, c, dsn), p)
	if p.Exited() {
		t.Fatalf("lbt backup exited:\n%s", p.Output())
	}
	stopDaemon(t, p)
	if !strings.Contains(p.Output(), "upload failed, retrying") || !strings.Contains(p.Output(), "uploads resumed") {
		t.Errorf("the log does not tell of the outage and the recovery:\n%s", p.Output())
	}
	loseHost(t, work)
	cfg2 := s3Config(t, c, dsn, filepath.Join(t.TempDir(), "fresh"), "s3outage", srv, bucket, keys.reader...)
	restoreFromBucket(t, c, cfg2, target, "after_outage", cp)
}

// kill -9 of the daemon while it uploads, then a restart: the bucket
// restores exactly, as the local archive does (nothing lost or twice).
func TestObjectStorage_KillDuringUploads(t *testing.T) { killDuringUploads(t, archiveKeys{}) }

// The same with an encrypted archive, whose daemon holds the recipients
// only: each restart seals the active segment it cannot append to and
// begins the next, so a kill often lands while a segment is being created.
func TestEncryption_KillDuringUploads(t *testing.T) { killDuringUploads(t, encryptedBucket(t)) }

// encryptedBucket makes a key and returns its archiveKeys.
func encryptedBucket(t *testing.T) archiveKeys {
	t.Helper()
	key, rcpt := keygen(t, t.TempDir(), "key.txt")
	return archiveKeys{daemon: []string{"encryptRecipients: [" + rcpt + "]"}, reader: []string{"decryptIdentityFile: " + key}}
}

func killDuringUploads(t *testing.T, keys archiveKeys) {
	c := pgtest.Shared(t)
	srv, bucket := s3test.Bucket(t)
	dsn, target, work := objectSource(t, c)
	// Basebackups of several chunks, each its own object.
	cfg := s3Config(t, c, dsn, work, "s3kill", srv, bucket, append([]string{"basebackupChunkSize: 8KiB", "basebackupJobs: 2"}, keys.daemon...)...)
	p := startArchiving(t, c, dsn, work, cfg)
	for i := 1; i <= 6; i++ {
		objectWorkload(t, c, dsn, i)
		if i%2 == 0 {
			// Uploads run every second; kill in the middle of them.
			p.Signal(9)
			p.Wait(t, time.Minute)
			p = lbtrun.Start(t, "backup", "--config", cfg)
		}
	}
	cp := recordCheckpoint(t, c, dsn, "after the kills", map[string]string{"t": "t"})
	waitConfirmed(t, c, dsn, "s3kill", syncMarker(t, c, dsn), p)
	stopDaemon(t, p)
	loseHost(t, work)
	chunks := 0
	for _, key := range bucketKeys(t, srv, bucket, "pg/main/base/") {
		if strings.HasSuffix(key, ".1.copy.lz4") {
			chunks++
		}
	}
	if chunks == 0 {
		t.Errorf("no basebackup of several chunks in the bucket")
	}
	cfg2 := s3Config(t, c, dsn, filepath.Join(t.TempDir(), "fresh"), "s3kill", srv, bucket, keys.reader...)
	restoreFromBucket(t, c, cfg2, target, "after_kills", cp)
	if code, out := lbtrun.Run(t, "verify", "--config", cfg2, "--read-data"); code != 0 {
		t.Errorf("lbt verify --read-data from the bucket: exit %d:\n%s", code, out)
	}
}

// A purge reaches the bucket: once two snapshots newer than the purge are
// uploaded, the purged basebackups are gone from the bucket too (catalog
// first, then objects), and the bucket still restores the table exactly.
func TestObjectStorage_PurgeReachesBucket(t *testing.T) {
	c := pgtest.Shared(t)
	srv, bucket := s3test.Bucket(t)
	dsn, target, work := objectSource(t, c)
	// The local copies stay (keepLocalCopies), so that the purge's
	// removals can be seen in archiveDir and then in the bucket.
	cfg := s3Config(t, c, dsn, work, "s3purge", srv, bucket, "retentionBasebackups: 1", "keepLocalCopies: true")
	p := startArchiving(t, c, dsn, work, cfg)
	objectWorkload(t, c, dsn, 1)
	lbtBasebackup(t, cfg, "t")
	objectWorkload(t, c, dsn, 2)
	waitConfirmed(t, c, dsn, "s3purge", syncMarker(t, c, dsn), p)
	bases, _ := filepath.Glob(filepath.Join(work, "base", "*", "*.copy.lz4"))

	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	inBucket := func(name string) bool {
		rel, _ := filepath.Rel(work, name)
		_, err := client.StatObject(t.Context(), bucket, "pg/main/"+filepath.ToSlash(rel), minio.StatObjectOptions{})
		return err == nil
	}
	for _, b := range bases {
		if !inBucket(b) {
			t.Fatalf("%s is not in the bucket before the purge", b)
		}
	}

	if code, out := lbtrun.Run(t, "purge", "--config", cfg); code != 0 {
		t.Fatalf("lbt purge: exit %d:\n%s", code, out)
	}
	var purged []string
	for _, b := range bases {
		if _, err := os.Stat(b); err != nil {
			purged = append(purged, b)
		}
	}
	if len(purged) == 0 {
		t.Fatalf("purge removed no basebackup of %v", bases)
	}
	// Two snapshots after the purge: the kept ones no longer point at
	// the purged files.
	for i := 3; i <= 4; i++ {
		objectWorkload(t, c, dsn, i)
		waitConfirmed(t, c, dsn, "s3purge", syncMarker(t, c, dsn), p)
	}
	objectWorkload(t, c, dsn, 5)
	cp := recordCheckpoint(t, c, dsn, "after the purge", map[string]string{"t": "t"})
	waitConfirmed(t, c, dsn, "s3purge", syncMarker(t, c, dsn), p)
	for _, b := range purged {
		if inBucket(b) {
			t.Errorf("purged %s is still in the bucket", b)
		}
	}
	stopDaemon(t, p)
	loseHost(t, work)
	cfg2 := s3Config(t, c, dsn, filepath.Join(t.TempDir(), "fresh"), "s3purge", srv, bucket)
	restoreFromBucket(t, c, cfg2, target, "after_purge", cp)
	if code, out := lbtrun.Run(t, "verify", "--config", cfg2); code != 0 {
		t.Errorf("lbt verify from the bucket after the purge: exit %d:\n%s", code, out)
	}
}

// A store that does not answer when the daemon starts does not stop it: it
// archives locally, confirms nothing the store lacks, and uploads once the
// store answers.
func TestObjectStorage_UnreachableAtStart(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := t.Context()
	srv, bucket := privateServer(t, "late")
	dsn, target, work := objectSource(t, c)
	cfg := s3Config(t, c, dsn, work, "s3late", srv, bucket)
	srv.Halt()
	p := startArchiving(t, c, dsn, work, cfg)
	objectWorkload(t, c, dsn, 1)
	cp := recordCheckpoint(t, c, dsn, "written while the store was down", map[string]string{"t": "t"})
	marker := syncMarker(t, c, dsn)
	waitArchived(t, c, dsn, work)
	if now := confirmedLSN(t, c, dsn, "s3late"); !lsnBelow(t, c, dsn, now, marker) {
		t.Errorf("with the store down since start the slot confirmed %s, past marker %s", now, marker)
	}
	if err := srv.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, c, dsn, "s3late", marker, p)
	stopDaemon(t, p)
	if !strings.Contains(p.Output(), "not reachable at start") {
		t.Errorf("the log does not say the store was unreachable at start:\n%s", p.Output())
	}
	loseHost(t, work)
	cfg2 := s3Config(t, c, dsn, filepath.Join(t.TempDir(), "fresh"), "s3late", srv, bucket)
	restoreFromBucket(t, c, cfg2, target, "late", cp)
}

// On a source with no changes, a basebackup taken while the daemon runs
// reaches the bucket on the upload clock, with a catalog snapshot that
// points at it, although no change seals a segment; the bucket alone then
// restores the table from it, equal to the source.
func TestObjectStorage_IdleSourceUploadsBasebackup(t *testing.T) {
	c := pgtest.Shared(t)
	srv, bucket := s3test.Bucket(t)
	dsn, target, work := objectSource(t, c)
	cfg := s3Config(t, c, dsn, work, "s3idle", srv, bucket)
	p := startArchiving(t, c, dsn, work, cfg)
	objectWorkload(t, c, dsn, 1)
	cp := recordCheckpoint(t, c, dsn, "before the idle basebackup", map[string]string{"t": "t"})
	waitConfirmed(t, c, dsn, "s3idle", syncMarker(t, c, dsn), p)

	// From here on the source changes nothing.
	lbtBasebackup(t, cfg, "t")
	cat, err := catalog.OpenReadOnly(t.Context(), work)
	if err != nil {
		t.Fatal(err)
	}
	var base string
	err = cat.DB().QueryRow(`SELECT path FROM basebackup ORDER BY id DESC LIMIT 1`).Scan(&base)
	cat.Close()
	if err != nil {
		t.Fatal(err)
	}
	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "pg/main/"
	deadline := time.Now().Add(time.Minute)
	for !snapshotPointsAt(t, client, bucket, prefix, base) {
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("no catalog snapshot in the bucket points at the basebackup %s taken on the idle source; lbt:\n%s", base, p.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := client.StatObject(t.Context(), bucket, prefix+base, minio.StatObjectOptions{}); err != nil {
		t.Errorf("a snapshot points at %s, which the bucket lacks: %v", base, err)
	}
	stopDaemon(t, p)
	loseHost(t, work)
	cfg2 := s3Config(t, c, dsn, filepath.Join(t.TempDir(), "fresh"), "s3idle", srv, bucket)
	restoreFromBucket(t, c, cfg2, target, "idle", cp)
	if code, out := lbtrun.Run(t, "verify", "--config", cfg2, "--read-data"); code != 0 {
		t.Errorf("lbt verify --read-data from the bucket: exit %d:\n%s", code, out)
	}
}

// snapshotPointsAt says whether the newest catalog snapshot in the bucket
// lists the archive file name.
func snapshotPointsAt(t *testing.T, client *minio.Client, bucket, prefix, name string) bool {
	t.Helper()
	ctx := t.Context()
	newest := ""
	for oi := range client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix + ship.SnapshotPrefix}) {
		if oi.Err == nil && oi.Key > newest {
			newest = oi.Key
		}
	}
	if newest == "" {
		return false
	}
	path := filepath.Join(t.TempDir(), "snapshot.db")
	if err := client.FGetObject(ctx, bucket, newest, path, minio.GetObjectOptions{}); err != nil {
		return false // deleted meanwhile: look again
	}
	files, err := catalog.SnapshotFiles(ctx, path)
	if err != nil {
		t.Fatalf("snapshot %s: %v", newest, err)
	}
	for _, f := range files {
		if f.Name == name {
			return true
		}
	}
	return false
}
