// Package pgtest gives tests a throwaway PostgreSQL cluster.
//
// Start runs initdb in a fresh temporary directory and starts a server
// configured for logical replication that listens on a Unix socket in that
// directory and on 127.0.0.1 at a free port. Stop shuts it down and removes
// the directory.
//
// The server and its directory must not outlive the test binary, even when
// the binary dies without running its deferred calls: a panic in a test, a
// signal, kill -9. So Start also launches a watchdog, a small shell process
// whose standard input is a pipe that only the test process holds. When the
// test process exits, however it exits, the kernel closes the pipe; the
// watchdog reads end of file, stops the server with an immediate shutdown
// and removes the directory. Stop does the same work synchronously.
//
// A test package that shares one cluster among its tests calls Main from
// TestMain and Shared from its tests.
//
// When the tests run as root, initdb, the server and the watchdog run as the
// operating system user "postgres", since the server refuses to run as root.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"lbt/test/throwaway"
)

const (
	// superuser is the database superuser created by initdb.
	superuser = "postgres"

	// readyTimeout bounds the wait for a started server to accept
	// connections when the caller's context has no earlier deadline.
	readyTimeout = 60 * time.Second

	// stopTimeout bounds the wait for an immediate shutdown and for the
	// watchdog before they are killed.
	stopTimeout = 30 * time.Second

	// maxSocketPath is a conservative limit on the length of the Unix
	// socket path: sun_path holds 108 bytes on Linux, 104 on the BSDs.
	maxSocketPath = 100
)

// errPortInUse reports that the server could not bind its TCP port, which
// another process took between our probe and the server's bind.
var errPortInUse = errors.New("port already in use")

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	binDir  string
	dir     string // temporary directory holding the data, socket and log
	dataDir string
	logPath string
	port    int
	major   int
	cred    *syscall.Credential // identity of the server processes; nil means ours

	watchdog     *exec.Cmd
	watchdogPipe io.WriteCloser  // closing it tells the watchdog to clean up
	watchdogDone <-chan struct{} // closed when the watchdog has exited

	dbSeq atomic.Int64 // numbers the databases made by NewDatabase

	mu         sync.Mutex // guards the fields below
	postmaster *exec.Cmd  // nil while the server is down
	exited     <-chan struct{}
	stopped    bool
	stopErr    error
}

// Start creates and starts a new cluster. The caller must call Stop; if it
// does not, the cluster is removed when the test process exits.
//
// Start fails when no PostgreSQL server binaries are found; the error names
// "make deps", which installs them.
func Start(ctx context.Context) (*Cluster, error) {
	binDir, err := findBinDir()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	dir, err := os.MkdirTemp("", "lbt-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &Cluster{
		binDir:  binDir,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "postgres.log"),
		cred:    cred,
	}
	if err := c.setup(ctx); err != nil {
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, fmt.Errorf("pgtest: start cluster in %s: %w", dir, err)
	}
	return c, nil
}

// setup does the work of Start once the temporary directory exists.
func (c *Cluster) setup(ctx context.Context) error {
	if n := len(filepath.Join(c.dir, ".s.PGSQL.65535")); n > maxSocketPath {
		return fmt.Errorf("socket path would be %d bytes, more than %d: set TMPDIR to a shorter directory", n, maxSocketPath)
	}
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return err
		}
	}
	// The watchdog comes first so that it covers everything after it.
	if err := c.startWatchdog(); err != nil {
		return err
	}
	if err := c.initdb(ctx); err != nil {
		return err
	}
	version, err := os.ReadFile(filepath.Join(c.dataDir, "PG_VERSION"))
	if err != nil {
		return err
	}
	c.major, err = strconv.Atoi(strings.TrimSpace(string(version)))
	if err != nil {
		return fmt.Errorf("parse PG_VERSION: %w", err)
	}
	if err := c.writeConfig(); err != nil {
		return err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	// The free port we probe can be taken by someone else before the server
	// binds it, for instance by a cluster of a test package running in
	// parallel; a few fresh ports make that harmless.
	for attempt := 1; ; attempt++ {
		c.port, err = throwaway.FreePort()
		if err != nil {
			return err
		}
		err = c.startServerLocked(ctx)
		if err == nil || !errors.Is(err, errPortInUse) || attempt == 5 {
			return err
		}
	}
}

