package ingest

import (
	"strings"
	"testing"
	"time"
)

func TestHealth_Check(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		name      string
		streaming bool
		busyFor   time.Duration // 0: waiting for a batch
		want      string        // "" healthy, else a part of the reason
	}{
		{"connecting", false, 0, "not streaming"},
		{"idle stream", true, 0, ""},
		{"on a batch for a while", true, 30 * time.Second, ""},
		{"stuck on a batch", true, 61 * time.Second, "stalled: the archiver has been on one batch of messages for 1m1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHealth()
			h.setStreaming(tc.streaming)
			if tc.busyFor > 0 {
				h.busy(now.Add(-tc.busyFor))
			}
			err := h.Check(now, time.Minute)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check = %v, want healthy", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check = %v, want %q", err, tc.want)
			}
		})
	}
	var none *Health
	if err := none.Check(now, time.Minute); err != nil {
		t.Errorf("a nil Health is healthy, got %v", err)
	}
}
