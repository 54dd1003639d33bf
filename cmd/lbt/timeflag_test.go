package main

import (
	"testing"
	"time"
)

func TestParseTimeFlag(t *testing.T) {
	loc := time.FixedZone("CET", 3600)
	now := time.Date(2026, 11, 21, 14, 3, 0, 0, loc)
	tests := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"2026-11-20T14:03:00Z", time.Date(2026, 11, 20, 14, 3, 0, 0, time.UTC), false},
		{"2026-11-20 14:03:00.25", time.Date(2026, 11, 20, 14, 3, 0, 250e6, loc), false},
		{"2026-11-20 14:03:00+02", time.Date(2026, 11, 20, 12, 3, 0, 0, time.UTC), false},
		{"2026-11-20 14:03:00+05:30", time.Date(2026, 11, 20, 8, 33, 0, 0, time.UTC), false},
		{"2026-11-20", time.Date(2026, 11, 20, 0, 0, 0, 0, loc), false},
		{"-2h", now.Add(-2 * time.Hour), false},
		{"-1d12h", now.Add(-36 * time.Hour), false},
		{"now", now, false},
		{"yesterday", time.Time{}, true},
		{"-2x", time.Time{}, true},
		{"", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTimeFlag(tt.in, now)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if !tt.err && !got.Equal(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
