package s3test

import (
	"context"
	"testing"
	"time"

	"lbt/test/throwaway"
)

// shared is the server that Main and Shared share among the tests of one
// test binary; package state because testing.M gives TestMain no way to hand
// a value to its tests.
var shared throwaway.Shared[*Server]

// Main runs the tests of a package whose tests share one server and stops
// that server when they are done. Call it from TestMain, after or instead
// of pgtest.Main:
//
//	func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }
//
// The server starts when a test first calls Shared.
func Main(m interface{ Run() int }) int { return shared.Main(m) }

// Shared returns the test binary's shared server, starting it on the first
// call. It fails the test when the server cannot start and when TestMain
// does not call Main.
func Shared(t testing.TB) *Server {
	t.Helper()
	return shared.Get(t, "s3test", "versitygw", 2*time.Minute, Start)
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
