package test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"lbt/test/lbtrun"
	"lbt/test/pgtest"
	"lbt/test/s3test"
)

// An encrypted archive in the bucket: the daemon holds only the recipients;
// no object in the bucket (the catalog snapshots included) and no file
// left on the backup host holds a marker; a fresh machine with the config
// and the identity restores from the bucket alone equal to the source, and
// without the identity the restore is refused in one line.
func TestEncryption_BucketAlone(t *testing.T) {
	c := pgtest.Shared(t)
	srv, bucket := s3test.Bucket(t)
	dsn := c.NewDatabase(t)
	target := c.NewDatabase(t)
	c.Exec(t, dsn, `CREATE TABLE t (id bigserial PRIMARY KEY, v text NOT NULL)`)
	key, rcpt := keygen(t, t.TempDir(), "key.txt")
	work := filepath.Join(t.TempDir(), "work")
	p := lbtrun.Start(t, "backup", "--config", s3Config(t, c, dsn, work, "s3enc", srv, bucket, "encryptRecipients: ["+rcpt+"]"))
	waitArchived(t, c, dsn, work)
	var markers []string
	for i := 0; i < 30; i++ {
		b := make([]byte, 16)
		rand.Read(b)
		m := hex.EncodeToString(b)
		markers = append(markers, m)
		c.Exec(t, dsn, fmt.Sprintf(`INSERT INTO t (v) SELECT '%s' || g FROM generate_series(1, 200) g`, m))
	}
	waitBasebackups(t, work, 1, p)
	c.Exec(t, dsn, `UPDATE t SET v = v || 'u' WHERE id % 5 = 0; DELETE FROM t WHERE id % 13 = 0`)
	end := recordCheckpoint(t, c, dsn, "end", map[string]string{"t": "t"})
	waitConfirmed(t, c, dsn, "s3enc", syncMarker(t, c, dsn), p)
	stopDaemon(t, p)
	checkNoMarkers(t, work, markers)

	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	objects, snapshots := 0, 0
	for _, key := range bucketKeys(t, srv, bucket, "") {
		obj, err := client.GetObject(t.Context(), bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		objects++
		if strings.Contains(key, "/catalog/") {
			snapshots++
			if !bytes.HasPrefix(data, []byte("age-encryption.org/v1\n")) {
				t.Errorf("catalog snapshot %s is not an age file", key)
			}
		}
		for _, m := range markers {
			if bytes.Contains(data, []byte(m)) {
				t.Fatalf("object %s holds marker %s", key, m)
			}
		}
	}
	if snapshots == 0 || objects < 3 {
		t.Fatalf("searched %d objects, %d catalog snapshots", objects, snapshots)
	}
	if err := os.RemoveAll(work); err != nil {
		t.Fatal(err)
	}

	noKey := s3Config(t, c, dsn, filepath.Join(t.TempDir(), "nokey"), "s3enc", srv, bucket)
	if code, out := lbtrun.Run(t, "restore", "--config", noKey, "--table", "t", "--target-dsn", target, "--target-table", "refused"); code == 0 || !strings.Contains(out, "decryptIdentityFile") {
		t.Errorf("restore from the bucket without the identity: exit %d, output:\n%s", code, out)
	}
	fresh := s3Config(t, c, dsn, filepath.Join(t.TempDir(), "fresh"), "s3enc", srv, bucket, "decryptIdentityFile: "+key)
	restoreFromBucket(t, c, fresh, target, "restored", end)
	if code, out := lbtrun.Run(t, "verify", "--config", fresh, "--read-data"); code != 0 {
		t.Errorf("verify --read-data from the bucket: exit %d:\n%s", code, out)
	}
	t.Logf("%d objects, %d catalog snapshots, %d markers searched", objects, snapshots, len(markers))
}
