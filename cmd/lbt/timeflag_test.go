package main

import (
	"context"
	"strings"
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

// TestTimeFlags parses every flag that takes a moment, with its value as a
// separate argument and after an equals sign, as docs/RESTORE.md and the
// README write them.
func TestTimeFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		get  func(*cli) timeArg
		want string
		err  string // a substring of the parse error; empty for none
	}{
		{name: "restore --until -2h", args: []string{"restore", "--table", "t", "--until", "-2h"}, get: func(c *cli) timeArg { return c.Restore.Until }, want: "-2h"},
		{name: "restore --until=-2h", args: []string{"restore", "--table", "t", "--until=-2h"}, get: func(c *cli) timeArg { return c.Restore.Until }, want: "-2h"},
		{name: "restore --until -1d12h then a flag", args: []string{"restore", "--until", "-1d12h", "--table", "t", "-q"}, get: func(c *cli) timeArg { return c.Restore.Until }, want: "-1d12h"},
		{name: "restore --until date", args: []string{"restore", "--table", "t", "--until", "2026-11-21 14:03"}, get: func(c *cli) timeArg { return c.Restore.Until }, want: "2026-11-21 14:03"},
		{name: "history --since -2h --until -30m", args: []string{"inspect", "history", "--table", "t", "--since", "-2h", "--until", "-30m"}, get: func(c *cli) timeArg { return c.Inspect.History.Since + "," + c.Inspect.History.Until }, want: "-2h,-30m"},
		{name: "changes --since -2h", args: []string{"inspect", "changes", "--table", "t", "--since", "-2h"}, get: func(c *cli) timeArg { return c.Inspect.Changes.Since }, want: "-2h"},
		{name: "ddl --until -90m", args: []string{"inspect", "ddl", "--until", "-90m"}, get: func(c *cli) timeArg { return c.Inspect.DDL.Until }, want: "-90m"},
		{name: "a flag is not a value", args: []string{"restore", "--table", "t", "--until", "--lsn", "0/1"}, err: `--until: expected time value but got "--lsn" (long flag)`},
		{name: "a short flag is not a value", args: []string{"restore", "--table", "t", "--until", "-q"}, err: `--until: expected time value but got "-q" (short flag)`},
		{name: "missing value", args: []string{"restore", "--table", "t", "--until"}, err: `--until: expected time value but got "EOL"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c cli
			var out, errOut strings.Builder
			_, err := newParser(context.Background(), &c, &out, &errOut).Parse(tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parse error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got := tt.get(&c); string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// Every flag that takes a moment reads a relative time as its own
// argument: restore, inspect, undo and diff alike.
func TestTimeFlags_EveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"undo", "--actor", "app", "--since", "-2h", "--until", "-1h", "--help"},
		{"diff", "--table", "t", "--from", "-2h", "--to", "-1h", "--help"},
	} {
		code, _, stderr := runLBT(t, args...)
		if code != 0 {
			t.Errorf("lbt %v: exit %d: %s", args, code, stderr)
		}
	}
}

// FuzzParseTimeFlag: parseTimeFlag never panics, refuses with an error
// naming the value, and a relative time is never after now.
func FuzzParseTimeFlag(f *testing.F) {
	for _, s := range []string{"2026-11-20T14:03:00Z", "2026-11-20 14:03:00.25", "2026-11-20 14:03:00+05:30", "2026-11-20",
		"2026-11-20 14:03 CET", "-2h", "-1d12h", "-1.5d", "-d", "-0d", "-9999999999d", "-1d-1h", "now", "yesterday", "", "-"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 21, 14, 3, 0, 0, time.FixedZone("CET", 3600))
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTimeFlag(s, now)
		if err != nil {
			if strings.TrimSpace(s) != "" && !strings.Contains(err.Error(), "time ") {
				t.Fatalf("parseTimeFlag(%q): error %q does not name the time", s, err)
			}
			return
		}
		if strings.HasPrefix(strings.TrimSpace(s), "-") && got.After(now) {
			t.Fatalf("parseTimeFlag(%q) = %v, after now %v", s, got, now)
		}
	})
}
