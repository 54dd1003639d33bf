package test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/minio/minio-go/v7"

	"lbt/catalog"
	"lbt/ship"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
	"lbt/test/s3test"
)

// With archiveUrl set (and keepLocalCopies off, the default), archiveDir
// holds only what the bucket lacks: under load, no sealed segment or
// basebackup file that the bucket's covering snapshot points at is still
// local, across a restart of the daemon. Restores at several moments on
// the backup host, which read the local files and the bucket's, equal the
// source; so do inspect, verify --read-data, and a purge that reads the
// files it rewrites from the bucket.
func TestObjectStorage_LocalHoldsOnlyWhatIsNotUploaded(t *testing.T) {
	c := pgtest.Shared(t)
	srv, bucket := s3test.Bucket(t)
	dsn, target, work := objectSource(t, c)
	// Basebackups of several chunks, each its own file; small segments,
	// several a round.
	cfg := s3Config(t, c, dsn, work, "s3bounded", srv, bucket,
		"basebackupChunkSize: 8KiB", "basebackupJobs: 2", "deltasPerFile: 2000", "retentionBasebackups: 1", "backupThreshold: 1000000")
	p := startArchiving(t, c, dsn, work, cfg)
	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "pg/main/"

	var cps []checkpoint
	for i := 1; i <= 4; i++ {
		objectWorkload(t, c, dsn, i)
		cps = append(cps, recordCheckpoint(t, c, dsn, fmt.Sprintf("round %d", i), map[string]string{"t": "t"}))
		if i == 2 {
			stopDaemon(t, p)
			p = lbtrun.Start(t, "backup", "--config", cfg)
		}
		checkUploadedNotLocal(t, client, bucket, prefix, work, syncMarker(t, c, dsn), p)
	}

	// Once the load stops and the bucket covers all of it, the active
	// segment is the one segment file left.
	snap := checkUploadedNotLocal(t, client, bucket, prefix, work, syncMarker(t, c, dsn), p)
	if segs, _ := filepath.Glob(filepath.Join(work, "segments", "*.lbs")); len(segs) != 1 {
		t.Errorf("with the bucket covering everything, archiveDir holds %d segment files, want the active one: %v", len(segs), segs)
	}
	// The copies removed are in the bucket: the host reads them there.
	gone := 0
	for _, f := range snap {
		if _, err := os.Stat(filepath.Join(work, filepath.FromSlash(f.Name))); err != nil {
			gone++
		}
	}
	if gone < 10 {
		t.Errorf("only %d files of the archive's %d are not local: too few to show that the host reads the bucket", gone, len(snap))
	}
	t.Logf("the bucket's snapshot points at %d files, %d of them no longer local", len(snap), gone)

	for i, cp := range cps {
		restoreFromBucket(t, c, cfg, target, fmt.Sprintf("host%d", i+1), cp)
	}
	if code, out := lbtrun.Run(t, "inspect", "history", "--config", cfg, "--table", "t", "--key", "id=1001", "--format", "json"); code != 0 || !strings.Contains(strings.ToLower(out), `"insert"`) {
		t.Errorf("lbt inspect history on the host: exit %d:\n%s", code, out)
	}
	if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--read-data"); code != 0 {
		t.Errorf("lbt verify --read-data on the host: exit %d:\n%s", code, out)
	}

	// A second basebackup lets the purge drop the first and rewrite or
	// remove the segments before it, reading them from the bucket.
	if code, out := lbtrun.Run(t, "basebackup", "--config", cfg, "--table", "t"); code != 0 {
		t.Fatalf("lbt basebackup: exit %d:\n%s", code, out)
	}
	objectWorkload(t, c, dsn, 5)
	if code, out := lbtrun.Run(t, "purge", "--config", cfg); code != 0 {
		t.Fatalf("lbt purge: exit %d:\n%s", code, out)
	}
	objectWorkload(t, c, dsn, 6)
	last := recordCheckpoint(t, c, dsn, "after the purge", map[string]string{"t": "t"})
	checkUploadedNotLocal(t, client, bucket, prefix, work, syncMarker(t, c, dsn), p)
	restoreFromBucket(t, c, cfg, target, "host_purged", last)
	stopDaemon(t, p)

	// A catalog rebuilt from archiveDir alone would not know the files
	// only the bucket holds, and the next upload would delete them.
	if code, out := lbtrun.Run(t, "repair", "--config", cfg, "--rebuild-catalog", "--force"); code == 0 || !strings.Contains(out, "local copies were removed after upload") {
		t.Errorf("lbt repair --rebuild-catalog with files only in the bucket: exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(work, "catalog.db")); err != nil {
		t.Errorf("the refused repair changed the catalog: %v", err)
	}

	// The bucket alone restores the same.
	loseHost(t, work)
	cfg2 := s3Config(t, c, dsn, filepath.Join(t.TempDir(), "fresh"), "s3bounded", srv, bucket)
	restoreFromBucket(t, c, cfg2, target, "bucket_purged", last)
}

