package test

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbt/test/lbtrun"
)

// SIGHUP makes a running lbt backup read its configuration again: the log
// level and the scheduler's policy (here retention) apply at once, a
// changed setting that needs a restart (the slot) is named and left as it
// runs, and an invalid file changes nothing. The daemon streams on.
func TestBackup_SIGHUPReloadsWhatCanChange(t *testing.T) {
	c, dsn, dir := newSource(t)
	cfg := writeConfig(t, c, dsn, dir, "reload")
	original := readFile(t, cfg)
	p := lbtrun.Start(t, "backup", "--config", cfg)
	waitArchived(t, c, dsn, dir)

	changed := strings.Replace(original, "slotname: reload", "slotname: reload2", 1) + "retention: 7d\nlogLevel: debug\n"
	if err := os.WriteFile(cfg, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGHUP)
	waitFor(t, "the reload to be logged", 30*time.Second, func() bool {
		out := p.Output()
		return strings.Contains(out, "SIGHUP: configuration reloaded") &&
			strings.Contains(out, "basebackup and retention policy reloaded") && strings.Contains(out, "retention=168h0m0s")
	})
	out := p.Output()
	if !strings.Contains(out, `apply only after a restart: keys=slotname`) {
		t.Errorf("the changed slot name is not named as needing a restart:\n%s", out)
	}
	for _, key := range []string{"retention", "logLevel"} {
		if !strings.Contains(out[strings.Index(out, "SIGHUP: configuration reloaded"):], key) {
			t.Errorf("%s is not among the applied settings:\n%s", key, out)
		}
	}

	if err := os.WriteFile(cfg, []byte(changed+"fsynk: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGHUP)
	waitFor(t, "the invalid configuration to be refused", 30*time.Second, func() bool {
		return strings.Contains(p.Output(), "SIGHUP: the configuration is not valid; nothing was reloaded")
	})
	waitArchived(t, c, dsn, dir) // still streaming, on its first slot
	if p.Exited() {
		t.Fatalf("lbt backup exited after SIGHUP:\n%s", p.Output())
	}
	stopDaemon(t, p)
}
