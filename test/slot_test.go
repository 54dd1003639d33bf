package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/restore"
	"lbt/source"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// keepFirstSlot returns an option that makes every daemon started with it
// use the slot of the first one, whose name it stores in *slot: a daemon
// restarted after its slot was dropped makes the same slot again.
func keepFirstSlot(slot *string) func(*ingestOptions) {
	return func(o *ingestOptions) {
		if *slot == "" {
			*slot = o.Slot
		}
		o.Slot = *slot
	}
}

// While the archived database is idle and another database writes a lot,
// the slot's confirmed position follows the WAL, so that the source does
// not pile up WAL for lbt.
func TestBackup_IdleSlotAdvancesWithOtherDatabasesWAL(t *testing.T) {
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	busy := c.NewDatabase(t)
	dir := t.TempDir()
	var slot string
	startBackup(t, c, dsn, dir, func(o *ingestOptions) { slot = o.Slot })
	waitArchived(t, c, dsn, dir)

	c.Exec(t, busy, `CREATE TABLE noise AS SELECT g, md5(g::text) FROM generate_series(1, 200000) g`)
	target := c.QueryString(t, busy, `SELECT pg_current_wal_lsn()`)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		state := c.QueryString(t, dsn, `SELECT CASE WHEN confirmed_flush_lsn >= '`+target+`'::pg_lsn THEN 'caught up' END
			FROM pg_replication_slots WHERE slot_name = '`+slot+`'`)
		if state == "caught up" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("slot %s did not advance to %s while idle: %s", slot, target,
		c.QueryString(t, dsn, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '`+slot+`'`))
}

// dropReleasedSlot drops a stopped daemon's slot. The walsender that held
// it ends a moment after the daemon closed its connection, and an active
// slot cannot be dropped: wait for the release first.
func dropReleasedSlot(t *testing.T, c *pgtest.Cluster, dsn, slot string) {
	t.Helper()
	waitFor(t, "the slot to be released", time.Minute, func() bool {
		return c.QueryString(t, dsn, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = '`+slot+`' AND active`) == "0"
	})
	c.Exec(t, dsn, `SELECT pg_drop_replication_slot('`+slot+`')`)
}

// A slot that disappeared while lbt was stopped is created again, and the
// archive starts a new epoch that names the gap instead of hiding it.
func TestBackup_LostSlotStartsNewEpoch(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY)`)
	var slot string
	keepSlot := keepFirstSlot(&slot)
	d := startBackup(t, c, dsn, dir, keepSlot)
	waitArchived(t, c, dsn, dir)
	d.stop()
	dropReleasedSlot(t, c, dsn, slot)
	c.Exec(t, dsn, `INSERT INTO t VALUES (1)`) // lost: no slot keeps it
	startBackup(t, c, dsn, dir, keepSlot)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO t VALUES (2)`)
	waitArchived(t, c, dsn, dir)

	cat := openArchive(t, dir)
	defer cat.Close()
	epochs, err := cat.Epochs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(epochs) != 2 || !strings.Contains(epochs[1].Reason, "was missing") || !strings.Contains(epochs[1].Reason, "not archived") {
		t.Fatalf("epochs: %+v", epochs)
	}
	_, changes := readArchive(t, dir, "t")
	if len(changes) != 1 || *changes[0].New[0] != "2" {
		t.Fatalf("archived changes of t: %+v", changes)
	}
}