// checkUploadedNotLocal waits until the bucket covers marker (UPLOAD.json
// says so), then checks that no file of the covering snapshot is still in
// archiveDir work: UPLOAD.json names a snapshot only once its files'
// local copies are removed. It returns the snapshot's files.
func checkUploadedNotLocal(t *testing.T, client *minio.Client, bucket, prefix, work, marker string, p *lbtrun.Process) []catalog.SnapshotFile {
	t.Helper()
	ctx := t.Context()
	want, err := pglogrepl.ParseLSN(marker)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if p.Exited() || time.Now().After(deadline) {
			st, _, _ := ship.ReadState(work)
			t.Fatalf("the bucket never covered %s (UPLOAD.json: %+v); lbt:\n%s", marker, st, p.Output())
		}
		time.Sleep(100 * time.Millisecond)
		st, ok, err := ship.ReadState(work)
		if err != nil || !ok || st.LastError != "" {
			continue
		}
		lsn, err := pglogrepl.ParseLSN(st.CoveredLSN)
		if err != nil || lsn <= want {
			continue
		}
		// Listed now, the local files are those left after the removal
		// that came before UPLOAD.json was written.
		local := localArchiveFiles(t, work)
		name := ""
		for oi := range client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix + ship.SnapshotPrefix + fmt.Sprintf("%016X-", uint64(lsn))}) {
			if oi.Err == nil {
				name = oi.Key
			}
		}
		if name == "" {
			continue // replaced by newer ones meanwhile: try the next
		}
		path := filepath.Join(t.TempDir(), "snapshot.db")
		if err := client.FGetObject(ctx, bucket, name, path, minio.GetObjectOptions{}); err != nil {
			continue // deleted meanwhile
		}
		files, err := catalog.SnapshotFiles(ctx, path)
		if err != nil {
			t.Fatalf("snapshot %s: %v", name, err)
		}
		for _, f := range files {
			if local[f.Name] {
				t.Errorf("%s is in archiveDir although the bucket holds it and snapshot %s, which points at it", f.Name, name)
			}
			if _, err := client.StatObject(ctx, bucket, prefix+f.Name, minio.StatObjectOptions{}); err != nil && f.Needed {
				t.Errorf("snapshot %s points at %s, which the bucket lacks: %v", name, f.Name, err)
			}
		}
		return files
	}
}

