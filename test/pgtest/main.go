package pgtest

import (
	"testing"
	"time"

	"lbt/test/throwaway"
)

// shared is the cluster that Main and Shared share among the tests of one
// test binary. It is package state because testing.M gives TestMain no way
// to hand a value to the tests it runs. It is the package's only mutable
// state.
var shared throwaway.Shared[*Cluster]

// Main runs the tests of a package whose tests share one cluster, and stops
// that cluster when they are done. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// The cluster starts when a test first calls Shared, so that runs selecting
// no test that needs it (go test -run, -list) do not pay for it.
//
// Main installs no signal handler, on purpose: one would also swallow the
// signals that tests of lbt's own shutdown send to the process. A test
// binary killed by a signal, or by a panic in a test, leaves the cleanup
// to the cluster's watchdog (see the package documentation).
func Main(m *testing.M) int { return shared.Main(m) }

// Shared returns the test binary's shared cluster, starting it on the first
// call. It fails the test when the cluster cannot start, for instance when
// PostgreSQL is not installed, and when TestMain does not call Main, which
// is what stops the cluster.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	return shared.Get(t, "pgtest", "cluster", 3*time.Minute, Start)
}
