package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lbt/test/pgtest"
)

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// lbtBinary builds bin/lbt once per test binary, as `make build` does.
func lbtBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lbt-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "lbt")
		cmd := exec.Command("go", "build", "-o", buildOnce.path, "../cmd/lbt")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// writeConfig writes an lbt config file for a test database; extra lines
// are appended as they are.
func writeConfig(t *testing.T, c *pgtest.Cluster, dsn, archiveDir, slot string, extra ...string) string {
	t.Helper()
	db := dsnValue(dsn, "dbname")
	text := fmt.Sprintf(`archiveDir: %s
slotname: %s
publication: lbt
fsync: true
flushInterval: 100ms
statusInterval: 1s
db:
  host: %s
  port: %d
  user: postgres
  database: %s
`, archiveDir, slot, c.SocketDir(), c.Port(), db)
	text += strings.Join(extra, "\n")
	path := filepath.Join(t.TempDir(), "lbt.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func dsnValue(dsn, key string) string {
	for _, f := range strings.Fields(dsn) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// process is a running lbt command.
type process struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
	err    error
}

func startLBT(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(lbtBinary(t), args...), stderr: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait waits for the process to end and returns its exit code.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("lbt %v did not end within %v; output:\n%s", p.cmd.Args[1:], timeout, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *process) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// runLBT runs lbt to completion and returns its exit code and output.
func runLBT(t *testing.T, args ...string) (int, string) {
	t.Helper()
	p := startLBT(t, args...)
	code := p.wait(t, 2*time.Minute)
	return code, p.stderr.String()
}
