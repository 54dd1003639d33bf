package status

import (
	"strings"
	"testing"
	"time"
)

func TestJudge(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { at := now.Add(-d); return &at }
	i64 := func(n int64) *int64 { return &n }
	th := Thresholds{WarnLag: 1 << 30, CritLag: 8 << 30, WarnAge: 15 * time.Minute, CritAge: time.Hour}
	healthy := func() Report {
		return Report{Slot: "lbt", ArchivedLSN: "0/16B3748", SourceReachable: true, SlotExists: true, SlotActive: true,
			RetainedWALBytes: 1 << 20, WALStatus: "reserved", LastAdvanced: ago(time.Second)}
	}
	cases := []struct {
		name   string
		change func(*Report)
		th     Thresholds
		state  State
		line   string
	}{
		{"healthy", func(*Report) {}, th, OK, "OK: archived up to 0/16B3748, slot lbt keeps 1.0 MB of WAL"},
		{"lag over warn", func(r *Report) { r.RetainedWALBytes = 2 << 30 }, th, Warning, "WARNING: slot lbt retains 2.1 GB of WAL (warn 1.1 GB)"},
		{"lag over crit", func(r *Report) { r.RetainedWALBytes = 9 << 30 }, th, Critical, "CRITICAL: slot lbt retains 9.7 GB of WAL (crit 8.6 GB)"},
		{"lag thresholds off", func(r *Report) { r.RetainedWALBytes = 9 << 30 }, Thresholds{}, OK, ""},
		{"stale archive", func(r *Report) { r.LastAdvanced = ago(20 * time.Minute) }, th, Warning, "WARNING: the archive last advanced 20m0s ago (warn 15m0s)"},
		{"very stale archive", func(r *Report) { r.LastAdvanced = ago(2 * time.Hour) }, th, Critical, "CRITICAL: the archive last advanced 2h0m0s ago (crit 1h0m0s)"},
		{"daemon stopped", func(r *Report) { r.SlotActive = false }, th, Warning, "WARNING: slot lbt is inactive: lbt backup is not running"},
		{"slot missing", func(r *Report) { r.SlotExists = false }, th, Critical, "CRITICAL: slot lbt does not exist on the source"},
		{"source unreachable", func(r *Report) { r.SourceReachable, r.SourceError = false, "connection refused" }, th, Unknown,
			"UNKNOWN: source not reachable: connection refused"},
		{"unreachable but known stale: critical wins", func(r *Report) {
			r.SourceReachable, r.SourceError, r.LastAdvanced = false, "connection refused", ago(2*time.Hour)
		}, th, Critical, "CRITICAL: source not reachable: connection refused; the archive last advanced 2h0m0s ago"},
		{"near max_slot_wal_keep_size", func(r *Report) {
			r.SafeWALSize, r.MaxSlotWALKeepSize = i64(100<<20), i64(1<<30)
		}, th, Warning, "WARNING: slot lbt can keep only 105 MB more of WAL before the server drops it (max_slot_wal_keep_size 1.1 GB)"},
		{"unreserved", func(r *Report) { r.WALStatus = "unreserved" }, th, Critical, "wal_status unreserved"},
		{"lost", func(r *Report) { r.WALStatus = "lost" }, th, Critical, "wal_status lost"},
		{"empty archive", func(r *Report) { r.LastAdvanced, r.ArchivedLSN = nil, "" }, th, Warning, "WARNING: the archive holds no transaction yet"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := healthy()
			tc.change(&r)
			Judge(&r, tc.th, now)
			if r.State != tc.state {
				t.Errorf("state %s, want %s (%s)", r.State, tc.state, r.Line())
			}
			if !strings.HasPrefix(r.Line(), tc.state.String()+": ") || !strings.Contains(r.Line(), strings.TrimPrefix(tc.line, tc.state.String()+": ")) {
				t.Errorf("line %q, want it to contain %q", r.Line(), tc.line)
			}
		})
	}
}
