package test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/source"
	"lbt/test/pgtest"
)

// ownCluster starts a cluster for one test, for a test whose prepared or
// long transactions would hold up the slots of every other test.
func ownCluster(t *testing.T) *pgtest.Cluster {
	t.Helper()
	c, err := pgtest.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A logical slot is only created once every transaction running at its
// start has ended, and PostgreSQL says nothing while it waits: a forgotten
// prepared transaction stopped lbt's basebackups, silently, for as long as
// it lasted (issue #11, point 12). The wait is now reported with the
// transaction that holds it and the statement that ends it, for a prepared
// transaction and for an open session alike, and the basebackup completes
// once the transaction ends. A cluster of its own: the prepared transaction
// would hold up every other test's slots.
func TestBasebackup_ReportsTheTransactionItsSlotWaitsFor(t *testing.T) {
	c := ownCluster(t)
	dsn := c.NewDatabase(t)
	dir := t.TempDir()
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text);
		INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;`)
	d := startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)

	cases := []struct {
		name string
		// open leaves a transaction running on conn, and close ends it.
		open, close string
		want        []string
	}{
		{
			name:  "prepared transaction",
			open:  `BEGIN; INSERT INTO t VALUES (1001, 'prepared'); PREPARE TRANSACTION 'forgotten_px'`,
			close: `COMMIT PREPARED 'forgotten_px'`,
			want:  []string{`prepared as \"forgotten_px\"`, `COMMIT PREPARED or ROLLBACK PREPARED 'forgotten_px'`},
		},
		{
			name:  "open session",
			open:  `SET application_name = 'lbt-test-idle'; BEGIN; INSERT INTO t VALUES (1002, 'idle')`,
			close: `COMMIT`,
			want:  []string{"of backend pid", `application \"lbt-test-idle\"`, "pg_terminate_backend("},
		},
	}
	rows := 100
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			conn := c.Connect(t, dsn)
			if _, err := conn.Exec(ctx, tc.open); err != nil {
				t.Fatal(err)
			}
			logs := &lockedBuffer{}
			o := dumpOptions(t, dsn, dir)
			o.Logger = hclog.New(&hclog.LoggerOptions{Name: "basebackup", Level: hclog.Debug, Output: logs})
			o.SlotWait = source.SlotWait{First: 200 * time.Millisecond, Every: time.Second}
			type taken struct {
				bases []catalog.Basebackup
				err   error
			}
			done := make(chan taken, 1)
			go func() {
				cat, err := catalog.Open(ctx, dir)
				if err != nil {
					done <- taken{err: err}
					return
				}
				defer cat.Close()
				bases, err := basebackup.Take(ctx, cat, o, []string{"t"})
				done <- taken{bases, err}
			}()
			waitFor(t, "the wait to be reported", 30*time.Second, func() bool {
				out := logs.String()
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						return false
					}
				}
				return true
			})
			select {
			case r := <-done:
				t.Fatalf("basebackup finished while the transaction was open: %v", r.err)
			default:
			}
			if _, err := conn.Exec(ctx, tc.close); err != nil {
				t.Fatal(err)
			}
			rows++
			select {
			case r := <-done:
				if r.err != nil {
					t.Fatalf("basebackup: %v", r.err)
				}
				// The transaction committed before the slot existed: its row
				// is in the basebackup.
				if len(r.bases) != 1 || r.bases[0].Rows != int64(rows) {
					t.Fatalf("basebackup holds %+v, want one of %d rows", r.bases, rows)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("basebackup did not finish after the transaction ended; log:\n%s", logs.String())
			}
			if !strings.Contains(logs.String(), "replication slot created after waiting") {
				t.Errorf("the end of the wait was not logged:\n%s", logs.String())
			}
		})
	}
	d.stop()
}