// The slot is dropped while lbt is stopped, and a row is inserted that no
// slot keeps. The new epoch records the gap, and a restore to a moment in
// it, by time or by LSN, is refused with both sides of the gap named, where
// it used to return the state before the gap. Moments before the gap, and
// after the new epoch's basebackup, restore exactly.
func TestRestore_RefusesTargetsInHistoryGap(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v int)`)
	tables := map[string]string{"t": "t"}
	var slot string
	keepSlot := keepFirstSlot(&slot)
	d := startBackup(t, c, dsn, dir, keepSlot)
	c.Exec(t, dsn, `INSERT INTO t VALUES (1, 100)`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "t")
	c.Exec(t, dsn, `UPDATE t SET v = 50 WHERE id = 1`)
	c.Exec(t, dsn, `INSERT INTO t VALUES (2, 50)`)
	before := recordCheckpoint(t, c, dsn, "before", tables)
	waitArchived(t, c, dsn, dir) // the old epoch's last archived transaction
	// After the last archived transaction nothing proves the old epoch
	// complete: the daemon may not have received what came next.
	gapStart := recordCheckpoint(t, c, dsn, "gap-start", tables)
	d.stop()
	dropReleasedSlot(t, c, dsn, slot)
	c.Exec(t, dsn, `INSERT INTO t VALUES (3, 100)`) // lost: no slot keeps it
	inGap := recordCheckpoint(t, c, dsn, "in-gap", tables)
	if before.tables["t"].sum == inGap.tables["t"].sum {
		t.Fatal("the lost insert did not change the table")
	}

	startBackup(t, c, dsn, dir, keepSlot)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "t")
	afterBase := recordCheckpoint(t, c, dsn, "after-basebackup", tables)
	c.Exec(t, dsn, `UPDATE t SET v = v + 1 WHERE id = 3`)
	later := recordCheckpoint(t, c, dsn, "later", tables)
	waitArchived(t, c, dsn, dir)

	// The two sides of the gap, as the catalog has them.
	cat := openArchive(t, dir)
	epochs, err := cat.Epochs(context.Background())
	if err != nil || len(epochs) != 2 {
		t.Fatalf("epochs: %+v, %v", epochs, err)
	}
	var lastLSN int64
	if err := cat.DB().QueryRow(`SELECT max(commit_lsn) FROM tx WHERE commit_lsn < ?`, int64(epochs[1].StartLSN)).Scan(&lastLSN); err != nil {
		t.Fatal(err)
	}
	cat.Close()
	sides := []string{"gap", catalog.FormatLSN(uint64(lastLSN)), catalog.FormatLSN(epochs[1].StartLSN), "can be restored from"}

	n := 0
	check := func(cp checkpoint, byLSN, wantRefused bool) {
		t.Helper()
		n++
		o := restore.NewOptions()
		o.Table, o.TargetConn, o.Verify = "t", connConfig(t, target), true
		o.TargetTable = fmt.Sprintf("r%d_%s", n, strings.ReplaceAll(cp.name, "-", "_"))
		what := cp.name + " by time"
		if byLSN {
			lsn, err := pglogrepl.ParseLSN(cp.lsn)
			if err != nil {
				t.Fatal(err)
			}
			o.LSN, what = uint64(lsn), cp.name+" by LSN"
		} else {
			o.Until = cp.at
		}
		_, err := runRestore(t, dir, o)
		if wantRefused {
			if !errors.Is(err, restore.ErrNotRestorable) {
				t.Errorf("%s: want a refusal, got %v", what, err)
				return
			}
			for _, s := range sides {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%s: the refusal does not name %q: %v", what, s, err)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: the refusal is not one line: %v", what, err)
			}
			return
		}
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		checkRestored(t, c, target, o.TargetTable, cp.tables["t"], what)
	}
	for _, byLSN := range []bool{false, true} {
		check(before, byLSN, false)
		check(gapStart, byLSN, true)
		check(inGap, byLSN, true)
		check(afterBase, byLSN, false)
		check(later, byLSN, false)
	}
}

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

// notifySocket plays systemd's side of sd_notify: it collects what the
// daemon sends to NOTIFY_SOCKET.
type notifySocket struct {
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) (*notifySocket, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{conn: conn}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, strings.TrimSpace(string(buf[:k])))
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return n, path
}

// count is how many messages equal to msg arrived.
func (n *notifySocket) count(msg string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if m == msg {
			c++
		}
	}
	return c
}

// healthz returns the status code and body of the daemon's /healthz.
func healthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

var servingRE = regexp.MustCompile(`serving: what=metrics addr=(\S+)`)

// A daemon that cannot make progress says so, and a supervisor's watchdog
// can restart it (issue #11, point 12). The cause found for the stall seen
// under PostgreSQL's regression suite: a logical slot is created only once
// every transaction running at its start has ended, and a prepared
// transaction can last forever. Here lbt backup starts while one is open: it
// warns naming the transaction and how to end it, tells systemd neither
// READY=1 nor WATCHDOG=1, and /healthz answers 503. Once the transaction is
// committed, READY=1 and then WATCHDOG=1 arrive and /healthz answers 200;
// SIGTERM sends STOPPING=1. A cluster of its own: the prepared transaction
// would hold up every other test's slots.
func TestBackup_WaitForSlotIsReportedAndStopsTheWatchdog(t *testing.T) {
	c := ownCluster(t)
	dsn := c.NewDatabase(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	c.Exec(t, dsn, `BEGIN; INSERT INTO t VALUES (1, 'prepared'); PREPARE TRANSACTION 'stuck_px';`)
	t.Cleanup(func() {
		if c.QueryString(t, dsn, `SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'stuck_px'`) != "0" {
			c.Exec(t, dsn, `ROLLBACK PREPARED 'stuck_px'`)
		}
	})
	notify, socket := listenNotify(t)
	t.Setenv("NOTIFY_SOCKET", socket)
	t.Setenv("WATCHDOG_USEC", fmt.Sprint((400 * time.Millisecond).Microseconds()))
	cfg := writeConfig(t, c, dsn, t.TempDir(), "lbt_watchdog")
	p := lbtrun.Start(t, "backup", "--config", cfg)

	var addr string
	waitFor(t, "the metrics listener", 30*time.Second, func() bool {
		if m := servingRE.FindStringSubmatch(p.Output()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.Output(), `prepared as \"stuck_px\"`) ||
		!strings.Contains(p.Output(), `COMMIT PREPARED or ROLLBACK PREPARED 'stuck_px'`) {
		if time.Now().After(deadline) {
			t.Fatalf("the wait for the prepared transaction was not reported:\n%s", p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := healthz(t, addr); code != http.StatusServiceUnavailable || !strings.Contains(body, "not streaming") {
		t.Errorf("while waiting for the slot, /healthz = %d %q, want 503 not streaming", code, body)
	}
	time.Sleep(time.Second) // more than two watchdog intervals
	if n, r := notify.count("WATCHDOG=1"), notify.count("READY=1"); n != 0 || r != 0 {
		t.Fatalf("while waiting for the slot: %d WATCHDOG=1 and %d READY=1, want none", n, r)
	}

	c.Exec(t, dsn, `COMMIT PREPARED 'stuck_px'`)
	waitFor(t, "READY=1", 30*time.Second, func() bool { return notify.count("READY=1") == 1 })
	waitFor(t, "WATCHDOG=1 while streaming", 10*time.Second, func() bool { return notify.count("WATCHDOG=1") >= 2 })
	if code, body := healthz(t, addr); code != http.StatusOK {
		t.Errorf("while streaming, /healthz = %d %q, want 200", code, body)
	}
	metrics := httpGet(t, "http://"+addr+"/metrics")
	for _, m := range []string{"lbt_archived_lsn ", "lbt_slot_retained_wal_bytes ", "lbt_slot_lag_bytes ", "lbt_basebackups_running ", "lbt_purged_bytes_total "} {
		if !strings.Contains(metrics, "\n"+m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	// A change makes t an archived table: the scheduler takes its first
	// basebackup, and counts it.
	c.Exec(t, dsn, `INSERT INTO t VALUES (2, 'streamed')`)
	waitFor(t, "the new table's basebackup in /metrics", 60*time.Second, func() bool {
		m := httpGet(t, "http://"+addr+"/metrics")
		return strings.Contains(m, `lbt_basebackups_total{result="done"} 1`) && strings.Contains(m, "lbt_basebackup_duration_seconds_count 1")
	})

	// The source goes down: 503 while lbt retries, 200 once it is back.
	if err := c.Crash(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/healthz to answer 503 while the source is down", 30*time.Second, func() bool {
		code, body := healthz(t, addr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "not streaming")
	})
	if err := c.StartServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/healthz to answer 200 after the source is back", 90*time.Second, func() bool {
		code, _ := healthz(t, addr)
		return code == http.StatusOK
	})
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("lbt backup exited %d after SIGTERM:\n%s", code, p.Output())
	}
	if notify.count("STOPPING=1") != 1 {
		t.Errorf("no STOPPING=1 on SIGTERM; got %v", notify.msgs)
	}
}

