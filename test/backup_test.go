package test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/test/lbtrun"
)

// A workload of every kind of change is archived exactly: the catalog's
// transactions and per-table counts match what the workload did, and the
// changes read back from the blobs carry the right values.
func TestBackup_ArchivesWorkloadExactly(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `
		CREATE TABLE items (id int PRIMARY KEY, name text, doc text);
		ALTER TABLE items ALTER COLUMN doc SET STORAGE EXTERNAL;
		CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL);
		CREATE TABLE tags (tag text, n int);
		ALTER TABLE tags REPLICA IDENTITY FULL;`)
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)

	big := strings.Repeat("toast!", 2000) // stored out of line: unchanged in updates that do not touch it
	for _, tx := range []string{
		fmt.Sprintf(`BEGIN;
			INSERT INTO items VALUES (1, 'one', '%s'), (2, 'it''s "two"', NULL), (3, 'three', 'x');
			INSERT INTO events (kind) VALUES ('a'), ('b');
			COMMIT`, big),
		`UPDATE items SET name = 'uno' WHERE id = 1`,
		`UPDATE items SET id = 30 WHERE id = 3`,
		`DELETE FROM items WHERE id = 2`,
		`INSERT INTO tags VALUES ('red', 1), ('red', 1), ('blue', 2)`,
		`UPDATE tags SET n = 5 WHERE tag = 'blue'`,
		`DELETE FROM tags WHERE tag = 'red'`,
		`BEGIN; INSERT INTO events (kind) VALUES ('c'); SELECT pg_logical_emit_message(true, 'audit', 'hello'); COMMIT`,
		`TRUNCATE events`,
	} {
		c.Exec(t, dsn, tx)
	}
	waitArchived(t, c, dsn, dir)

	counts := func(table string) string {
		t.Helper()
		var sum catalog.Counts
		txs := archivedTxs(t, dir, table)
		for _, tx := range txs {
			sum.Add(tx.Counts)
		}
		return fmt.Sprintf("ins=%d upd=%d del=%d trunc=%d txs=%d", sum.Inserts, sum.Updates, sum.Deletes, sum.Truncates, len(txs))
	}
	for table, want := range map[string]string{
		"items":  "ins=3 upd=2 del=1 trunc=0 txs=4",
		"events": "ins=3 upd=0 del=0 trunc=1 txs=3",
		"tags":   "ins=3 upd=1 del=2 trunc=0 txs=3",
	} {
		if got := counts(table); got != want {
			t.Errorf("%s: catalog says %s, want %s", table, got, want)
		}
	}
	if n := countArchived(t, dir, `SELECT count(*) FROM tx_message WHERE prefix = 'audit' AND content = CAST('hello' AS BLOB)`); n != 1 {
		t.Errorf("audit message archived %d times, want 1", n)
	}

	def, changes := readArchive(t, dir, "items")
	if def.Columns[0].TypeName != "integer" || len(def.PrimaryKey) != 1 || def.PrimaryKey[0] != "id" {
		t.Errorf("items definition: %+v", def)
	}
	got := []string{}
	for _, ch := range changes {
		got = append(got, ch.Op+":"+show(ch.Old)+"->"+show(ch.New))
	}
	want := []string{
		"I:->[1 one " + big + "]",
		`I:->[2 it's "two" NULL]`,
		"I:->[3 three x]",
		"U:->[1 uno <unchanged>]",
		"U:[3 NULL NULL]->[30 three x]",
		"D:[2 NULL NULL]->",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("items changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func show(vals []*string) string {
	if vals == nil {
		return ""
	}
	var parts []string
	for _, v := range vals {
		switch {
		case v == nil:
			parts = append(parts, "NULL")
		case *v == unchanged:
			parts = append(parts, "<unchanged>")
		default:
			parts = append(parts, *v)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// A transaction replayed under a replication origin (as a subscriber or
// another replication tool would) is archived with that origin's name.
func TestBackup_ArchivesReplicationOrigin(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY)`)
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	conn := c.Connect(t, dsn)
	for _, q := range []string{
		`SELECT pg_replication_origin_create('upstream_a')`,
		`SELECT pg_replication_origin_session_setup('upstream_a')`,
		`INSERT INTO t VALUES (1)`,
		`SELECT pg_replication_origin_session_reset()`,
		`INSERT INTO t VALUES (2)`,
	} {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	waitArchived(t, c, dsn, dir)
	var withOrigin, without int
	for _, tx := range archivedTxs(t, dir, "t") {
		var origin sql.NullString
		catalogQueryRow(t, dir, `SELECT origin FROM tx WHERE commit_lsn = ?`, []any{int64(tx.CommitLSN)}, &origin)
		switch {
		case origin.String == "upstream_a":
			withOrigin++
		case !origin.Valid:
			without++
		}
	}
	if withOrigin != 1 || without != 1 {
		t.Fatalf("transactions of t with origin upstream_a: %d, without: %d; want 1 and 1", withOrigin, without)
	}
}

// A clean stop makes what was received durable even when the flush
// interval has not passed, and an empty logical message is archived as an
// empty value rather than stalling the archive.
func TestBackup_CleanStopFlushesReceivedTransactions(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY)`)
	d := startBackup(t, c, dsn, dir, func(o *ingestOptions) { o.FlushInterval = 50 * time.Millisecond })
	waitArchived(t, c, dsn, dir)
	d.stop()

	var slot string
	d = startBackup(t, c, dsn, dir, func(o *ingestOptions) {
		o.FlushInterval = time.Hour
		slot = o.Slot
	})
	// The new daemon uses a new slot: wait until it streams from it (the
	// old daemon's walsender may still be listed for a moment).
	waitFor(t, "the daemon to stream", time.Minute, func() bool {
		return slot != "" && c.QueryString(t, dsn, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = '`+slot+`' AND active`) != "0"
	})
	for i := 1; i <= 5; i++ {
		c.Exec(t, dsn, fmt.Sprintf(`INSERT INTO t VALUES (%d)`, i))
	}
	c.Exec(t, dsn, `SELECT pg_logical_emit_message(true, 'empty', '')`)
	target := c.QueryString(t, dsn, `SELECT pg_current_wal_lsn()`)
	waitFor(t, "the walsender to send everything", time.Minute, func() bool {
		return c.QueryString(t, dsn, `SELECT count(*) FROM pg_stat_replication WHERE sent_lsn >= '`+target+`'`) != "0"
	})
	time.Sleep(500 * time.Millisecond) // received, but an hour from its flush
	d.stop()

	_, changes := readArchive(t, dir, "t")
	if len(changes) != 5 {
		t.Fatalf("archived %d of 5 inserts received before the stop", len(changes))
	}
	if n := countArchived(t, dir, `SELECT count(*) FROM tx_message WHERE prefix = 'empty' AND length(content) = 0`); n != 1 {
		t.Fatalf("empty message archived %d times, want 1", n)
	}
}

// lbt stopped in the middle of a transaction too large to hold in memory,
// one it is writing out as it arrives, archives it exactly once after a
// restart: what it wrote before the stop is abandoned, and the server sends
// the whole transaction again.
func TestBackup_StopDuringLargeTransaction(t *testing.T) {
	const rows = 500_000 // about 50 MB of changes: lbt writes it out from 4 MB
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			c, dsn, dir := newSource(t)
			c.Exec(t, dsn, `CREATE TABLE big (id int PRIMARY KEY, payload text)`)
			cfg := writeConfig(t, c, dsn, dir, "spill")
			p := lbtrun.Start(t, "backup", "--config", cfg)
			waitArchived(t, c, dsn, dir)

			c.Exec(t, dsn, `INSERT INTO big VALUES (0, 'before')`)
			c.Exec(t, dsn, `INSERT INTO big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, `+strconv.Itoa(rows)+`) g`)
			c.Exec(t, dsn, `INSERT INTO big VALUES (-1, 'after')`)
			waitFor(t, "lbt to write out part of the large transaction", 2*time.Minute, func() bool {
				return unreferencedSegmentBytes(t, dir) > 8<<20
			})
			// Meanwhile the catalog's write lock is free: basebackups and
			// purge need not wait for the transaction to end.
			if err := tryCatalogWrite(dir); err != nil {
				t.Errorf("catalog write while the large transaction streams in: %v", err)
			}
			p.Signal(sig)
			if code := p.Wait(t, time.Minute); sig == syscall.SIGTERM && code != 0 {
				t.Fatalf("lbt exited %d after SIGTERM:\n%s", code, p.Output())
			}
			for _, tx := range archivedTxs(t, dir, "big") {
				if tx.Inserts == rows {
					t.Fatal("the large transaction was archived before the stop: the test needs a larger one")
				}
			}

			p = lbtrun.Start(t, "backup", "--config", cfg)
			waitArchived(t, c, dsn, dir)
			stopDaemon(t, p)

			var inserts []int64
			for _, tx := range archivedTxs(t, dir, "big") {
				inserts = append(inserts, tx.Inserts)
			}
			if len(inserts) != 3 || inserts[0] != 1 || inserts[1] != rows || inserts[2] != 1 {
				t.Fatalf("catalog lists transactions of big with %v inserts, want [1 %d 1]", inserts, rows)
			}
			_, changes := readArchive(t, dir, "big")
			seen := map[string]int{}
			for _, ch := range changes {
				seen[*ch.New[0]]++
			}
			if len(changes) != rows+2 || len(seen) != rows+2 {
				t.Fatalf("archive holds %d changes of %d rows, want %d of %d", len(changes), len(seen), rows+2, rows+2)
			}
			if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--read-data"); code != 0 {
				t.Fatalf("lbt verify --read-data: exit %d:\n%s", code, out)
			}
		})
	}
}

// tryCatalogWrite takes the catalog's write lock, waiting at most a second.
func tryCatalogWrite(dir string) error {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, catalog.CatalogFile)+"?_pragma=busy_timeout(1000)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	return tx.Rollback()
}

// unreferencedSegmentBytes is how many bytes the segment files hold beyond
// what the catalog references: blobs written but not yet committed.
func unreferencedSegmentBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var onDisk, referenced int64
	files, _ := filepath.Glob(filepath.Join(dir, "segments", "*"))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			onDisk += fi.Size()
		}
	}
	catalogQueryRow(t, dir, `SELECT coalesce(sum(size), 0) FROM segment WHERE retired_at IS NULL`, nil, &referenced)
	return onDisk - referenced
}
