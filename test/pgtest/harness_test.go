//go:build linux

package pgtest_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lbt/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestShared(t *testing.T) {
	c := pgtest.Shared(t)
	if again := pgtest.Shared(t); again != c {
		t.Errorf("second Shared returned another cluster")
	}
	dsn := c.DSN("postgres")

	settings := map[string]string{
		"wal_level":               "logical",
		"max_replication_slots":   "20",
		"max_wal_senders":         "20",
		"fsync":                   "off",
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": c.SocketDir(),
		"server_encoding":         "UTF8",
	}
	for name, want := range settings {
		if got := c.QueryString(t, dsn, "SHOW "+name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	// Not SHOW lc_collate, which PostgreSQL 16 removed.
	if got := c.QueryString(t, dsn, "SELECT datcollate FROM pg_database WHERE datname = current_database()"); got != "C" {
		t.Errorf("collation = %q, want C", got)
	}

	num, err := strconv.Atoi(c.QueryString(t, dsn, "SHOW server_version_num"))
	if err != nil {
		t.Fatal(err)
	}
	if c.MajorVersion() != num/10000 {
		t.Errorf("MajorVersion = %d, server_version_num = %d", c.MajorVersion(), num)
	}

	for _, name := range []string{"postgres", "psql", "pg_recvlogical", "pgbench", "pg_ctl"} {
		if _, err := os.Stat(filepath.Join(c.BinDir(), name)); err != nil {
			t.Errorf("BinDir: %v", err)
		}
	}

	// URL reaches the same server over TCP.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to URL %s: %v", c.URL("postgres"), err)
	}
	defer conn.Close(ctx)
	var addr string
	var port int
	if err := conn.QueryRow(ctx, "SELECT host(inet_server_addr()), inet_server_port()").Scan(&addr, &port); err != nil {
		t.Fatal(err)
	}
	if addr != "127.0.0.1" || port != c.Port() {
		t.Errorf("connected over URL to %s:%d, want 127.0.0.1:%d", addr, port, c.Port())
	}
}

func TestNewDatabase(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := context.Background()

	var name string
	var recvlogical *exec.Cmd
	var held *pgx.Conn
	t.Run("Use", func(t *testing.T) {
		dsn := c.NewDatabase(t)
		name = c.QueryString(t, dsn, "SELECT current_database()")
		c.Exec(t, dsn, `
			CREATE TABLE t (id int PRIMARY KEY);
			INSERT INTO t VALUES (1), (2);
			CREATE PUBLICATION p FOR ALL TABLES;
		`)
		// Apart: several statements in one string form one transaction,
		// and a slot cannot be created in one that has written.
		c.Exec(t, dsn, `
			SELECT pg_create_logical_replication_slot('pgtest_idle', 'pgoutput');
			SELECT pg_create_logical_replication_slot('pgtest_streamed', 'pgoutput');
		`)
		if got := c.QueryString(t, dsn, "SELECT count(*) FROM t"); got != "2" {
			t.Errorf("count = %s, want 2", got)
		}

		// Left behind on purpose, the way a test of lbt may leave a
		// streaming client and an open session: a walsender streaming
		// from a persistent slot, and a session holding a temporary one.
		recvlogical = exec.Command(filepath.Join(c.BinDir(), "pg_recvlogical"),
			"-d", dsn, "--slot", "pgtest_streamed", "--start", "--no-loop", "-f", "/dev/null",
			"-o", "proto_version=1", "-o", "publication_names=p")
		if err := recvlogical.Start(); err != nil {
			t.Fatal(err)
		}
		var err error
		held, err = pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := held.Exec(ctx, "SELECT pg_create_logical_replication_slot('pgtest_held', 'pgoutput', true)"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for c.QueryString(t, dsn, "SELECT count(*) FROM pg_replication_slots WHERE active") != "2" {
			if time.Now().After(deadline) {
				t.Fatal("timed out after 30s waiting for both slots to be active")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	if recvlogical != nil {
		defer func() {
			recvlogical.Process.Kill()
			recvlogical.Wait()
		}()
	}
	if held != nil {
		defer held.Close(ctx)
	}
	if name == "" {
		t.Fatal("subtest did not report the database name")
	}

	postgres := c.DSN("postgres")
	if got := c.QueryString(t, postgres, "SELECT count(*) FROM pg_database WHERE datname = '"+name+"'"); got != "0" {
		t.Errorf("database %s still exists after the test", name)
	}
	if got := c.QueryString(t, postgres, "SELECT string_agg(slot_name, ', ') FROM pg_replication_slots"); got != "" {
		t.Errorf("replication slots remain: %s", got)
	}
}

func TestRestart(t *testing.T) {
	ctx := context.Background()
	c, err := pgtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() }) // in case the test fails half way
	dsn := c.DSN("postgres")
	c.Exec(t, dsn, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('committed before the crash')")
	port, before := c.Port(), postmasterPID(t, c)

	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	after := postmasterPID(t, c)
	if after == before {
		t.Errorf("postmaster PID %d did not change on Restart", after)
	}
	if c.Port() != port {
		t.Errorf("port changed from %d to %d", port, c.Port())
	}
	if got := c.QueryString(t, dsn, "SELECT v FROM kept"); got != "committed before the crash" {
		t.Errorf("after Restart, kept holds %q", got)
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err) // twice, so that Restart is known to leave things restartable
	}

	if err := c.Crash(); err != nil {
		t.Fatal(err)
	}
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a crashed server")
	}
	if err := c.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.StartServer(ctx); err == nil {
		t.Error("StartServer on a running server succeeded")
	}

	pids := []int{postmasterPID(t, c), watchdogPID(t, c)}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	// Stop is synchronous: everything is gone when it returns.
	assertGone(t, c.SocketDir(), pids, 0)
	if err := c.StartServer(ctx); err == nil {
		t.Error("StartServer after Stop succeeded")
	}
}

// childEnv switches the test binary into the child role of
// TestCleanupAfterAbnormalExit; its value is the way the child ends.
const childEnv = "LBT_PGTEST_CHILD"

// childReady starts the line on which the child reports its cluster.
const childReady = "PGTEST_CHILD_READY"

// TestChild does nothing in a normal run. Run by TestCleanupAfterAbnormalExit
// as a separate process, it starts a cluster and then dies without stopping
// it, in the way named by $LBT_PGTEST_CHILD.
func TestChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		return
	}
	var c *pgtest.Cluster
	switch mode {
	case "unstopped", "sigkill":
		var err error
		c, err = pgtest.Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
	default:
		c = pgtest.Shared(t)
	}
	fmt.Printf("%s\t%s\t%d\t%d\n", childReady, c.SocketDir(), postmasterPID(t, c), watchdogPID(t, c))

	switch mode {
	case "fatal", "unstopped":
		t.Fatal("deliberate failure")
	case "panic":
		panic("deliberate panic")
	default:
		time.Sleep(time.Minute)
		t.Fatal("child was not killed")
	}
}

// TestCleanupAfterAbnormalExit runs this test binary as a child that starts
// a cluster and then fails, panics or is killed, and checks that neither
// the server nor its directory outlives the child.
func TestCleanupAfterAbnormalExit(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		return // this is the child
	}
	// The child's orphans, the server and the watchdog, become our children
	// rather than init's, so that we can reap them and then see that no
	// process, not even a zombie, is left.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}

	tests := []struct {
		mode   string
		signal syscall.Signal // sent to the child once its cluster runs
		wait   time.Duration  // how long cleanup may take after the child's exit
	}{
		// A failing test: Main stops the shared cluster before the
		// process exits.
		{mode: "fatal", wait: 0},
		// The process exits without running Main's cleanup, or without
		// Stop being called: the watchdog takes over.
		{mode: "panic", wait: 30 * time.Second},
		{mode: "unstopped", wait: 30 * time.Second},
		{mode: "sigterm", signal: syscall.SIGTERM, wait: 30 * time.Second},
		{mode: "sigkill", signal: syscall.SIGKILL, wait: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), childEnv+"="+tt.mode)
			// Separate buffers: os/exec copies stderr in a goroutine of its own.
			var output, stderr bytes.Buffer
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}

			var dir string
			var pids []int // postmaster and watchdog
			r := bufio.NewReader(stdout)
			for dir == "" {
				line, err := r.ReadString('\n')
				output.WriteString(line)
				if fields := strings.Split(strings.TrimSpace(line), "\t"); len(fields) == 4 && fields[0] == childReady {
					dir = fields[1]
					for _, f := range fields[2:] {
						pid, err := strconv.Atoi(f)
						if err != nil {
							t.Fatalf("child reported %q: %v", line, err)
						}
						pids = append(pids, pid)
					}
				}
				if err != nil {
					break
				}
			}
			if dir == "" {
				cmd.Wait()
				t.Fatalf("child did not report its cluster; its output:\n%s%s", &output, &stderr)
			}
			if tt.signal != 0 {
				if err := cmd.Process.Signal(tt.signal); err != nil {
					t.Fatal(err)
				}
			}
			io.Copy(&output, r)
			err = cmd.Wait()
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) {
				t.Fatalf("child: %v, want it to fail; its output:\n%s%s", err, &output, &stderr)
			}
			t.Logf("child %s: %v", tt.mode, err)
			assertGone(t, dir, pids, tt.wait)
		})
	}
}

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>.
const prSetChildSubreaper = 36