// localArchiveFiles lists the segment and basebackup files in archiveDir
// work by archive name.
func localArchiveFiles(t *testing.T, work string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, dir := range []string{"segments", "base"} {
		err := filepath.WalkDir(filepath.Join(work, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil // removed while walking
			}
			rel, _ := filepath.Rel(work, path)
			out[filepath.ToSlash(rel)] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// The backup host is lost (kill -9, archiveDir deleted) with changes the
// bucket may lack; a new host with the same config and an empty archiveDir
// continues the bucket's archive from its newest snapshot, and the slot
// sends it again what the bucket lacked: every insert is archived exactly
// once, and restores before, across and after the handover equal the
// source, on the new host and from the bucket alone.
func TestObjectStorage_NewHostContinuesTheArchive(t *testing.T) { newHostContinues(t, archiveKeys{}) }

// The same with an encrypted archive. The bucket's catalog snapshots are
// age files, so the new host cannot continue with the recipients alone: it
// is refused in one line that names decryptIdentityFile, and nothing is
// written; with the identity beside the recipients it continues.
func TestEncryption_NewHostContinuesTheArchive(t *testing.T) { newHostContinues(t, encryptedBucket(t)) }

func newHostContinues(t *testing.T, keys archiveKeys) {
	c := pgtest.Shared(t)
	srv, bucket := s3test.Bucket(t)
	dsn, target, work := objectSource(t, c)
	cfg := s3Config(t, c, dsn, work, "s3adopt", srv, bucket, keys.daemon...)
	p := startArchiving(t, c, dsn, work, cfg)
	objectWorkload(t, c, dsn, 1)
	lost := recordCheckpoint(t, c, dsn, "on the lost host", map[string]string{"t": "t"})
	waitConfirmed(t, c, dsn, "s3adopt", syncMarker(t, c, dsn), p)
	objectWorkload(t, c, dsn, 2) // uploaded or not when the host goes
	handover := recordCheckpoint(t, c, dsn, "at the handover", map[string]string{"t": "t"})
	p.Signal(9)
	p.Wait(t, time.Minute)
	loseHost(t, work)

	work2 := filepath.Join(t.TempDir(), "new-host")
	if keys.reader != nil {
		daemonOnly := s3Config(t, c, dsn, work2, "s3adopt", srv, bucket, keys.daemon...)
		code, out := lbtrun.Run(t, "backup", "--config", daemonOnly)
		if code == 0 || !strings.Contains(lastLine(out), "decryptIdentityFile") {
			t.Errorf("a new host with the recipients only: exit %d, want one line naming decryptIdentityFile:\n%s", code, out)
		}
		t.Logf("a new host with the recipients only: exit %d: %s", code, lastLine(out))
		if _, err := os.Stat(filepath.Join(work2, catalog.CatalogFile)); err == nil {
			t.Errorf("the refused new host wrote a catalog")
		}
	}
	cfg2 := s3Config(t, c, dsn, work2, "s3adopt", srv, bucket, slices.Concat(keys.daemon, keys.reader)...)
	p2 := lbtrun.Start(t, "backup", "--config", cfg2)
	waitArchived(t, c, dsn, work2)
	objectWorkload(t, c, dsn, 3)
	after := recordCheckpoint(t, c, dsn, "on the new host", map[string]string{"t": "t"})
	waitConfirmed(t, c, dsn, "s3adopt", syncMarker(t, c, dsn), p2)
	if !strings.Contains(p2.Output(), "continuing the archive in the object store") {
		t.Errorf("the new host does not say it continues the bucket's archive:\n%s", p2.Output())
	}
	// 500 rows at start, 1000 a round: each insert once, none lost.
	if n := countArchived(t, work2, `SELECT coalesce(sum(inserts), 0) FROM blob WHERE table_id IN (SELECT table_id FROM schema_version WHERE relname = 't')`); n != 3500 {
		t.Errorf("the archive holds %d inserts into t, the source made 3500", n)
	}
	for i, cp := range []checkpoint{lost, handover, after} {
		restoreFromBucket(t, c, cfg2, target, fmt.Sprintf("new_host%d", i+1), cp)
	}
	if code, out := lbtrun.Run(t, "verify", "--config", cfg2, "--read-data"); code != 0 {
		t.Errorf("lbt verify --read-data on the new host: exit %d:\n%s", code, out)
	}
	stopDaemon(t, p2)

	loseHost(t, work2)
	cfg3 := s3Config(t, c, dsn, filepath.Join(t.TempDir(), "reader"), "s3adopt", srv, bucket, keys.reader...)
	restoreFromBucket(t, c, cfg3, target, "new_host_bucket", after)
}
