package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/crypt"
	"lbt/ingest"
	"lbt/restore"
	"lbt/storage"
	"lbt/test/pgtest"
)

// A crash of the machine, not of the process: the daemon archives a real
// workload onto a storage.MemFS, which at a random operation stops
// working (the daemon dies there, committing nothing after) and then drops
// every byte not fsynced and every directory entry not made durable by a
// directory fsync. kill -9 cannot show a missing fsync, since the page
// cache survives it; this can. After each crash the archive left behind
// must pass catalog verify, and once the daemon has restarted on it and
// caught up, restore each table equal to the source row for row.
// LBT_CRASH_POINTS sets the number of crashes (make soak runs many).
func TestCrashSim_ArchiveRestoresExactlyAfterEveryCrash(t *testing.T) {
	points := crashPoints(t, 10)
	problems, crashes := crashStorm(t, points, nil, false, nil)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d crashes, %d after which the archive was not exact", crashes, len(problems))
}

// The same storm on an encrypted archive, whose daemon holds only the
// recipients, as in production: after each crash it can neither read the
// active segment's tail nor append to it, so it cuts the tail and seals the
// segment, and every restart begins a new one. Verify and restore hold the
// identity too.
func TestCrashSim_EncryptedArchiveRestoresExactlyAfterEveryCrash(t *testing.T) {
	identity, recipient, err := crypt.Generate(false)
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(t.TempDir(), "identity.txt")
	if err := os.WriteFile(idFile, []byte(identity+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var keys crashKeys
	if keys.daemon, err = crypt.New([]string{recipient}, ""); err != nil {
		t.Fatal(err)
	}
	if keys.reader, err = crypt.New([]string{recipient}, idFile); err != nil {
		t.Fatal(err)
	}
	problems, crashes := crashStorm(t, 5, nil, false, &keys)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d crashes, %d after which the archive was not exact", crashes, len(problems))
}

// crashKeys are an encrypted archive's keys: the daemon's (recipients
// only) and those of everything that reads the files.
type crashKeys struct{ daemon, reader *crypt.Keys }

func (k *crashKeys) forDaemon() *crypt.Keys {
	if k == nil {
		return nil
	}
	return k.daemon
}

func (k *crashKeys) forReader() *crypt.Keys {
	if k == nil {
		return nil
	}
	return k.reader
}

// The same check has teeth: with the segment fsync removed (the daemon's
// most important one, before each catalog commit) the first crash leaves a
// catalog that references bytes that are gone, and the check says so.
func TestCrashSim_CatchesARemovedSegmentFsync(t *testing.T) {
	problems, crashes := crashStorm(t, 5, func(fsys storage.FS) storage.FS { return noSegmentSync{fsys} }, true, nil)
	if len(problems) == 0 {
		t.Fatalf("%d crashes without the segment fsync, and the archive passed every check: the crash simulation does not see a missing fsync", crashes)
	}
	t.Logf("caught after crash %d: %s", crashes, problems[0])
}

// crashStorm runs the workload through the given number of crashes and
// returns what the checks found wrong, and how many crashes there were.
// wrap, when set, changes the file system the daemon writes to; with
// stopAtFirst it returns at the first problem; keys, when set, encrypt the
// archive.
func crashStorm(t *testing.T, points int, wrap func(storage.FS) storage.FS, stopAtFirst bool, keys *crashKeys) ([]string, int) {
	c, dsn, target, dir := newSourceAndTarget(t)
	ctx := context.Background()
	c.Exec(t, dsn, ledgerSQL)

	mem := storage.NewCrashableMem()
	var fsys storage.FS = mem
	if wrap != nil {
		fsys = wrap(mem)
	}
	slot := fmt.Sprintf("lbt_crash_%d", time.Now().UnixNano()%1e9)
	d := startCrashable(t, c, dsn, dir, slot, fsys, mem, keys.forDaemon())
	defer func() { d.stop() }()
	waitArchived(t, c, dsn, dir)
	cat := openOn(t, dir, fsys, false, keys.forReader())
	if _, err := basebackup.Take(ctx, cat, dumpOptions(t, dsn, dir), []string{"ledger", "accounts"}); err != nil {
		t.Fatalf("basebackup: %v", err)
	}
	cat.Close()

	var problems []string
	crashes := 0
	for i := 0; i < points; i++ {
		// Load until the crash point, some operations of the daemon on.
		mem.FailAfter(1 + rand.Int64N(60))
		stopLoad := runLedgerLoad(t, c, dsn)
		select {
		case <-mem.Down():
		case <-time.After(60 * time.Second):
			stopLoad()
			t.Fatalf("crash %d: the daemon did not reach its crash point within 60s", i+1)
		}
		stopLoad()
		d.stop()
		t.Logf("crash %d at %s", i+1, strings.ReplaceAll(mem.CrashedAt(), dir+"/", ""))
		mem.Crash()
		crashes++

		// The archive as the machine's restart finds it.
		cat := openOn(t, dir, fsys, true, keys.forReader())
		_, err := cat.Verify(ctx, true)
		cat.Close()
		if err != nil {
			problems = append(problems, fmt.Sprintf("crash %d: catalog verify: %v", i+1, err))
			if stopAtFirst {
				return problems, crashes
			}
		}

		d = startCrashable(t, c, dsn, dir, slot, fsys, mem, keys.forDaemon())
		waitArchived(t, c, dsn, dir)
		for _, table := range []string{"ledger", "accounts"} {
			if p := restoreMatches(t, c, dsn, target, dir, fsys, keys.forReader(), table, fmt.Sprintf("%s_%d", table, i+1)); p != "" {
				problems = append(problems, fmt.Sprintf("crash %d: %s", i+1, p))
			}
		}
		if stopAtFirst && len(problems) > 0 {
			return problems, crashes
		}
	}
	return problems, crashes
}

// crashable is an in-process lbt backup on a crashable file system: it
// stops at once when the file system goes down, as a machine that lost
// power would.
type crashable struct {
	cancel context.CancelFunc
	done   chan error
}

func startCrashable(t *testing.T, c *pgtest.Cluster, dsn, dir, slot string, fsys storage.FS, mem *storage.MemFS, keys *crypt.Keys) *crashable {
	t.Helper()
	opts := ingest.NewOptions()
	opts.ArchiveDir = dir
	opts.Conn = connConfig(t, dsn)
	opts.Slot = slot
	opts.FlushInterval = 20 * time.Millisecond
	opts.StatusInterval = time.Second
	opts.DeltasPerFile = 3000 // new segments often: their creation is a crash point too
	opts.FS = fsys
	opts.Keys = keys
	opts.Logger = testLogger(t, "lbt")
	ctx, cancel := context.WithCancel(context.Background())
	d := &crashable{cancel: cancel, done: make(chan error, 1)}
	go func() {
		select {
		case <-mem.Down():
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() { d.done <- runDaemon(ctx, opts) }()
	return d
}

// stop stops the daemon; an error is what its crash makes it return.
func (d *crashable) stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	<-d.done
}

// runLedgerLoad writes transactions of varied size from two connections
// until the returned function is called, which waits for them.
func runLedgerLoad(t *testing.T, c *pgtest.Cluster, dsn string) (stop func()) {
	return runLoad(t, c, dsn, 2, func(i int) string {
		rows := 1 + rand.IntN(5)
		if i%50 == 49 {
			rows = 2000
		}
		return ledgerTx(rows, fmt.Sprintf(`DELETE FROM ledger WHERE id = (SELECT min(id) FROM ledger) AND %d = 0;`, rand.IntN(4)))
	})
}

// runLoad runs the SQL that tx returns for its i-th transaction, over and
// over on each of workers connections, until the returned function is
// called, which waits for them and fails the test if a statement failed.
func runLoad(t *testing.T, c *pgtest.Cluster, dsn string, workers int, tx func(i int) string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var loadErr error
	for w := 0; w < workers; w++ {
		wg.Add(1)
		conn := c.Connect(t, dsn)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := conn.Exec(context.Background(), tx(i)); err != nil {
					mu.Lock()
					loadErr = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	return func() {
		t.Helper()
		cancel()
		wg.Wait()
		if loadErr != nil {
			t.Fatalf("load: %v", loadErr)
		}
	}
}

// restoreMatches restores table from the archive on fsys into the target
// database and compares it with the source, which nothing writes to
// meanwhile; it describes the difference, or returns "".
func restoreMatches(t *testing.T, c *pgtest.Cluster, dsn, target, dir string, fsys storage.FS, keys *crypt.Keys, table, into string) string {
	t.Helper()
	cat := openOn(t, dir, fsys, true, keys)
	defer cat.Close()
	o := restore.NewOptions()
	o.Table, o.TargetConn, o.TargetTable, o.Logger = table, connConfig(t, target), into, testLogger(t, "restore")
	if _, err := restore.Run(context.Background(), cat, o); err != nil {
		return fmt.Sprintf("restore of %s: %v", table, err)
	}
	want, got := c.QueryString(t, dsn, checksumSQL(table)), c.QueryString(t, target, checksumSQL(into))
	if want != got {
		return fmt.Sprintf("restored %s has %s rows (checksum %s), the source %s (checksum %s)", table,
			c.QueryString(t, target, "SELECT count(*) FROM "+into), got, c.QueryString(t, dsn, "SELECT count(*) FROM "+table), want)
	}
	return ""
}

// openOn opens the catalog in dir with the archive's files on fsys and,
// for an encrypted archive, keys.
func openOn(t *testing.T, dir string, fsys storage.FS, readOnly bool, keys *crypt.Keys) *catalog.Catalog {
	t.Helper()
	open := catalog.Open
	if readOnly {
		open = catalog.OpenReadOnly
	}
	cat, err := open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	cat.SetFiles(fsys, storage.NewLocal(fsys, dir))
	if err := cat.UseKeys(context.Background(), keys); err != nil {
		cat.Close()
		t.Fatal(err)
	}
	return cat
}

// noSegmentSync is a file system whose fsync of segment files does
// nothing: the bug the crash simulation must catch.
type noSegmentSync struct{ storage.FS }

func (f noSegmentSync) Create(name string) (storage.File, error) {
	return f.wrap(name)(f.FS.Create(name))
}

func (f noSegmentSync) OpenRW(name string) (storage.File, error) {
	return f.wrap(name)(f.FS.OpenRW(name))
}

func (f noSegmentSync) wrap(name string) func(storage.File, error) (storage.File, error) {
	return func(file storage.File, err error) (storage.File, error) {
		if err != nil || !strings.HasSuffix(name, ".lbs") {
			return file, err
		}
		return noSync{file}, nil
	}
}

type noSync struct{ storage.File }

func (noSync) Sync() error { return nil }