// watchdogScript runs as the server's user with the test process's pipe as
// its standard input. cat returns at end of file, which comes when the test
// process closes the pipe in Stop or exits in any way. The server is then
// stopped like in a crash, since nothing in it needs to survive. Interrupt
// and hangup are ignored so that a ^C at a terminal, which may kill the test
// process, cannot kill the watchdog before it has cleaned up; it runs in a
// process group of its own anyway.
const watchdogScript = `trap '' INT HUP
cat >/dev/null
"$1" stop -D "$2" -m immediate -w -t 30 >/dev/null 2>&1
rm -rf "$3"
`

func (c *Cluster) startWatchdog() error {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "pgtest-watchdog",
		filepath.Join(c.binDir, "pg_ctl"), c.dataDir, c.dir)
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	// The write end is close-on-exec, so no other child (the server
	// included) inherits it and delays the end of file.
	pipe, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	done, err := throwaway.StartCommand(cmd)
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	c.watchdog, c.watchdogPipe, c.watchdogDone = cmd, pipe, done
	return nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "initdb"),
		"-D", c.dataDir, "-U", superuser, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// writeConfig appends our settings to postgresql.conf, where the last
// setting of a parameter wins. The port is given on the command line
// instead, so that a retry on another port does not rewrite the file.
func (c *Cluster) writeConfig() error {
	settings := []string{
		"# Added by lbt/test/pgtest.",
		"listen_addresses = '127.0.0.1'",
		"unix_socket_directories = " + quoteLiteral(c.dir),
		"wal_level = logical",
		"max_replication_slots = 20",
		"max_wal_senders = 20",
		"wal_sender_timeout = 60s",
		"max_connections = 100",
		// Prepared transactions are what a slot's creation can wait for.
		"max_prepared_transactions = 10",
		"shared_buffers = 128MB",
		// Throwaway data: durability across an OS crash is not needed,
		// and a crash of the server alone loses nothing with fsync off.
		"fsync = off",
		// The server's stderr goes to postgres.log in the cluster directory.
		"logging_collector = off",
		"log_destination = 'stderr'",
	}
	f, err := os.OpenFile(filepath.Join(c.dataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, "\n"+strings.Join(settings, "\n")+"\n")
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	return nil
}

// startServerLocked starts the postmaster on c.port and waits until it
// accepts connections. c.mu must be held.
func (c *Cluster) startServerLocked(ctx context.Context) error {
	if c.postmaster != nil {
		return errors.New("server is already running")
	}
	logFile, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the server has its own descriptor once started
	if c.cred != nil {
		if err := logFile.Chown(int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return err
		}
	}
	cmd := exec.Command(filepath.Join(c.binDir, "postgres"), "-D", c.dataDir, "-p", strconv.Itoa(c.port))
	cmd.Dir = c.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// A process group of its own keeps a terminal's ^C away from the
	// server: the test process decides when it stops.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	exited, err := throwaway.StartCommand(cmd)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.postmaster, c.exited = cmd, exited

	if err := c.waitReady(ctx, exited); err != nil {
		if stopErr := c.stopServerLocked(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return err
	}
	return nil
}

// waitReady polls until the server accepts a connection, it exits, or the
// time is up.
func (c *Cluster) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var lastErr error
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attemptCtx, c.DSN("postgres"))
		attemptCancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		lastErr = err

		select {
		case <-exited:
			tail := c.logTail()
			err := fmt.Errorf("server exited during startup (%v); log %s ends with:\n%s", c.postmaster.ProcessState, c.logPath, tail)
			if strings.Contains(tail, "Address already in use") {
				err = fmt.Errorf("%w: %w", errPortInUse, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("server not ready: %w (last attempt: %v); log %s ends with:\n%s",
				ctx.Err(), lastErr, c.logPath, c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logTail returns the last lines of the server log, for error messages.
func (c *Cluster) logTail() string {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// stopServerLocked shuts the server down immediately, as in a crash, and
// waits for it to exit. c.mu must be held.
func (c *Cluster) stopServerLocked() error {
	if c.postmaster == nil {
		return nil
	}
	pm, exited := c.postmaster, c.exited
	c.postmaster, c.exited = nil, nil

	// SIGQUIT is the immediate shutdown: the postmaster makes its children
	// quit and exits once they have.
	select {
	case <-exited:
		return nil
	default:
	}
	if err := pm.Process.Signal(syscall.SIGQUIT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal postmaster: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(stopTimeout):
	}
	// The group holds the postmaster and all its children.
	syscall.Kill(-pm.Process.Pid, syscall.SIGKILL)
	<-exited
	return fmt.Errorf("postmaster did not exit within %v of SIGQUIT; killed it", stopTimeout)
}

// Stop shuts the server down immediately and removes the cluster's
// directory. It can be called more than once and returns the same result
// each time.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.stopErr
	}
	c.stopped = true

	var errs []error
	if err := c.stopServerLocked(); err != nil {
		errs = append(errs, err)
	}
	if c.watchdog != nil {
		c.watchdogPipe.Close()
		select {
		case <-c.watchdogDone:
		case <-time.After(stopTimeout):
			syscall.Kill(-c.watchdog.Process.Pid, syscall.SIGKILL)
			<-c.watchdogDone
			errs = append(errs, fmt.Errorf("watchdog did not finish within %v; killed it", stopTimeout))
		}
	}
	// The watchdog has removed the directory already unless something went
	// wrong; this makes sure of it.
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		c.stopErr = fmt.Errorf("pgtest: stop cluster in %s: %w", c.dir, err)
	}
	return c.stopErr
}

// Crash shuts the server down immediately, as in a crash, and keeps its data
// directory: StartServer then starts it again with crash recovery.
func (c *Cluster) Crash() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("pgtest: crash: cluster is stopped")
	}
	if err := c.stopServerLocked(); err != nil {
		return fmt.Errorf("pgtest: crash: %w", err)
	}
	return nil
}

// StartServer starts the server after Crash, on the same data directory
// and port, and waits until it accepts connections.
func (c *Cluster) StartServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("pgtest: start server: cluster is stopped")
	}
	if err := c.startServerLocked(ctx); err != nil {
		return fmt.Errorf("pgtest: start server: %w", err)
	}
	return nil
}

