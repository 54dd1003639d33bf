package test

import (
	"context"
	"fmt"
	"math"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/catalog"
	"lbt/crypt"
	"lbt/ingest"
	"lbt/schema"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
	"lbt/test/s3test"
)

// TestMain shares one PostgreSQL cluster, and one versitygw for the
// object-storage tests, among the package's tests.
func TestMain(m *testing.M) {
	code := s3test.Main(mainFunc(func() int { return pgtest.Main(m) }))
	lbtrun.RemoveBinary()
	os.Exit(code)
}

type mainFunc func() int

func (f mainFunc) Run() int { return f() }

// newSource starts a scenario: a new source database on the shared server
// and an empty archive directory.
func newSource(t *testing.T) (c *pgtest.Cluster, dsn, dir string) {
	t.Helper()
	c = pgtest.Shared(t)
	return c, c.NewDatabase(t), t.TempDir()
}

// newSourceAndTarget is newSource with an empty database to restore into.
func newSourceAndTarget(t *testing.T) (c *pgtest.Cluster, dsn, target, dir string) {
	t.Helper()
	c, dsn, dir = newSource(t)
	return c, dsn, c.NewDatabase(t), dir
}

// ingestOptions are the daemon's options, for tests that tune them.
type ingestOptions = ingest.Options

// daemon is an in-process lbt backup against one test database.
type daemon struct {
	t      *testing.T
	c      *pgtest.Cluster
	dsn    string
	dir    string
	cancel context.CancelFunc
	done   chan error
}

var syncSeq atomic.Int64

// startBackup runs the backup daemon until the test ends.
func startBackup(t *testing.T, c *pgtest.Cluster, dsn, dir string, tune ...func(*ingest.Options)) *daemon {
	t.Helper()
	cfg := connConfig(t, dsn)
	opts := ingest.NewOptions()
	opts.ArchiveDir = dir
	opts.Conn = cfg
	opts.Slot = fmt.Sprintf("lbt_%d", time.Now().UnixNano()%1e9)
	opts.TrackNewTables = true // tests create tables while the daemon runs
	opts.FlushInterval = 50 * time.Millisecond
	opts.StatusInterval = 250 * time.Millisecond
	opts.Logger = hclog.New(&hclog.LoggerOptions{Name: "lbt", Level: hclog.Debug, Output: testWriter{t}})
	for _, f := range tune {
		f(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{t: t, c: c, dsn: dsn, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- runDaemon(ctx, opts) }()
	t.Cleanup(func() { d.stop() })
	return d
}

// runDaemon runs the daemon as lbt backup does, holding the archive's lock.
func runDaemon(ctx context.Context, opts ingest.Options) error {
	unlock, err := ingest.LockArchive(opts.ArchiveDir)
	if err != nil {
		return err
	}
	defer unlock()
	return ingest.Run(ctx, opts)
}

// stop shuts the daemon down cleanly and fails the test if it failed.
func (d *daemon) stop() {
	d.t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("lbt backup: %v", err)
		}
	case <-time.After(30 * time.Second):
		d.t.Error("lbt backup did not stop within 30s")
	}
}

// waitArchived emits a marker transaction and waits until the archive holds
// it, which means it holds everything committed before it.
func waitArchived(t *testing.T, c *pgtest.Cluster, dsn, dir string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	// A marker emitted before the daemon created its slot is never
	// streamed. The daemon records an epoch once its slot exists, so the
	// first marker waits for one (for as long as a lost marker would cost);
	// a slot created again for an archive that has an epoch already (a lost
	// slot) is covered by emitting another marker now and then.
	for i := 0; i < 100 && countArchived(t, dir, `SELECT count(*) FROM epoch`) <= 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	for time.Now().Before(deadline) {
		token := fmt.Sprintf("sync-%d", syncSeq.Add(1))
		c.Exec(t, dsn, fmt.Sprintf("SELECT pg_logical_emit_message(true, 'lbt.test.sync', '%s')", token))
		for i := 0; i < 40; i++ {
			if n := countArchived(t, dir, `SELECT count(*) FROM tx_message WHERE prefix = 'lbt.test.sync' AND content = CAST(? AS BLOB)`, token); n > 0 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Fatalf("archive %s did not catch up within 90s", dir)
}

func countArchived(t *testing.T, dir, query string, args ...any) int {
	t.Helper()
	cat, err := catalog.OpenReadOnly(context.Background(), dir)
	if err != nil {
		return -1
	}
	defer cat.Close()
	var n int
	if err := cat.DB().QueryRow(query, args...).Scan(&n); err != nil {
		return -1
	}
	return n
}

// archivedChange is a change read back from the archive, with values as text.
type archivedChange struct {
	Op        string
	CommitLSN uint64
	Xid       uint32
	Old, New  []*string // nil pointer: NULL; "\x00unchanged" for an unchanged TOAST value
}

const unchanged = "\x00unchanged"

// readArchive returns every archived change of one table, in commit order.
func readArchive(t *testing.T, dir, table string) (schema.Table, []archivedChange) {
	t.Helper()
	return readArchiveWith(t, dir, table, nil)
}

// readArchiveWith reads an encrypted archive with keys (nil: a plaintext
// archive).
func readArchiveWith(t *testing.T, dir, table string, keys *crypt.Keys) (schema.Table, []archivedChange) {
	t.Helper()
	ctx := context.Background()
	cat := openArchive(t, dir)
	defer cat.Close()
	if err := cat.UseKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	id := mustTableID(t, cat, table)
	versions, err := cat.SchemaVersions(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := cat.Blobs(ctx, id, 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	src := catalog.NewBlobSource(ctx, cat.Store(), cat.Keys())
	defer src.Close()
	var out []archivedChange
	for ch, err := range src.Changes(blobs, catalog.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, archivedChange{Op: string(ch.Tag), CommitLSN: ch.CommitLSN, Xid: ch.Xid, Old: texts(ch.Old), New: texts(ch.New)})
	}
	return versions[len(versions)-1].Table, out
}

func texts(t catalog.Tuple) []*string {
	var out []*string
	for _, v := range t {
		switch v.Kind {
		case catalog.ValueNull:
			out = append(out, nil)
		case catalog.ValueUnchanged:
			s := unchanged
			out = append(out, &s)
		default:
			s := string(v.Data)
			out = append(out, &s)
		}
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func catalogQueryRow(t *testing.T, dir, query string, args []any, dest ...any) {
	t.Helper()
	cat := openArchive(t, dir)
	defer cat.Close()
	if err := cat.DB().QueryRow(query, args...).Scan(dest...); err != nil {
		t.Fatalf("catalog query: %v", err)
	}
}

// openArchive opens the archive in dir read-only, as inspect and restore do
// while the daemon writes it.
func openArchive(t *testing.T, dir string) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.OpenReadOnly(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// connConfig parses a test database's DSN.
func connConfig(t *testing.T, dsn string) *pgconn.Config {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// archivedTxs returns the archived transactions that changed a table, in
// commit order, with what each did to it, as the catalog's tx rows say.
func archivedTxs(t *testing.T, dir, table string) []catalog.TableTx {
	t.Helper()
	cat := openArchive(t, dir)
	defer cat.Close()
	id := mustTableID(t, cat, table)
	var out []catalog.TableTx
	err := cat.EachTableTx(context.Background(), id, 0, math.MaxUint64, func(tx catalog.TableTx) error {
		out = append(out, tx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
