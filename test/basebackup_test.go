package test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/ingest"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// Several tables are dumped at the same time, under one snapshot and under
// separate ones, while concurrent transactions change them during their
// COPY. Each basebackup plus the deltas committed at or after its LSN
// equals the source exactly: no row missing, none twice.
func TestBasebackup_ConcurrentWritesRestoreExactly(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, loadTablesSQL+`
		INSERT INTO acc SELECT g, 'owner ' || g, g * 10, CASE WHEN g % 500 = 0 THEN repeat('toast', 2000) END FROM generate_series(1, 150000) g;
		INSERT INTO ev SELECT g % 100, g, md5(g::text) FROM generate_series(1, 150000) g;
		INSERT INTO bag SELECT 't' || (g % 50), g % 7 FROM generate_series(1, 100000) g;`)
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)

	stopLoad := startWriteLoad(t, dsn)

	// Two basebackups at once, each under its own snapshot, then a third
	// round of all tables, all while the load runs.
	var bases []catalog.Basebackup
	var mu sync.Mutex
	var dumps sync.WaitGroup
	for _, tables := range [][]string{{"acc", "ev", "bag"}, {"ev", "bag"}} {
		dumps.Add(1)
		go func() {
			defer dumps.Done()
			b := takeBasebackups(t, dsn, dir, tables...)
			mu.Lock()
			bases = append(bases, b...)
			mu.Unlock()
		}()
	}
	dumps.Wait()
	bases = append(bases, takeBasebackups(t, dsn, dir, "acc", "ev", "bag")...)
	time.Sleep(200 * time.Millisecond) // some more changes after the last dump
	commits := stopLoad()
	waitArchived(t, c, dsn, dir)
	upTo := archivePosition(t, dir)
	t.Logf("%d transactions of load; %d basebackups", commits, len(bases))

	cat := openArchive(t, dir)
	defer cat.Close()
	target := c.NewDatabase(t)
	columns := map[string][]string{"acc": {"id", "owner", "balance", "note"}, "ev": {"a", "b", "payload"}, "bag": {"tag", "n"}}
	for _, table := range []string{"acc", "ev", "bag"} {
		var id int64
		var want []string
		duringDump := 0
		for _, b := range bases {
			if b.Definition.Table.Name != table {
				continue
			}
			id = b.TableID
			got := applyFrom(t, cat, b.TableID, b, upTo)
			if want == nil {
				want = sourceRows(t, dsn, table, columns[table])
			}
			if !slices.Equal(got.rows, want) {
				t.Errorf("%s from basebackup at %X (%d rows) plus %d changes differs from the source: %s",
					table, b.LSN, b.Rows, got.deltas, diffRows(got.rows, want))
			}
			// Transactions of the table that committed while its COPY ran,
			// and so belong to the deltas, not to the dump.
			err := cat.EachTableTx(context.Background(), b.TableID, b.LSN, math.MaxUint64, func(tx catalog.TableTx) error {
				if !tx.CommitTime.Before(b.StartedAt) && !tx.CommitTime.After(b.FinishedAt) {
					duringDump++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if id == 0 {
			t.Fatalf("no basebackup of %s", table)
		}
		if got := restoreRows(t, dir, target, table, upTo, columns[table]); !slices.Equal(got, want) {
			t.Errorf("%s restored by restore.Run differs from the source: %s", table, diffRows(got, want))
		}
		if duringDump == 0 {
			t.Errorf("%s: no transaction of it committed while its COPY ran: the test did not exercise what it should", table)
		}
	}
}

// loadTablesSQL creates the tables writeLoad changes: acc, whose notes are
// TOASTed, ev, with a key of two columns, and bag, without a key.
const loadTablesSQL = `
	CREATE TABLE acc (id int PRIMARY KEY, owner text NOT NULL, balance bigint, note text);
	ALTER TABLE acc ALTER COLUMN note SET STORAGE EXTERNAL;
	CREATE TABLE ev (a int, b int, payload text, PRIMARY KEY (a, b));
	CREATE TABLE bag (tag text, n int);
	ALTER TABLE bag REPLICA IDENTITY FULL;`

// startWriteLoad runs writeLoad on two connections and waits until they
// have committed some transactions. The returned function stops them and
// returns how many transactions they committed.
func startWriteLoad(t *testing.T, dsn string) (stop func() int64) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var commits atomic.Int64
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writeLoad(t, dsn, w, done, &commits)
		}()
	}
	waitFor(t, "the write load to start", time.Minute, func() bool { return commits.Load() > 50 })
	return func() int64 {
		close(done)
		wg.Wait()
		return commits.Load()
	}
}

