package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// stopDaemon stops the daemon with SIGTERM and fails the test unless it
// exits 0.
func stopDaemon(t *testing.T, p *lbtrun.Process) {
	t.Helper()
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Fatalf("lbt backup exit %d:\n%s", code, p.Output())
	}
}

// LBT's own sample config file, with only its db settings changed, drives
// the daemon.
func TestBackup_LBTConfigFileDrivesDaemon(t *testing.T) {
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	sample, err := os.ReadFile("../config/testdata/lbt-sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := string(sample)
	for old, repl := range map[string]string{
		"/tmp/staging":       filepath.Join(dir, "staging"),
		"/tmp/final":         filepath.Join(dir, "final"),
		"host: 127.0.0.1":    "host: " + c.SocketDir(),
		"port: 5432":         fmt.Sprintf("port: %d", c.Port()),
		"database: postgres": "database: " + lbtrun.DBName(dsn),
	} {
		if !strings.Contains(text, old) {
			t.Fatalf("sample config has no %q", old)
		}
		text = strings.Replace(text, old, repl, 1)
	}
	cfg := filepath.Join(dir, "lbt.yaml")
	os.WriteFile(cfg, []byte(text), 0o600)

	p := lbtrun.Start(t, "backup", "--config", cfg)
	archive := filepath.Join(dir, "final")
	waitArchived(t, c, dsn, archive)
	c.Exec(t, dsn, `INSERT INTO t VALUES (1, 'a'), (2, 'b')`)
	waitArchived(t, c, dsn, archive)
	// Metrics are served on loopback by default (LBT's port listened on all interfaces).
	resp, err := http.Get("http://127.0.0.1:9187/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `lbt_archived_changes_total{table="public.t"} 2`) {
		t.Errorf("metrics lack the archived changes of t:\n%.2000s", body)
	}
	stopDaemon(t, p)
	if got := c.QueryString(t, dsn, `SELECT slot_name FROM pg_replication_slots WHERE slot_name = 'myslot'`); got != "myslot" {
		t.Errorf("the sample's slot myslot was not used (found %q)", got)
	}
	_, changes := readArchive(t, archive, "t")
	if len(changes) != 2 {
		t.Errorf("archived %d changes of t, want 2", len(changes))
	}
}

// A second daemon on the same archive refuses to start, with one line
// that says why and exit status 11 (archive locked), and the first one
// keeps running.
func TestBackup_SecondDaemonOnSameArchiveRefuses(t *testing.T) {
	c, dsn, dir := newSource(t)
	cfg := writeConfig(t, c, dsn, dir, "locked")
	p := lbtrun.Start(t, "backup", "--config", cfg)
	waitArchived(t, c, dsn, dir)
	code, out := lbtrun.Run(t, "backup", "--config", cfg)
	if code != 11 || !strings.Contains(out, "in use by another lbt backup") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
		t.Fatalf("second daemon: exit %d, output:\n%s", code, out)
	}
	waitArchived(t, c, dsn, dir) // the first one still archives
	stopDaemon(t, p)
}