// With synchronous_standby_names naming lbt's replication connection (or
// '*'), a commit waits for lbt to confirm it, and lbt, before it looks a
// table up for that commit, waits for the commit to end: neither would
// move again. The daemon stops at once with one line that names the
// setting, instead of waiting for ever while the source's commits hang.
// A cluster of its own: the setting holds up every commit on it.
func TestBackup_RefusesToBeTheSynchronousStandby(t *testing.T) {
	c := ownCluster(t)
	dsn := c.NewDatabase(t)
	dir := t.TempDir()
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	cfg := writeConfig(t, c, dsn, dir, "lbt_sync")
	p := lbtrun.Start(t, "backup", "--config", cfg)
	waitArchived(t, c, dsn, dir)

	c.Exec(t, dsn, `ALTER SYSTEM SET synchronous_standby_names = '*'`)
	c.Exec(t, dsn, `SELECT pg_reload_conf()`)
	t.Cleanup(func() {
		// Releases the commit left waiting.
		c.Exec(t, dsn, `ALTER SYSTEM RESET synchronous_standby_names`)
		c.Exec(t, dsn, `SELECT pg_reload_conf()`)
	})
	// The table's first change of the session: a Relation message, looked
	// up on the source. Its commit waits for the standby, which is lbt.
	go func() {
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		conn.Exec(context.Background(), `INSERT INTO t VALUES (1, 'waits for lbt')`)
	}()
	code := p.Wait(t, time.Minute)
	if out := p.Output(); code == 0 || !strings.Contains(out, "synchronous_standby_names") {
		t.Errorf("lbt backup as the synchronous standby: exit %d, want a refusal naming synchronous_standby_names:\n%s", code, out)
	}
}