// postmasterPID returns the PID of the cluster's postmaster.
func postmasterPID(t testing.TB, c *pgtest.Cluster) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.DataDir(), "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(line)
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	return pid
}

// watchdogPID returns the PID of the cluster's watchdog, a child of this
// process with the cluster directory on its command line.
func watchdogPID(t testing.TB, c *pgtest.Cluster) int {
	t.Helper()
	for _, p := range processes(t) {
		if p.ppid == os.Getpid() && strings.Contains(p.args, "pgtest-watchdog") && strings.Contains(p.args, c.SocketDir()) {
			return p.pid
		}
	}
	t.Fatalf("no watchdog process for %s", c.SocketDir())
	return 0
}

// assertGone fails the test unless, within wait, the cluster directory dir
// is removed and no process is left of the cluster: none of pids (the
// postmaster and the watchdog), none of their children, none with dir on
// its command line. Those of pids that are our children, as orphans of a
// child that died, are reaped once they exit.
func assertGone(t *testing.T, dir string, pids []int, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		for _, pid := range pids {
			var status syscall.WaitStatus
			syscall.Wait4(pid, &status, syscall.WNOHANG, nil) // ECHILD when not ours
		}
		left := leftovers(t, dir, pids)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, left of the cluster in %s:\n%s", wait, dir, strings.Join(left, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leftovers describes what exists of a cluster; see assertGone.
func leftovers(t *testing.T, dir string, pids []int) []string {
	t.Helper()
	var left []string
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		left = append(left, fmt.Sprintf("directory %s (stat: %v)", dir, err))
	}
	for _, p := range processes(t) {
		if slices.Contains(pids, p.pid) || slices.Contains(pids, p.ppid) || strings.Contains(p.args, dir) {
			left = append(left, fmt.Sprintf("process %d (parent %d, state %s): %s", p.pid, p.ppid, p.state, p.args))
		}
	}
	return left
}

// process is what /proc tells about a process.
type process struct {
	pid, ppid int
	state     string // R, S, Z and so on
	args      string // command line, arguments separated by spaces
}

// processes lists the processes on the system, except this one.
func processes(t testing.TB) []process {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var list []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// The fields after the command name, which is in parentheses
		// and may contain anything, start with the state and the PPID.
		i := bytes.LastIndexByte(stat, ')')
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " ")
		list = append(list, process{pid: pid, ppid: ppid, state: fields[0], args: args})
	}
	return list
}
