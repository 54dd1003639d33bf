package test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

func writeConfig(t *testing.T, c *pgtest.Cluster, dsn, archiveDir, slot string, extra ...string) string {
	t.Helper()
	return lbtrun.WriteConfig(t, c, lbtrun.DBName(dsn), archiveDir, slot, extra...)
}

// lbtBasebackup runs lbt basebackup --table table with the config cfg and
// the flags extra, fails the test unless it succeeds, and returns the lines
// it printed about the basebackups it took.
func lbtBasebackup(t *testing.T, cfg, table string, extra ...string) string {
	t.Helper()
	args := append([]string{"basebackup", "--config", cfg, "--table", table}, extra...)
	code, out := lbtrun.Run(t, args...)
	if code != 0 {
		t.Fatalf("lbt %s: exit %d:\n%s", strings.Join(args, " "), code, out)
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "public.") {
			lines = append(lines, l+"\n")
		}
	}
	return strings.Join(lines, "")
}

// killNineAndRestart kills the lbt backup process p as a crash would
// (SIGKILL), waits for it to end and starts lbt backup again on cfg.
func killNineAndRestart(t *testing.T, p *lbtrun.Process, cfg string) *lbtrun.Process {
	t.Helper()
	p.Signal(syscall.SIGKILL)
	p.Wait(t, 30*time.Second)
	return lbtrun.Start(t, "backup", "--config", cfg)
}
