// Package s3test gives tests a throwaway S3-compatible object store: a
// versitygw server (Apache-2.0) with the posix backend, listening on a free
// loopback port, keeping its objects in a fresh temporary directory, with
// random credentials.
//
// Start runs the server and Stop shuts it down and removes the directory.
// Halt and Resume stop and restart the same server on the same port and
// data, for tests of an object store that goes away for a while.
//
// The server and its directory must not outlive the test binary, even when
// the binary dies without running its deferred calls. As in test/pgtest, a
// watchdog shell holds a pipe that only the test process writes to; when the
// test process exits, however it exits, the watchdog reads end of file,
// kills the server and removes the directory.
//
// The server is found in $LBT_VERSITYGW or in bin/tools of the module, where
// "make deps" installs it at the version that VersitygwVersion names. A
// server that cannot start is an error, never a reason to skip.
package s3test

import (
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"lbt/test/throwaway"
)

// VersitygwVersion is the module version of versitygw that the tests run
// against; the Makefile's VERSITYGW_VERSION installs the same.
const VersitygwVersion = "v1.8.0"

// binEnv names the environment variable that chooses the server binary.
const binEnv = "LBT_VERSITYGW"

// Region is the region the server answers for.
const Region = "us-east-1"

const readyTimeout = 60 * time.Second

// Server is a running versitygw.
type Server struct {
	bin     string
	dir     string // temporary directory: data, log, pid file
	dataDir string
	logPath string
	pidPath string
	port    int

	// AccessKey and SecretKey are the server's only credentials, random
	// for each server.
	AccessKey string
	SecretKey string

	watchdog     *exec.Cmd
	watchdogPipe io.WriteCloser

	mu      sync.Mutex
	cmd     *exec.Cmd // nil while the server is down
	exited  <-chan struct{}
	stopped bool
}

// Start starts a new server. The caller must call Stop; if it does not,
// the server is killed and its directory removed when the test process
// exits.
func Start(ctx context.Context) (*Server, error) {
	bin, err := findBinary()
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	dir, err := os.MkdirTemp("", "lbt-s3test-")
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	s := &Server{
		bin:       bin,
		dir:       dir,
		dataDir:   filepath.Join(dir, "data"),
		logPath:   filepath.Join(dir, "versitygw.log"),
		pidPath:   filepath.Join(dir, "versitygw.pid"),
		AccessKey: "AK" + randomHex(9),
		SecretKey: randomHex(20),
	}
	if err := s.setup(ctx); err != nil {
		if stopErr := s.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, fmt.Errorf("s3test: start versitygw in %s: %w", dir, err)
	}
	return s, nil
}

func (s *Server) setup(ctx context.Context) error {
	if err := os.Mkdir(s.dataDir, 0o700); err != nil {
		return err
	}
	if err := s.startWatchdog(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Another process may take the probed port before the server binds it.
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if s.port, err = throwaway.FreePort(); err != nil {
			return err
		}
		if err = s.startLocked(ctx); err == nil {
			return nil
		}
	}
	return err
}

// watchdogScript kills the server whose pid is in $1 and removes $2 when
// its standard input, a pipe that only the test process holds, ends.
const watchdogScript = `trap '' INT HUP
cat >/dev/null
[ -f "$1" ] && kill -9 "$(cat "$1")" 2>/dev/null
rm -rf "$2"
`

func (s *Server) startWatchdog() error {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "s3test-watchdog", s.pidPath, s.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pipe, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	s.watchdog, s.watchdogPipe = cmd, pipe
	return nil
}

func (s *Server) startLocked(ctx context.Context) error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(s.bin,
		"--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", Region,
		"--port", "127.0.0.1:"+strconv.Itoa(s.port),
		"posix", s.dataDir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	exited, err := throwaway.StartCommand(cmd)
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.pidPath, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		cmd.Process.Kill()
		<-exited
		return err
	}
	s.cmd, s.exited = cmd, exited
	if err := s.waitReady(ctx, exited); err != nil {
		s.killLocked()
		return err
	}
	return nil
}

// waitReady waits until the server answers HTTP on its port.
func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(s.Endpoint())
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited before it answered: %s", s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("versitygw did not answer on %s: %w: %s", s.Endpoint(), ctx.Err(), s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd, s.exited = nil, nil
	os.Remove(s.pidPath)
}

// Halt stops the server, keeping its port and data for Resume. Clients see
// connections refused until then.
func (s *Server) Halt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

// Resume starts the halted server again on the same port and data.
func (s *Server) Resume(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("s3test: resume a stopped server")
	}
	if s.cmd != nil {
		return nil
	}
	if err := s.startLocked(ctx); err != nil {
		return fmt.Errorf("s3test: resume versitygw: %w", err)
	}
	return nil
}

// Stop kills the server and removes its directory. It may be called more
// than once.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	s.killLocked()
	if s.watchdogPipe != nil {
		s.watchdogPipe.Close()
		s.watchdog.Wait()
	}
	return os.RemoveAll(s.dir)
}

// Endpoint is the server's URL, http://127.0.0.1:PORT.
func (s *Server) Endpoint() string {
	return "http://127.0.0.1:" + strconv.Itoa(s.port)
}

// Host is the server's host:port.
func (s *Server) Host() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Client returns a client of the server with its credentials.
func (s *Server) Client() (*minio.Client, error) {
	return minio.New(s.Host(), &minio.Options{
		Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region: Region,
	})
}

// CreateBucket creates a bucket with a fresh name that begins with prefix
// and returns the name.
func (s *Server) CreateBucket(ctx context.Context, prefix string) (string, error) {
	c, err := s.Client()
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	name := prefix + "-" + randomHex(4)
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region}); err != nil {
		return "", fmt.Errorf("s3test: create bucket %s: %w", name, err)
	}
	return name, nil
}

// Env returns the AWS environment variables that give a client the
// server's credentials, as KEY=VALUE for exec.Cmd.Env.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + Region,
	}
}

// findBinary returns the versitygw binary, checked to be VersitygwVersion.
func findBinary() (string, error) {
	bin := os.Getenv(binEnv)
	if bin == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", err
		}
		bin = filepath.Join(root, "bin", "tools", "versitygw")
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("versitygw %s not found at %s (%v): run \"make deps\", or set %s to a versitygw %s binary", VersitygwVersion, bin, err, binEnv, VersitygwVersion)
	}
	if v := info.Main.Version; v != VersitygwVersion {
		return "", fmt.Errorf("%s is versitygw %s, want %s: run \"make deps\"", bin, v, VersitygwVersion)
	}
	return bin, nil
}

// moduleRoot returns the directory of the go.mod above the working
// directory, which go test sets to the package's directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory: set %s to a versitygw %s binary", binEnv, VersitygwVersion)
		}
		dir = parent
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