// Restart crashes the server and starts it again: an immediate shutdown
// followed by crash recovery on the same data directory and port.
func (c *Cluster) Restart(ctx context.Context) error {
	if err := c.Crash(); err != nil {
		return err
	}
	return c.StartServer(ctx)
}

// Port returns the server's port, on 127.0.0.1 and in the socket name.
func (c *Cluster) Port() int { return c.port }

// SocketDir returns the directory of the server's Unix socket, which is
// also the cluster's temporary directory.
func (c *Cluster) SocketDir() string { return c.dir }

// DataDir returns the server's data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// BinDir returns the directory of the PostgreSQL programs (postgres, psql,
// pg_recvlogical, pgbench and so on) that the cluster runs on.
func (c *Cluster) BinDir() string { return c.binDir }

// MajorVersion returns the server's major version, such as 15.
func (c *Cluster) MajorVersion() int { return c.major }

// DSN returns a keyword/value connection string for database dbname as the
// superuser, over the Unix socket.
func (c *Cluster) DSN(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		quoteDSNValue(c.dir), c.port, superuser, quoteDSNValue(dbname))
}

// URL returns a postgres:// connection URL for database dbname as the
// superuser, over TCP to 127.0.0.1.
func (c *Cluster) URL(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// quoteDSNValue quotes a value for a keyword/value connection string when
// it needs quotes.
func quoteDSNValue(s string) string {
	if s != "" && !strings.ContainsAny(s, ` '\`) {
		return s
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, `'`, `\'`) + "'"
}

// quoteLiteral quotes s as a string literal for postgresql.conf or SQL.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// serverCredential returns the identity to run the server processes with:
// the "postgres" user when we are root, since the server refuses to run as
// root, and nil (ourselves) otherwise.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a \"postgres\" user to run the server as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of user postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of user postgres: %w", err)
	}
	// An empty Groups drops root's supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}
