package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"lbt/catalog"
	"lbt/config"
)

// parseTimeFlag reads a moment given on the command line: RFC 3339;
// 'YYYY-MM-DD HH:MM:SS[.frac]' with or without a zone offset (local time
// when none, as psql users expect); a date alone (midnight); or a relative
// form such as -2h, -30m or -1d12h, counted back from now.
func parseTimeFlag(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty time")
	}
	if s == "now" {
		return now, nil
	}
	if s[0] == '-' {
		d, err := parseRelative(s[1:])
		if err != nil {
			return time.Time{}, fmt.Errorf("time %q: %v", s, err)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	s = strings.Replace(s, "T", " ", 1)
	for _, layout := range []string{
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999Z07",
		"2006-01-02 15:04:05.999999999 Z07:00",
		"2006-01-02 15:04:05.999999999 MST",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: use RFC 3339 (2026-11-21T14:03:00Z), 'YYYY-MM-DD HH:MM:SS[.frac][+zone]' or a relative time like -2h", s)
}

// parseLSNFlag reads the WAL position given to flag (--lsn, --before-lsn):
// as PostgreSQL writes it, and not 0/0, which no transaction ends at.
func parseLSNFlag(flag, s string) (uint64, error) {
	lsn, err := catalog.ParseLSN(s)
	if err != nil || lsn == 0 {
		return 0, usageError{fmt.Errorf("%s %q: want a WAL position like 0/16B3748", flag, s)}
	}
	return lsn, nil
}

// parseRelative reads the duration of a relative time, as config keys
// write durations (2h, 90m, 1d12h).
func parseRelative(s string) (time.Duration, error) {
	d, err := config.ParseDuration(s)
	if err != nil || d < 0 || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("bad relative time (want e.g. -2h, -90m, -1d)")
	}
	return d, nil
}

// timeArg is the value of a flag that takes a moment (--until, --since).
// kong reads an argument that starts with a hyphen as a flag, so that
// `--until -2h` would be refused as the unknown short flag -2 and only
// `--until=-2h` would work. timeArg takes the next argument as its value
// when it is a relative time (a hyphen and a digit): no flag of lbt looks
// like that, so nothing else is misread. Anything else goes through kong's
// own rules, so `--until --lsn` still says that --until lacks a value.
type timeArg string

// Decode implements kong.MapperValue.
func (a *timeArg) Decode(ctx *kong.DecodeContext) error {
	if t := ctx.Scan.Peek(); t.Type == kong.UntypedToken {
		if s, ok := t.Value.(string); ok && isRelativeTime(s) {
			ctx.Scan.Pop()
			*a = timeArg(s)
			return nil
		}
	}
	var s string
	if err := ctx.Scan.PopValueInto("time", &s); err != nil {
		return err
	}
	*a = timeArg(s)
	return nil
}

// isRelativeTime reports whether s has the form of a relative time, -2h or
// -1d12h, as opposed to a flag.
func isRelativeTime(s string) bool {
	return len(s) >= 2 && s[0] == '-' && s[1] >= '0' && s[1] <= '9'
}
