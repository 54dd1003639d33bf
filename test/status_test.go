package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"lbt/test/lbtrun"
)

// statusJSON runs lbt status --format json and returns its exit status and
// the decoded report.
func statusJSON(t *testing.T, cfg string, args ...string) (int, map[string]any) {
	t.Helper()
	code, out := lbtrun.Run(t, append([]string{"status", "--config", cfg, "--format", "json"}, args...)...)
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("lbt status --format json printed no JSON (exit %d): %v\n%s", code, err, out)
	}
	return code, r
}

// lbt status speaks Nagios: OK while the daemon streams, CRITICAL once a
// stopped daemon lets WAL pile up past --crit-lag, UNKNOWN when the source
// cannot be reached or there is no archive; the first line says the state
// and why, and the JSON form has the documented fields (docs/STATUS.md).
func TestStatus_NagiosStatesAndJSON(t *testing.T) {
	c, dsn, dir := newSource(t)
	slot := fmt.Sprintf("lbt_status_%d", time.Now().UnixNano()%1e6)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')`)
	d := startBackup(t, c, dsn, dir, func(o *ingestOptions) { o.Slot = slot })
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO t VALUES (0, 'archived')`)
	waitArchived(t, c, dsn, dir)
	cfg := writeConfig(t, c, dsn, dir, slot)

	code, r := statusJSON(t, cfg)
	if code != 0 || r["state"] != "OK" {
		t.Fatalf("while streaming: exit %d, state %v, reasons %v; want 0 OK", code, r["state"], r["reasons"])
	}
	for _, field := range []string{"state", "reasons", "archive_dir", "archived_lsn", "last_commit", "last_commit_age_seconds",
		"last_advanced", "archive_age_seconds", "source_reachable", "slot", "slot_exists", "slot_active", "lag_bytes",
		"retained_wal_bytes", "wal_status", "safe_wal_size", "max_slot_wal_keep_size", "thresholds", "table_states"} {
		if _, ok := r[field]; !ok {
			t.Errorf("status JSON lacks the documented field %q", field)
		}
	}
	if r["wal_status"] != "reserved" || r["safe_wal_size"] != nil || r["slot_active"] != true {
		t.Errorf("slot fields: wal_status %v, safe_wal_size %v, active %v; want reserved, null (no max_slot_wal_keep_size), true",
			r["wal_status"], r["safe_wal_size"], r["slot_active"])
	}
	tables, _ := r["table_states"].([]any)
	if len(tables) != 1 || tables[0].(map[string]any)["table"] != "public.t" {
		t.Errorf("table_states = %v, want public.t", r["table_states"])
	}

	d.stop()
	// About 8 MB of WAL the stopped daemon does not confirm.
	c.Exec(t, dsn, `INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(2, 50000) g`)
	code, out := lbtrun.Run(t, "status", "--config", cfg, "--crit-lag", "4MB", "--warn-lag", "1MB")
	first, _, _ := strings.Cut(out, "\n")
	if code != 2 || !strings.HasPrefix(first, "CRITICAL: slot "+slot+" retains ") || !strings.Contains(first, "(crit 4.0 MB)") ||
		!strings.Contains(first, "slot "+slot+" is inactive: lbt backup is not running") {
		t.Errorf("stopped daemon, WAL piling up: exit %d, first line %q; want 2 and CRITICAL naming the retained WAL and the inactive slot", code, first)
	}
	if code, _ := lbtrun.Run(t, "status", "--config", cfg, "--crit-lag", "0", "--warn-lag", "0"); code != 1 {
		t.Errorf("with the lag thresholds off, a stopped daemon is a WARNING: exit %d, want 1", code)
	}

	t.Setenv("LBT_DB_HOST", "127.0.0.1")
	t.Setenv("LBT_DB_PORT", "1") // nothing listens there
	code, out = lbtrun.Run(t, "status", "--config", cfg)
	if first, _, _ := strings.Cut(out, "\n"); code != 3 || !strings.HasPrefix(first, "UNKNOWN: source not reachable") {
		t.Errorf("unreachable source: exit %d, first line %q; want 3 UNKNOWN", code, first)
	}
	noArchive := writeConfig(t, c, dsn, t.TempDir(), slot)
	code, out = lbtrun.Run(t, "status", "--config", noArchive)
	if first, _, _ := strings.Cut(out, "\n"); code != 3 || !strings.HasPrefix(first, "UNKNOWN: ") {
		t.Errorf("no archive: exit %d, first line %q; want 3 UNKNOWN", code, first)
	}
}