// With trackNewTables false only the tables published at start are
// archived; a table whose changes cannot be replicated is named in a
// warning with the fix, and lbt leaves its replica identity alone.
func TestBackup_TrackNewTablesAndReplicaIdentityWarning(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE old (id int PRIMARY KEY); CREATE TABLE nokey (v text)`)
	cfg := writeConfig(t, c, dsn, dir, "track", "trackNewTables: false")
	p := lbtrun.Start(t, "backup", "--config", cfg)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `CREATE TABLE fresh (id int PRIMARY KEY)`)
	c.Exec(t, dsn, `INSERT INTO old VALUES (1); INSERT INTO fresh VALUES (1); INSERT INTO nokey VALUES ('x')`)
	waitArchived(t, c, dsn, dir)
	stopDaemon(t, p)
	out := p.Output()
	if !strings.Contains(out, "table public.nokey has no primary key") || !strings.Contains(out, "REPLICA IDENTITY FULL") {
		t.Errorf("no replica identity warning for nokey:\n%s", out)
	}
	if !strings.Contains(out, "table not archived") || !strings.Contains(out, "public.fresh") {
		t.Errorf("no log line for the skipped new table:\n%s", out)
	}
	if got := c.QueryString(t, dsn, `SELECT relreplident FROM pg_class WHERE relname = 'nokey'`); got != "d" {
		t.Errorf("lbt changed nokey's replica identity to %q", got)
	}
	for table, want := range map[string]int{"old": 1, "nokey": 1, "fresh": 0} {
		if n := countArchived(t, dir, `SELECT count(*) FROM schema_version WHERE relname = ?`, table); n != want {
			t.Errorf("%s: %d schema versions archived, want %d", table, n, want)
		}
	}
}

// A role without REPLICATION gets one line naming the fix and a non-zero
// exit; so does a config with an unknown key.
func TestBackup_SetupErrorsAreOneClearLine(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `DO $$ BEGIN CREATE ROLE plain LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	cfg := writeConfig(t, c, dsn, dir, "norepl")
	os.WriteFile(cfg, []byte(strings.Replace(readFile(t, cfg), "user: postgres", "user: plain", 1)), 0o600)
	code, out := lbtrun.Run(t, "backup", "--config", cfg)
	if code != 1 || !strings.Contains(out, "lacks the REPLICATION attribute") || !strings.Contains(out, "ALTER ROLE plain REPLICATION") {
		t.Errorf("role without REPLICATION: exit %d:\n%s", code, out)
	}
	bad := writeConfig(t, c, dsn, dir, "badkey", "fsynk: true")
	code, out = lbtrun.Run(t, "backup", "--config", bad)
	if code != 2 || !strings.Contains(out, `unknown key "fsynk"`) {
		t.Errorf("unknown key: exit %d:\n%s", code, out)
	}
}

// verify finds a flipped byte in a segment and exits 3; an intact archive
// passes.
func TestVerify_DetectsDamagedSegment(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	cfg := writeConfig(t, c, dsn, dir, "verify")
	d := startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO t SELECT g, repeat('v', g % 50) FROM generate_series(1, 1000) g`)
	waitArchived(t, c, dsn, dir)
	d.stop()

	if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--read-data"); code != 0 {
		t.Fatalf("intact archive: exit %d:\n%s", code, out)
	}
	cat, err := catalog.OpenReadOnly(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var seg, off, length int64
	cat.DB().QueryRow(`SELECT segment_id, offset, length FROM blob ORDER BY length DESC LIMIT 1`).Scan(&seg, &off, &length)
	cat.Close()
	path := filepath.Join(dir, catalog.SegmentName(seg))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, off+length/2)
	b[0] ^= 0x55
	f.WriteAt(b, off+length/2)
	f.Close()
	code, out := lbtrun.Run(t, "verify", "--config", cfg, "--read-data")
	if code != 3 || !strings.Contains(out, "checksum") || !strings.Contains(out, catalog.SegmentName(seg)) {
		t.Fatalf("damaged archive: exit %d, want 3 naming %s:\n%s", code, catalog.SegmentName(seg), out)
	}
	// Reading a part of the data each run: of the parts 1/2 and 2/2, exactly
	// one holds the damaged segment; 100% and 1/1 read everything.
	found := 0
	for _, subset := range []string{"1/2", "2/2"} {
		code, out := lbtrun.Run(t, "verify", "--config", cfg, "--read-data-subset", subset)
		switch code {
		case 3:
			found++
		case 0:
		default:
			t.Errorf("verify --read-data-subset %s: exit %d:\n%s", subset, code, out)
		}
	}
	if found != 1 {
		t.Errorf("the damage was found by %d of the subsets 1/2 and 2/2, want exactly 1", found)
	}
	for _, subset := range []string{"100%", "1/1"} {
		if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--read-data-subset", subset); code != 3 {
			t.Errorf("verify --read-data-subset %s on a damaged archive: exit %d, want 3:\n%s", subset, code, out)
		}
	}
	if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--read-data-subset", "0/3"); code != 2 || !strings.Contains(out, "use n/t") {
		t.Errorf("verify --read-data-subset 0/3: exit %d, want 2 naming the forms:\n%s", code, out)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// With trackNewTables false, lbt basebackup takes a table the daemon
// archives, even one that never changed, and refuses one created after the
// daemon started: it would have no deltas after its dump.
func TestBasebackup_OnlyTablesTheDaemonArchives(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE quiet (id int PRIMARY KEY); INSERT INTO quiet VALUES (1)`)
	cfg := writeConfig(t, c, dsn, dir, "onlytracked", "trackNewTables: false")
	p := lbtrun.Start(t, "backup", "--config", cfg)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `CREATE TABLE later (id int PRIMARY KEY)`)

	if code, out := lbtrun.Run(t, "basebackup", "--config", cfg, "--table", "quiet"); code != 0 || !strings.Contains(out, "1 rows") {
		t.Errorf("basebackup of a table published at start: exit %d:\n%s", code, out)
	}
	code, out := lbtrun.Run(t, "basebackup", "--config", cfg, "--table", "later")
	if code != 2 || !strings.Contains(out, "table later is not archived: trackNewTables is false") {
		t.Errorf("basebackup of a table created later: exit %d:\n%s", code, out)
	}
	stopDaemon(t, p)
}

