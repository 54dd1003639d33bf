// Package throwaway holds what the test harnesses for throwaway servers
// (test/pgtest, test/s3test) share: one server per test binary, started on
// first use and stopped when the tests are done, a free loopback port, and
// the start of a server's processes.
package throwaway

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Shared is the one server of type T that the tests of one test binary
// share. A harness keeps one in a package variable, because testing.M gives
// TestMain no way to hand a value to the tests it runs.
type Shared[T interface{ Stop() error }] struct {
	mu      sync.Mutex
	inMain  bool // Main is running and will stop the server
	started bool // Get was called; server or err holds its outcome
	running bool // server is running and Main must stop it
	server  T
	err     error
}

// Main runs the tests and then stops the server if one was started. A
// failure to stop it turns a passing run into a failing one.
func (s *Shared[T]) Main(m interface{ Run() int }) int {
	s.mu.Lock()
	s.inMain = true
	s.mu.Unlock()

	code := m.Run()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.inMain = false
	if s.running {
		if err := s.server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Get returns the shared server, starting it with start, bounded by
// timeout, on the first call. It fails the test when the server cannot
// start and when TestMain does not run Main, which is what stops it.
// harness names the harness package and what the server is, for the
// failure messages.
func (s *Shared[T]) Get(t testing.TB, harness, what string, timeout time.Duration, start func(context.Context) (T, error)) T {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.inMain {
		t.Fatalf("%s.Shared: the test package's TestMain must call %s.Main", harness, harness)
	}
	if !s.started {
		s.started = true
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		s.server, s.err = start(ctx)
		cancel()
		s.running = s.err == nil
	}
	if s.err != nil {
		t.Fatalf("shared %s: %v", what, s.err)
	}
	return s.server
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartCommand starts cmd and reaps it once it exits, when the returned
// channel is closed.
func StartCommand(cmd *exec.Cmd) (exited <-chan struct{}, err error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	return done, nil
}
