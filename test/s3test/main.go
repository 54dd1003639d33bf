package s3test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// shared is the server that Main and Shared share among the tests of one
// test binary; package state because testing.M gives TestMain no way to hand
// a value to its tests.
var shared struct {
	mu      sync.Mutex
	inMain  bool
	started bool
	server  *Server
	err     error
}

// Main runs the tests of a package whose tests share one server and stops
// that server when they are done. Call it from TestMain, after or instead
// of pgtest.Main:
//
//	func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }
//
// The server starts when a test first calls Shared.
func Main(m interface{ Run() int }) int {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()

	code := m.Run()

	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.inMain = false
	if shared.server != nil {
		if err := shared.server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Shared returns the test binary's shared server, starting it on the first
// call. It fails the test when the server cannot start and when TestMain
// does not call Main.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		t.Fatal("s3test.Shared: the test package's TestMain must call s3test.Main")
	}
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		shared.server, shared.err = Start(ctx)
		cancel()
	}
	if shared.err != nil {
		t.Fatalf("shared versitygw: %v", shared.err)
	}
	return shared.server
}

// Bucket returns a new bucket on the shared server for one test.
func Bucket(t testing.TB) (*Server, string) {
	t.Helper()
	s := Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := s.CreateBucket(ctx, "lbt")
	if err != nil {
		t.Fatal(err)
	}
	return s, name
}