// writeLoad changes acc, ev and bag in small transactions until stop is
// closed: inserts, updates (of TOASTed rows' other columns, of primary
// keys, of key-less rows), deletes, and transactions over several tables.
func writeLoad(t *testing.T, dsn string, worker int, stop <-chan struct{}, commits *atomic.Int64) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close(ctx)
	rng := rand.New(rand.NewPCG(uint64(worker), 42))
	next := 1_000_000 * (worker + 1) // ids of inserted rows, per worker
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		next++
		id := 1 + rng.IntN(150000)
		var stmts []string
		switch i % 8 {
		case 0:
			stmts = []string{fmt.Sprintf(`INSERT INTO acc VALUES (%d, 'new %d', %d, NULL)`, next, next, i)}
		case 1:
			stmts = []string{fmt.Sprintf(`UPDATE acc SET balance = balance + 1 WHERE id = %d`, id/500*500+500)} // a TOASTed row
		case 2:
			stmts = []string{fmt.Sprintf(`DELETE FROM acc WHERE id = %d`, id)}
		case 3:
			stmts = []string{fmt.Sprintf(`UPDATE ev SET b = -b WHERE a = %d AND b = %d AND b > 0`, id%100, id)}
		case 4:
			stmts = []string{fmt.Sprintf(`UPDATE ev SET payload = 'w%d-%d' WHERE a = %d AND b = %d`, worker, i, id%100, id)}
		case 5:
			stmts = []string{fmt.Sprintf(`INSERT INTO bag VALUES ('t%d', %d)`, id%50, id%7),
				fmt.Sprintf(`DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE tag = 't%d' LIMIT 1)`, (id+1)%50)}
		case 6:
			stmts = []string{fmt.Sprintf(`UPDATE bag SET n = n + 1 WHERE ctid = (SELECT ctid FROM bag WHERE tag = 't%d' LIMIT 1)`, id%50)}
		case 7:
			stmts = []string{fmt.Sprintf(`UPDATE acc SET owner = 'moved %d' WHERE id = %d`, i, id),
				fmt.Sprintf(`INSERT INTO ev VALUES (%d, %d, 'multi')`, next%100, next),
				fmt.Sprintf(`DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE tag = 't%d' LIMIT 1)`, id%50)}
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		ok := true
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				ok = false // a deadlock between workers, say: the source rolled it back too
				break
			}
		}
		if !ok {
			tx.Rollback(ctx)
			continue
		}
		if tx.Commit(ctx) == nil {
			commits.Add(1)
		}
		time.Sleep(5 * time.Millisecond) // a steady load, not a saturated machine
	}
}

