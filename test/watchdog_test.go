package test

import (
	"context"
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

	"lbt/test/lbtrun"
)

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