// lbt backup pointed at another database than the archive's refuses, and
// leaves that database as it found it: every check that can refuse runs
// before anything is created on the source (no publication, no slot).
func TestBackup_ForeignArchiveRefusedBeforeTouchingTheSource(t *testing.T) {
	c := pgtest.Shared(t)
	first := c.NewDatabase(t)
	other := c.NewDatabase(t)
	dir := t.TempDir()
	d := startBackup(t, c, first, dir)
	waitArchived(t, c, first, dir)
	d.stop()

	cfg := writeConfig(t, c, other, dir, "foreign")
	code, out := lbtrun.Run(t, "backup", "--config", cfg)
	if code == 0 || !strings.Contains(out, "belongs to database") {
		t.Fatalf("lbt backup on another database's archive: exit %d:\n%s", code, out)
	}
	if n := c.QueryString(t, other, `SELECT count(*) FROM pg_publication`); n != "0" {
		t.Errorf("the refused lbt backup left %s publications in the other database", n)
	}
	if n := c.QueryString(t, other, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'foreign'`); n != "0" {
		t.Errorf("the refused lbt backup left its slot")
	}
}

// A basebackup's sidecar is part of the archive: verify does not take it
// for a stray file, and names a basebackup that lost it, since a catalog
// rebuilt from the files would then lack it.
func TestVerify_KnowsBasebackupSidecars(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY)`)
	cfg := writeConfig(t, c, dsn, dir, "sidecar")
	d := startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO t SELECT generate_series(1, 10)`)
	waitArchived(t, c, dsn, dir)
	bases := takeBasebackups(t, dsn, dir, "t")
	d.stop()

	code, out := lbtrun.Run(t, "verify", "--config", cfg, "--read-data")
	if code != 0 || strings.Contains(out, "not referenced") {
		t.Fatalf("intact archive with a basebackup: exit %d:\n%s", code, out)
	}
	sidecar := catalog.SidecarName(bases[0].Path)
	if err := os.Remove(filepath.Join(dir, sidecar)); err != nil {
		t.Fatal(err)
	}
	code, out = lbtrun.Run(t, "verify", "--config", cfg)
	if code != 3 || !strings.Contains(out, "has no sidecar "+sidecar) {
		t.Fatalf("basebackup without its sidecar: exit %d, want 3 naming %s:\n%s", code, sidecar, out)
	}
}