// Each trigger of the scheduler fires, and what it takes restores the
// table exactly.
func TestBasebackup_SchedulerTriggers(t *testing.T) {
	// setup makes a subtest parallel, with a database, an archive and a
	// daemon of its own.
	setup := func(t *testing.T, slot string) (*pgtest.Cluster, string, string, *daemon) {
		t.Parallel()
		c, dsn, dir := newSource(t)
		c.Exec(t, dsn, `CREATE TABLE t1 (id int PRIMARY KEY, v text);
			INSERT INTO t1 SELECT g, 'v' || g FROM generate_series(1, 1000) g;`)
		d := startBackup(t, c, dsn, dir, func(o *ingest.Options) { o.Slot = slot })
		waitArchived(t, c, dsn, dir)
		return c, dsn, dir, d
	}
	waitReason := func(t *testing.T, dir, table, reason string, n int) []catalog.Basebackup {
		t.Helper()
		var got []catalog.Basebackup
		waitFor(t, fmt.Sprintf("%d basebackups of %s with reason %q", n, table, reason), time.Minute, func() bool {
			got = got[:0]
			for _, b := range basebackupsOf(t, dir, table) {
				if b.Reason == reason {
					got = append(got, b)
				}
			}
			return len(got) >= n
		})
		return got
	}
	// firstChange changes t1 for the first time, which the scheduler meets
	// with the basebackup of a new table.
	firstChange := func(t *testing.T, c *pgtest.Cluster, dsn, dir string) {
		t.Helper()
		c.Exec(t, dsn, `UPDATE t1 SET v = 'first' WHERE id = 1`)
		waitReason(t, dir, "t1", basebackup.ReasonNewTable, 1)
	}
	// changeFourBlobs changes t1 four times, each change in a blob of its
	// own: one blob per flush, waitArchived between them.
	changeFourBlobs := func(t *testing.T, c *pgtest.Cluster, dsn, dir string) {
		t.Helper()
		for i := 0; i < 4; i++ {
			c.Exec(t, dsn, fmt.Sprintf(`UPDATE t1 SET v = 'round %d' WHERE id <= 100`, i))
			waitArchived(t, c, dsn, dir)
		}
	}
	restoresExactly := func(t *testing.T, c *pgtest.Cluster, dsn, dir, table string) {
		t.Helper()
		waitArchived(t, c, dsn, dir)
		r := restoreAt(t, dir, table, archivePosition(t, dir))
		if want := sourceRows(t, dsn, table, r.columns); !slices.Equal(r.rows, want) {
			t.Errorf("%s restored from basebackup at %X (reason %q) differs from the source: %s", table, r.base.LSN, r.base.Reason, diffRows(r.rows, want))
		}
	}

	t.Run("new table", func(t *testing.T) {
		c, dsn, dir, _ := setup(t, "lbt_trig_new")
		runScheduler(t, dsn, dir, nil)
		c.Exec(t, dsn, `CREATE TABLE t2 (id int PRIMARY KEY, v text); INSERT INTO t2 SELECT g, 'x' FROM generate_series(1, 10) g`)
		c.Exec(t, dsn, `UPDATE t1 SET v = 'changed' WHERE id = 1`)
		waitReason(t, dir, "t1", basebackup.ReasonNewTable, 1)
		waitReason(t, dir, "t2", basebackup.ReasonNewTable, 1)
		c.Exec(t, dsn, `UPDATE t2 SET v = 'after' WHERE id < 5`)
		restoresExactly(t, c, dsn, dir, "t1")
		restoresExactly(t, c, dsn, dir, "t2")
	})

	t.Run("initial", func(t *testing.T) {
		c, dsn, dir, _ := setup(t, "lbt_trig_initial")
		// t1 never changes, so only initialBasebackup dumps it.
		runScheduler(t, dsn, dir, func(o *basebackup.SchedulerOptions) { o.Initial = true })
		waitReason(t, dir, "t1", basebackup.ReasonInitial, 1)
		c.Exec(t, dsn, `UPDATE t1 SET v = 'after' WHERE id <= 10`)
		restoresExactly(t, c, dsn, dir, "t1")
	})

	t.Run("threshold", func(t *testing.T) {
		c, dsn, dir, _ := setup(t, "lbt_trig_threshold")
		runScheduler(t, dsn, dir, func(o *basebackup.SchedulerOptions) { o.Threshold = 3 })
		firstChange(t, c, dsn, dir)
		if n := len(basebackupsOf(t, dir, "t1")); n != 1 {
			t.Fatalf("%d basebackups before the threshold was passed, want 1", n)
		}
		changeFourBlobs(t, c, dsn, dir)
		waitReason(t, dir, "t1", basebackup.ReasonThreshold, 1)
		restoresExactly(t, c, dsn, dir, "t1")
	})

	t.Run("threshold from archive", func(t *testing.T) {
		c, dsn, dir, _ := setup(t, "lbt_trig_synth")
		runScheduler(t, dsn, dir, func(o *basebackup.SchedulerOptions) { o.Threshold, o.SyntheticMinBytes = 3, 1 })
		firstChange(t, c, dsn, dir)
		changeFourBlobs(t, c, dsn, dir)
		waitReason(t, dir, "t1", basebackup.ReasonThreshold+", "+basebackup.ReasonFromArchive, 1)
		restoresExactly(t, c, dsn, dir, "t1")
	})

	t.Run("inactivity", func(t *testing.T) {
		c, dsn, dir, _ := setup(t, "lbt_trig_inactive")
		runScheduler(t, dsn, dir, func(o *basebackup.SchedulerOptions) { o.InactivityInterval = time.Second })
		firstChange(t, c, dsn, dir)
		c.Exec(t, dsn, `DELETE FROM t1 WHERE id > 900`)
		b := waitReason(t, dir, "t1", basebackup.ReasonInactivity, 1)[0]
		var lastChange time.Time
		for _, tx := range archivedTxs(t, dir, "t1") {
			if tx.CommitTime.After(lastChange) {
				lastChange = tx.CommitTime
			}
		}
		if b.StartedAt.Sub(lastChange) < time.Second {
			t.Errorf("inactivity basebackup started %v after the last change, before the interval passed", b.StartedAt.Sub(lastChange))
		}
		restoresExactly(t, c, dsn, dir, "t1")
	})

	t.Run("schedule", func(t *testing.T) {
		c, dsn, dir, _ := setup(t, "lbt_trig_schedule")
		runScheduler(t, dsn, dir, func(o *basebackup.SchedulerOptions) { o.Schedule = time.Second })
		c.Exec(t, dsn, `UPDATE t1 SET v = 'first' WHERE id = 1`)
		waitReason(t, dir, "t1", basebackup.ReasonSchedule, 2)
		restoresExactly(t, c, dsn, dir, "t1")
	})

	t.Run("new epoch", func(t *testing.T) {
		c, dsn, dir, d := setup(t, "lbt_trig_epoch")
		stopScheduler := runScheduler(t, dsn, dir, nil)
		firstChange(t, c, dsn, dir)
		stopScheduler()
		// The slot is lost: changes made meanwhile never reach the archive,
		// which starts a new epoch when the daemon creates the slot again.
		d.stop()
		dropReleasedSlot(t, c, dsn, "lbt_trig_epoch")
		c.Exec(t, dsn, `UPDATE t1 SET v = 'lost' WHERE id <= 10`)
		startBackup(t, c, dsn, dir, func(o *ingest.Options) { o.Slot = "lbt_trig_epoch" })
		waitArchived(t, c, dsn, dir)
		runScheduler(t, dsn, dir, nil)
		waitReason(t, dir, "t1", basebackup.ReasonNewEpoch, 1)
		restoresExactly(t, c, dsn, dir, "t1")
	})
}

