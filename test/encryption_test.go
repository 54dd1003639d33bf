package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/crypt"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// An encrypted archive end to end, through the lbt binary: keygen, the
// daemon with the recipients only, basebackups, a key rotation, restores
// with an identity file holding both keys, the refusals without one,
// verify, a rebuilt catalog, a purge that rewrites a segment. No file of
// the archive holds any of the marker values the workload wrote, at any
// step.
func TestEncryption_EndToEnd(t *testing.T) {
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	keyDir := t.TempDir()
	dir := t.TempDir()
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text, n int)`)

	key1, r1 := keygen(t, keyDir, "key1.txt")
	key2, r2 := keygen(t, keyDir, "key2.txt")
	key3, _ := keygen(t, keyDir, "key3.txt") // never used to write
	if code, out := lbtrun.Run(t, "keygen", "-o", key1); code != 2 || !strings.Contains(out, "exists") {
		t.Errorf("keygen over an existing file: exit %d, output:\n%s", code, out)
	}
	both := filepath.Join(keyDir, "both.txt")
	writeFile(t, both, readFile(t, key1)+readFile(t, key2))

	config := func(slot string, extra ...string) string {
		return writeConfig(t, c, dsn, dir, slot, append([]string{"deltasPerFile: 200"}, extra...)...)
	}
	withKey1 := config("enc", "encryptRecipients: ["+r1+"]")
	withKey2 := config("enc", "encryptRecipients: ["+r2+"]")
	reader := func(identity string) string {
		if identity == "" {
			return config("enc")
		}
		return config("enc", "decryptIdentityFile: "+identity)
	}

	var markers []string
	mark := func() string {
		b := make([]byte, 16)
		rand.Read(b)
		m := hex.EncodeToString(b)
		markers = append(markers, m)
		return m
	}
	// Transactions of ten statements, every marker in a row's v; with pad,
	// rows of incompressible text, that fill a segment with few changes.
	const perTx = 10
	run := func(stmts []string) {
		for len(stmts) > 0 {
			n := min(perTx, len(stmts))
			c.Exec(t, dsn, strings.Join(stmts[:n], ";\n"))
			stmts = stmts[n:]
		}
	}
	insert := func(from, to int, pad bool) {
		var stmts []string
		for id := from; id < to; id++ {
			v := mark()
			if pad {
				b := make([]byte, 512)
				rand.Read(b)
				v += " " + hex.EncodeToString(b)
			}
			stmts = append(stmts, fmt.Sprintf("INSERT INTO t VALUES (%d, '%s', %d)", id, v, id))
		}
		run(stmts)
	}
	update := func(from, to int) {
		var stmts []string
		for id := from; id < to; id++ {
			stmts = append(stmts, fmt.Sprintf("UPDATE t SET v = '%s', n = n + 1 WHERE id = %d", mark(), id))
		}
		run(stmts)
	}

	// Key 1: the daemon has the recipient only.
	p := lbtrun.Start(t, "backup", "--config", withKey1)
	waitArchived(t, c, dsn, dir)
	insert(0, 600, false)
	waitArchived(t, c, dsn, dir)
	// The daemon takes the new table's first basebackup itself; waiting
	// for it makes the count below independent of whether its scheduler
	// looked before lbt basebackup ran.
	waitBasebackups(t, dir, 1, p)
	lbtBasebackup(t, withKey1, "t")
	update(0, 400)
	c.Exec(t, dsn, `DELETE FROM t WHERE id % 7 = 0`)
	before := recordCheckpoint(t, c, dsn, "before rotation", map[string]string{"t": "t"})
	waitArchived(t, c, dsn, dir)
	// While the daemon runs, its active segment included.
	if n := countArchived(t, dir, `SELECT count(*) FROM segment WHERE sealed = 1`); n == 0 {
		t.Fatal("no sealed segment yet: the search would not cover one")
	}
	checkNoMarkers(t, dir, markers)
	stopDaemon(t, p)
	lastSegment := countArchived(t, dir, `SELECT max(id) FROM segment`)
	// What a kill -9 between creating the next segment's file and writing
	// its header leaves (wrapping its data key takes a while): the restart
	// removes the empty file and goes on.
	writeFile(t, filepath.Join(dir, catalog.SegmentName(int64(lastSegment)+1)), "")

	// Rotation: new files go to key 2. The daemon cannot append to the
	// active segment without an identity: it seals it and begins the next.
	p = lbtrun.Start(t, "backup", "--config", withKey2)
	waitArchived(t, c, dsn, dir)
	// A segment of large rows, then a basebackup, then a few small
	// updates that fill it: purge will find it mostly empty.
	insert(600, 790, true)
	waitArchived(t, c, dsn, dir)
	lbtBasebackup(t, withKey2, "t") // after the rotation
	update(600, 640)
	waitArchived(t, c, dsn, dir)
	update(640, 700)
	after := recordCheckpoint(t, c, dsn, "after rotation", map[string]string{"t": "t"})
	waitArchived(t, c, dsn, dir)
	checkNoMarkers(t, dir, markers)
	stopDaemon(t, p)
	checkNoMarkers(t, dir, markers)

	checkKeyOf(t, dir, lastSegment, key1, key2)

	// Restores at both moments read files of both keys.
	restoreEquals := func(cfg, target string, until time.Time, want tableState) {
		t.Helper()
		code, out := lbtrun.Run(t, "restore", "--config", cfg, "--table", "t", "--until", until.Format(time.RFC3339Nano), "--target-table", target, "--quiet")
		if code != 0 {
			t.Fatalf("restore into %s: exit %d:\n%s", target, code, out)
		}
		checkRestored(t, c, dsn, target, want, "restore into "+target)
	}
	restoreEquals(reader(both), "before_rotation", before.at, before.tables["t"])
	restoreEquals(reader(both), "after_rotation", after.at, after.tables["t"])

	// Without the identity, or with a wrong one: one line, non-zero exit,
	// nothing restored. Key 1 alone does not open what key 2 wrote.
	for _, c := range []struct{ identity, want string }{
		{"", "lbt restore: archive is encrypted: decryptIdentityFile is not set"},
		{key3, "lbt restore: archive is encrypted: decryptIdentityFile " + key3 + " does not hold a key for it"},
		{key1, "lbt restore: archive is encrypted: decryptIdentityFile " + key1 + " does not hold a key for it"},
	} {
		code, out := lbtrun.Run(t, "restore", "--config", reader(c.identity), "--table", "t", "--target-table", "refused")
		out = strings.TrimSpace(out)
		if code == 0 || strings.Contains(out, "\n") || !strings.HasPrefix(out, c.want) {
			t.Errorf("restore with identity %q: exit %d, output:\n%s\nwant one line beginning %q", c.identity, code, out, c.want)
		}
	}
	if got := c.QueryString(t, dsn, `SELECT to_regclass('refused') IS NULL`); got != "t" {
		t.Error("a refused restore left a table behind")
	}

	// A crypto setting that does not fit the archive is refused, not ignored.
	if code, out := lbtrun.Run(t, "status", "--config", config("enc", "decryptIdentityFile: "+filepath.Join(keyDir, "missing.txt"))); code == 0 || !strings.Contains(out, "decryptIdentityFile") {
		t.Errorf("missing identity file: exit %d, output:\n%s", code, out)
	}
	if code, out := lbtrun.Run(t, "basebackup", "--config", reader(both), "--table", "t"); code == 0 || !strings.Contains(out, "is encrypted: set encryptRecipients") {
		t.Errorf("basebackup without recipients: exit %d, output:\n%s", code, out)
	}

	// The archive verifies with its data read, and its catalog rebuilds
	// from the encrypted files alone.
	if code, out := lbtrun.Run(t, "verify", "--config", reader(both), "--read-data"); code != 0 {
		t.Errorf("verify --read-data: exit %d:\n%s", code, out)
	}
	if code, out := lbtrun.Run(t, "repair", "--config", reader(""), "--rebuild-catalog", "--force"); code == 0 || !strings.Contains(out, "archive is encrypted") {
		t.Errorf("rebuild without identity: exit %d, output:\n%s", code, out)
	}
	if code, out := lbtrun.Run(t, "repair", "--config", reader(both), "--rebuild-catalog", "--force"); code != 0 {
		t.Fatalf("rebuild: exit %d:\n%s", code, out)
	}
	restoreEquals(reader(both), "after_rebuild", after.at, after.tables["t"])
	if code, out := lbtrun.Run(t, "inspect", "history", "--config", reader(both), "--table", "t", "--key", "1"); code != 0 || !strings.Contains(out, "UPDATE") {
		t.Errorf("inspect history: exit %d, output:\n%s", code, out)
	}
	checkNoMarkers(t, dir, markers)

	// The control: decrypted, the blobs' frames (LZ4-compressed, as a
	// plaintext archive stores them) do hold markers whole, so the search
	// above would have found them.
	if n := markersInFrames(t, dir, both, markers); n == 0 {
		t.Fatal("no marker is whole in the decrypted frames: the search proves nothing")
	} else {
		t.Logf("%d of %d markers are whole in the decrypted, compressed frames", n, len(markers))
	}

	// Purge keeps the newest basebackup: segments of the history before it
	// go, and those left mostly empty are rewritten, read with the
	// identities and sealed anew to key 2.
	purger := config("enc", "encryptRecipients: ["+r2+"]", "decryptIdentityFile: "+both, "retentionBasebackups: 1")
	code, out := lbtrun.Run(t, "purge", "--config", purger)
	if code != 0 || !strings.Contains(out, "purged public.t") {
		t.Fatalf("purge: exit %d:\n%s", code, out)
	}
	t.Logf("purge: %s", strings.TrimSpace(out))
	if m := regexp.MustCompile(`rewrote (\d+)`).FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Errorf("purge rewrote no segment: the test does not cover a rewrite")
	}
	rewritten, _ := filepath.Glob(filepath.Join(dir, "segments", "-*.lbs"))
	for _, path := range rewritten {
		id, _ := catalog.ParseSegmentName(filepath.Base(path))
		if !opensWith(t, key2, path, id) || opensWith(t, key1, path, id) {
			t.Errorf("rewritten segment %s is not sealed to the recipients of the day (key 2) alone", path)
		}
	}
	restoreEquals(reader(both), "after_purge", after.at, after.tables["t"])
	if code, out := lbtrun.Run(t, "verify", "--config", reader(both), "--read-data"); code != 0 {
		t.Errorf("verify --read-data after purge: exit %d:\n%s", code, out)
	}
	checkNoMarkers(t, dir, markers)
}

// checkKeyOf checks that the segments up to lastOld, and the two
// basebackups before the rotation, open with the old identity only, and
// the later files with the new one only: the active segment of the
// rotation's restart was sealed, not appended to with the old key.
func checkKeyOf(t *testing.T, dir string, lastOld int, oldID, newID string) {
	t.Helper()
	oldKeys, err := crypt.New(nil, oldID)
	if err != nil {
		t.Fatal(err)
	}
	newKeys, err := crypt.New(nil, newID)
	if err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "segments", "*.lbs"))
	for _, path := range segs {
		id, _ := catalog.ParseSegmentName(filepath.Base(path))
		old := id <= int64(lastOld)
		if o, n := opens(t, oldKeys, path, id), opens(t, newKeys, path, id); o != old || n == old {
			t.Errorf("segment %d (written before the rotation: %v) opens with the old key: %v, with the new: %v", id, old, o, n)
		}
	}
	bases, _ := filepath.Glob(filepath.Join(dir, "base", "*", "*"))
	if len(bases) != 6 {
		t.Fatalf("%d basebackup files and sidecars, want 3 of each", len(bases))
	}
	oldFiles := 0
	for _, path := range bases {
		o, n := opens(t, oldKeys, path, 0), opens(t, newKeys, path, 0)
		if o == n {
			t.Errorf("%s opens with the old key: %v, with the new: %v", path, o, n)
		}
		if o {
			oldFiles++
		}
	}
	if oldFiles != 4 {
		t.Errorf("%d files of the basebackups before the rotation open with the old key, want 4", oldFiles)
	}
}

// opens reports whether k's identities open the file at path: segment seg,
// or a file written whole when seg is 0.
func opens(t *testing.T, k *crypt.Keys, path string, seg int64) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if seg != 0 {
		_, err = catalog.OpenSegmentReader(f, seg, k)
	} else {
		_, err = k.Reader(f)
	}
	if err != nil && !errors.Is(err, crypt.ErrNoKey) {
		t.Fatalf("%s: %v", path, err)
	}
	return err == nil
}

// opensWith is opens with the identities of the file identity.
func opensWith(t *testing.T, identity, path string, seg int64) bool {
	t.Helper()
	k, err := crypt.New(nil, identity)
	if err != nil {
		t.Fatal(err)
	}
	return opens(t, k, path, seg)
}

// markersInFrames counts the markers found whole in the framed (compressed,
// not encrypted) blobs of the archive.
func markersInFrames(t *testing.T, dir, identity string, markers []string) int {
	t.Helper()
	ctx := context.Background()
	keys, err := crypt.New(nil, identity)
	if err != nil {
		t.Fatal(err)
	}
	cat := openArchive(t, dir)
	defer cat.Close()
	if err := cat.UseKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	rows, err := cat.DB().QueryContext(ctx, `SELECT segment_id, offset, length FROM blob ORDER BY segment_id, offset`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var frames []byte
	segs := map[int64]*catalog.SegmentReader{}
	for rows.Next() {
		var seg, off, length int64
		if err := rows.Scan(&seg, &off, &length); err != nil {
			t.Fatal(err)
		}
		sr := segs[seg]
		if sr == nil {
			f, err := os.Open(filepath.Join(dir, catalog.SegmentName(seg)))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if sr, err = catalog.OpenSegmentReader(f, seg, cat.Keys()); err != nil {
				t.Fatal(err)
			}
			segs[seg] = sr
		}
		_, frame, _, err := sr.ReadBlob(off, length, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, frame...)
	}
	n := 0
	for _, m := range markers {
		if bytes.Contains(frames, []byte(m)) {
			n++
		}
	}
	return n
}

// checkNoMarkers searches every file under the archive for every marker,
// as raw bytes: LZ4 keeps only some of them whole, so a sample proves
// nothing. The live catalog (catalog.db and its -wal) is searched too: it
// is plaintext (docs/FORMAT.md says why), but holds row keys only as
// hashes and no column values, and the markers are in a column that is no
// key.
func checkNoMarkers(t *testing.T, dir string, markers []string) {
	t.Helper()
	files := 0
	eachFile(t, dir, func(path string, data []byte) {
		files++
		for _, m := range markers {
			if bytes.Contains(data, []byte(m)) {
				t.Errorf("%s holds the marker %s", path, m)
				break
			}
		}
	})
	if files < 3 {
		t.Fatalf("searched only %d files", files)
	}
}

func keygen(t *testing.T, dir, name string) (path, recipient string) {
	t.Helper()
	path = filepath.Join(dir, name)
	code, out := lbtrun.Run(t, "keygen", "-o", path)
	recipient = strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(recipient, "age1") || strings.Contains(recipient, "\n") {
		t.Fatalf("keygen: exit %d, output:\n%s", code, out)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keygen wrote %s: %v, mode %v", path, err, st.Mode())
	}
	if text := readFile(t, path); !strings.Contains(text, "AGE-SECRET-KEY-1") || !strings.Contains(text, recipient) {
		t.Fatalf("%s holds no identity for %s", path, recipient)
	}
	return path, recipient
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Basebackups in chunks of an encrypted archive, both a COPY on two
// connections and one built from the archive, are age files chunk by chunk:
// no file holds a marker, verify --read-data checks every chunk, and a
// restore from each equals the source.
func TestEncryption_ChunkedBasebackups(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE t (id bigserial PRIMARY KEY, note text NOT NULL)`)
	key, rcpt := keygen(t, t.TempDir(), "key.txt")
	chunks := []string{"basebackupChunkSize: 64KiB", "basebackupJobs: 2"}
	daemon := writeConfig(t, c, dsn, dir, "enc_chunks", append([]string{"encryptRecipients: [" + rcpt + "]"}, chunks...)...)
	both := writeConfig(t, c, dsn, dir, "enc_chunks", append([]string{"encryptRecipients: [" + rcpt + "]", "decryptIdentityFile: " + key}, chunks...)...)
	reader := writeConfig(t, c, dsn, dir, "enc_chunks", "decryptIdentityFile: "+key)
	p := lbtrun.Start(t, "backup", "--config", daemon)
	waitArchived(t, c, dsn, dir)

	var markers []string
	insert := func(n int) {
		for i := 0; i < n; i++ {
			b := make([]byte, 16)
			rand.Read(b)
			m := hex.EncodeToString(b)
			markers = append(markers, m)
			c.Exec(t, dsn, fmt.Sprintf(`INSERT INTO t (note) SELECT '%s' || g FROM generate_series(1, 400) g`, m))
		}
	}
	insert(40)
	waitArchived(t, c, dsn, dir)
	// The daemon's own basebackup of the new table, in chunks too: waited
	// for, so that the count below does not depend on when it looked.
	waitBasebackups(t, dir, 1, p)
	lbtBasebackup(t, daemon, "t")
	insert(10)
	c.Exec(t, dsn, `UPDATE t SET note = note || 'u' WHERE id % 7 = 0; DELETE FROM t WHERE id % 11 = 0`)
	end := recordCheckpoint(t, c, dsn, "end", map[string]string{"t": "t"})
	waitArchived(t, c, dsn, dir)
	if code, out := lbtrun.Run(t, "restore", "--config", reader, "--table", "t", "--target-table", "from_copy", "--quiet"); code != 0 {
		t.Fatalf("restore from the chunked basebackup: exit %d:\n%s", code, out)
	}
	checkRestored(t, c, dsn, "from_copy", end.tables["t"], "restore from a chunked basebackup")
	lbtBasebackup(t, both, "t", "--from-archive")
	stopDaemon(t, p)
	if n := countArchived(t, dir, `SELECT count(*) FROM basebackup WHERE chunks != ''`); n != 3 {
		t.Fatalf("%d basebackups in chunks, want 3 (the daemon's, the COPY's and the one from the archive)", n)
	}
	if code, out := lbtrun.Run(t, "restore", "--config", reader, "--table", "t", "--target-table", "from_archive", "--quiet"); code != 0 {
		t.Fatalf("restore from the basebackup from the archive: exit %d:\n%s", code, out)
	}
	checkRestored(t, c, dsn, "from_archive", end.tables["t"], "restore from a basebackup built from the archive")
	if code, out := lbtrun.Run(t, "verify", "--config", reader, "--read-data"); code != 0 {
		t.Fatalf("verify --read-data: exit %d:\n%s", code, out)
	}
	if code, out := lbtrun.Run(t, "restore", "--config", writeConfig(t, c, dsn, dir, "enc_chunks"), "--table", "t", "--target-table", "refused"); code == 0 || !strings.Contains(out, "decryptIdentityFile") {
		t.Errorf("restore without the identity: exit %d, output:\n%s", code, out)
	}
	checkNoMarkers(t, dir, markers)
}
