// Package lbtrun builds the lbt binary and runs it as a separate process,
// for tests and benchmarks that need a real daemon: one that can be killed,
// whose exit code and memory use are its own.
package lbtrun

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lbt/test/pgtest"
)

// built is the binary built for this test process; a test binary builds it
// once, as `make build` would.
var built struct {
	sync.Once
	path string
	err  error
}

// Binary builds lbt once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	built.Do(func() {
		dir, err := os.MkdirTemp("", "lbt-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "lbt")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-trimpath", "-o", built.path, "./cmd/lbt")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// RemoveBinary removes the binary Binary built, if it built one. TestMain
// calls it after the tests, so that each test run does not leave a build
// of lbt in the temporary directory.
func RemoveBinary() {
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
}

// WriteConfig writes an lbt config file for database dbname of cluster c.
// Extra lines ("key: value") are added, and replace the test settings of
// the same key (a short flush interval, metrics on a free port).
func WriteConfig(t testing.TB, c *pgtest.Cluster, dbname, archiveDir, slot string, extra ...string) string {
	t.Helper()
	settings := []string{"fsync: true", "flushInterval: 100ms", "statusInterval: 250ms", "metricsAddr: 127.0.0.1:0"}
	text := fmt.Sprintf(`archiveDir: %s
slotname: %s
publication: lbt
db:
  host: %s
  port: %d
  user: postgres
  database: %s
`, archiveDir, slot, c.SocketDir(), c.Port(), dbname)
	for _, s := range settings {
		key, _, _ := strings.Cut(s, ":")
		overridden := false
		for _, e := range extra {
			if strings.HasPrefix(e, key+":") {
				overridden = true
			}
		}
		if !overridden {
			text += s + "\n"
		}
	}
	text += strings.Join(extra, "\n")
	path := filepath.Join(t.TempDir(), "lbt.yaml")
	if err := os.WriteFile(path, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// DBName is the dbname of a keyword/value DSN.
func DBName(dsn string) string {
	for _, f := range strings.Fields(dsn) {
		if k, v, ok := strings.Cut(f, "="); ok && k == "dbname" {
			return v
		}
	}
	return ""
}

// Process is a running lbt command.
type Process struct {
	cmd    *exec.Cmd
	output *bytes.Buffer
	done   chan struct{}
}

// Start runs lbt with args; the process is killed when the test ends.
func Start(t testing.TB, args ...string) *Process {
	t.Helper()
	return StartBinary(t, Binary(t), args...)
}

// StartBinary runs another build of lbt, such as one of an earlier commit
// that a benchmark compares with.
func StartBinary(t testing.TB, binary string, args ...string) *Process {
	t.Helper()
	p := &Process{cmd: exec.Command(binary, args...), output: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.output
	p.cmd.Stdout = p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// Wait waits for the process to end and returns its exit code.
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("lbt %v did not end within %v; output:\n%s", p.cmd.Args[1:], timeout, p.output)
	}
	return p.cmd.ProcessState.ExitCode()
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// Output is what the process printed so far.
func (p *Process) Output() string { return p.output.String() }

// MaxRSS is the peak resident set size of the ended process, in bytes.
func (p *Process) MaxRSS() int64 {
	if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss * 1024
	}
	return 0
}

// CPUTime is the user and system time the ended process used.
func (p *Process) CPUTime() time.Duration {
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// Run runs lbt to completion and returns its exit code and output.
func Run(t testing.TB, args ...string) (int, string) {
	t.Helper()
	p := Start(t, args...)
	code := p.Wait(t, 2*time.Minute)
	return code, p.Output()
}
