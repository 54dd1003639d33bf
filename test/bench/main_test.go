// Package bench holds lbt's benchmarks: figures printed by `make bench`,
// each against a reference measured in the same run where there is one.
// They are not run by `make test`.
package bench

import (
	"os"
	"testing"

	"lbt/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