// lbt basebackup takes basebackups on request while the daemon runs, and
// refuses an unknown table with one clear line.
func TestBasebackup_Command(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE "B b" (id int PRIMARY KEY);
		INSERT INTO a SELECT g, 'x' FROM generate_series(1, 100) g; INSERT INTO "B b" VALUES (1), (2)`)
	startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	cfg := writeConfig(t, c, dsn, dir, "lbt_cli_unused", "trackNewTables: true") // as the daemon above

	code, out := lbtrun.Run(t, "basebackup", "--config", cfg, "--table", "nope", "--table", "a")
	if code != 2 || !strings.Contains(out, `no such table on the source: public.nope`) {
		t.Errorf("unknown table: exit %d, output:\n%s", code, out)
	}
	if n := len(basebackupsOf(t, dir, "a")); n != 0 {
		t.Errorf("a request with an unknown table took %d basebackups, want none", n)
	}

	code, out = lbtrun.Run(t, "basebackup", "--config", cfg, "--table", "a")
	if code != 0 || !strings.Contains(out, "100 rows") {
		t.Fatalf("basebackup --table a: exit %d, output:\n%s", code, out)
	}
	code, out = lbtrun.Run(t, "basebackup", "--config", cfg, "--all")
	if code != 0 || !strings.Contains(out, `public."B b"`) {
		t.Fatalf("basebackup --all: exit %d, output:\n%s", code, out)
	}
	for table, want := range map[string]int{"a": 2, `"B b"`: 1} {
		bases := basebackupsOf(t, dir, table)
		if len(bases) != want || bases[0].Reason != basebackup.ReasonRequest {
			t.Errorf("%s: %d basebackups (%+v), want %d with reason request", table, len(bases), bases, want)
		}
	}
	c.Exec(t, dsn, `UPDATE a SET v = 'y' WHERE id % 2 = 0`)
	waitArchived(t, c, dsn, dir)
	r := restoreAt(t, dir, "a", archivePosition(t, dir))
	if want := sourceRows(t, dsn, "a", r.columns); !slices.Equal(r.rows, want) {
		t.Errorf("a restored differs from the source: %s", diffRows(r.rows, want))
	}
}

// The daemon killed (SIGKILL) while it dumps a table leaves no half dump in
// the archive: the partial file stays in tempDir, no file under base/ lacks
// a catalog row. After a restart it removes the partial file and takes the
// dump again.
func TestBasebackup_KillDuringDump(t *testing.T) {
	c, dsn, dir := newSource(t)
	tmp := t.TempDir()
	// Big enough that its COPY takes a while.
	c.Exec(t, dsn, `CREATE TABLE big (id int PRIMARY KEY, v int);
		INSERT INTO big SELECT g, g FROM generate_series(1, 2000000) g;`)
	cfg := writeConfig(t, c, dsn, dir, "lbt_kill_dump", "tempDir: "+tmp, "trackNewTables: true", "backupThreshold: 1000000")
	p := lbtrun.Start(t, "backup", "--config", cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lbt backup output:\n%s", p.Output())
		}
	})
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `UPDATE big SET v = -1 WHERE id = 1`) // the daemon sees big: a new table to dump

	var partial string
	waitFor(t, "a basebackup in progress in tempDir", 2*time.Minute, func() bool {
		m, _ := filepath.Glob(filepath.Join(tmp, "base-*.partial"))
		if len(m) == 0 {
			return false
		}
		st, err := os.Stat(m[0])
		partial = m[0]
		return err == nil && st.Size() > 0
	})
	p.Signal(syscall.SIGKILL)
	p.Wait(t, time.Minute)
	if n := len(basebackupsOf(t, dir, "big")); n != 0 {
		t.Fatalf("the dump completed before the kill (%d basebackups): the test needs a slower dump", n)
	}
	if _, err := os.Stat(partial); err != nil {
		t.Errorf("partial file of the killed dump: %v", err)
	}
	checkNoStrayBase(t, dir)

	p = lbtrun.Start(t, "backup", "--config", cfg)
	waitFor(t, "the basebackup of big after the restart", 2*time.Minute, func() bool {
		return len(basebackupsOf(t, dir, "big")) == 1
	})
	if m, _ := filepath.Glob(filepath.Join(tmp, "*.partial")); len(m) != 0 {
		t.Errorf("partial files left after the restart: %v", m)
	}
	checkNoStrayBase(t, dir)
	// The dump is whole: its checksum, length and row count match the
	// catalog, and the catalog's count matches the table (which did not
	// change meanwhile). Restores from dumps are checked row for row by
	// the other tests.
	b := basebackupsOf(t, dir, "big")[0]
	if lines := checkBasebackupFile(t, dir, b); lines != 2000000 || b.Rows != 2000000 {
		t.Errorf("basebackup of big holds %d lines, catalog says %d rows, want 2000000", lines, b.Rows)
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Errorf("lbt backup exited with %d after SIGTERM; output:\n%s", code, p.Output())
	}
	if !strings.Contains(p.Output(), "removed what an interrupted basebackup left") {
		t.Errorf("the restart did not log the clean-up; output:\n%s", p.Output())
	}
}

// checkNoStrayBase fails the test for a file under base/ that no catalog
// row references.
func checkNoStrayBase(t *testing.T, dir string) {
	t.Helper()
	cat := openArchive(t, dir)
	defer cat.Close()
	refs, err := cat.BasebackupPaths(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "base", "*", "*"))
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		if stem, ok := strings.CutSuffix(rel, ".meta.json"); ok {
			rel = stem + ".copy.lz4" // a sidecar belongs to its basebackup
		}
		if !refs[rel] {
			t.Errorf("%s is in the archive without a catalog row", rel)
		}
	}
}

// A basebackup in chunks of a few blocks each, copied by two connections
// under one snapshot while transactions change the tables, holds every row
// once: it plus the deltas after it equals the source, restore reads all
// its chunks, and a catalog rebuilt from the files knows the chunks. An
// inheritance child's rows stay out of its parent's chunks, as COPY of the
// parent leaves them out.
func TestBasebackup_ChunksParallel(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, loadTablesSQL+`
		CREATE TABLE ev_child () INHERITS (ev);
		INSERT INTO acc SELECT g, 'owner ' || g, g * 10, CASE WHEN g % 500 = 0 THEN repeat('toast', 2000) END FROM generate_series(1, 40000) g;
		INSERT INTO ev SELECT g % 100, g, md5(g::text) FROM generate_series(1, 40000) g;
		INSERT INTO ev_child VALUES (1, -1, 'child row');
		INSERT INTO bag SELECT 't' || (g % 50), g % 7 FROM generate_series(1, 30000) g;`)
	d := startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)

	stopLoad := startWriteLoad(t, dsn)

	// Chunks of 8 blocks: tens of chunks per table.
	bases := takeChunked(t, dsn, dir, 8*8192, "acc", "ev", "bag")
	time.Sleep(200 * time.Millisecond) // some more changes after the dump
	stopLoad()
	waitArchived(t, c, dsn, dir)
	upTo := archivePosition(t, dir)

	target := c.NewDatabase(t)
	columns := map[string][]string{"acc": {"id", "owner", "balance", "note"}, "ev": {"a", "b", "payload"}, "bag": {"tag", "n"}}
	check := func(what string) {
		t.Helper()
		for _, b := range bases {
			table := b.Definition.Table.Name
			want := sourceRows(t, dsn, "ONLY "+table, columns[table])
			cat := openArchive(t, dir)
			got := applyFrom(t, cat, b.TableID, b, upTo)
			cat.Close()
			if !slices.Equal(got.rows, want) {
				t.Errorf("%s: %s from its %d chunks plus %d changes differs from the source: %s", what, table, len(b.Files()), got.deltas, diffRows(got.rows, want))
			}
			if rows := restoreRows(t, dir, target, table, upTo, columns[table]); !slices.Equal(rows, want) {
				t.Errorf("%s: %s restored by restore.Run differs from the source: %s", what, table, diffRows(rows, want))
			}
		}
	}
	for _, b := range bases {
		if len(b.Chunks) < 4 {
			t.Fatalf("%s: %d chunks, want many with chunks of 8 blocks", b.Definition.Table.Name, len(b.Chunks))
		}
		for k, ch := range b.Chunks {
			if ch.Path != catalog.ChunkName(b.TableID, b.LSN, k) {
				t.Errorf("%s chunk %d is %s", b.Definition.Table.Name, k, ch.Path)
			}
		}
	}
	check("chunked")

	// The catalog is checked against every chunk, and rebuilt from them.
	ctx := context.Background()
	cat := openArchive(t, dir)
	rep, err := cat.Verify(ctx, true)
	cat.Close()
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(rep.Warnings) > 0 {
		t.Errorf("verify warns: %v", rep.Warnings)
	}
	d.stop()
	if _, err := catalog.Rebuild(ctx, dir, true, nil); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	cat = openArchive(t, dir)
	for _, b := range bases {
		got, err := cat.Basebackups(ctx, b.TableID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !slices.Equal(got[0].Chunks, b.Chunks) || got[0].Rows != b.Rows {
			t.Errorf("%s: the rebuilt catalog has %d basebackups, not its one of %d chunks", b.Definition.Table.Name, len(got), len(b.Chunks))
		}
	}
	cat.Close()
	check("rebuilt")
}
