package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lbt/test/lbtrun"
)

// The commands that read an archive exit with status 10 (not an archive)
// and one line when archiveDir holds none, so that a supervisor can tell a
// wrong archiveDir from a failure. Statuses 6 (not restorable) and 11
// (locked) are asserted in TestRestore_Command and
// TestBackup_SecondDaemonOnSameArchiveRefuses.
func TestExit_NotAnArchive(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "lbt.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("archiveDir: '%s'\n", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"restore", "--table", "t", "--sql", "-"},
		{"inspect", "tables"},
		{"verify"},
		{"undo", "--xid", "5"},
	} {
		code, out := lbtrun.Run(t, append(args, "--config", cfg)...)
		if code != 10 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "not an lbt archive: "+dir) {
			t.Errorf("lbt %s: exit %d, want 10 and one line; output:\n%s", strings.Join(args, " "), code, out)
		}
	}
}
