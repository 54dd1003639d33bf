package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses a Go duration ("10h5s", "90m", LBT's syntax) that may
// also use d for days ("7d", "1d12h", "1.5d"), which retention periods are
// naturally written in. It is the one duration syntax of lbt: config keys,
// environment variables and the relative times of flags (-2h, -1d12h).
// Durations beyond time.Duration's ±292 years are an error.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if !strings.Contains(s, "d") {
		return time.ParseDuration(s)
	}
	// Rewrite every <number>d as hours and let time.ParseDuration do the
	// rest; it accepts repeated units, so "1d12h" becomes "24h12h".
	var b strings.Builder
	start := 0 // start of the current number
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9' || c == '.':
			continue
		case c == 'd':
			days, err := strconv.ParseFloat(s[start:i], 64)
			if err != nil || start == i {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			b.WriteString(strconv.FormatFloat(days*24, 'f', -1, 64))
			b.WriteString("h")
			start = i + 1
		default:
			// Copy the unit of a non-day component along with its
			// number.
			j := i
			for j < len(s) && (s[j] < '0' || s[j] > '9') && s[j] != '.' {
				j++
			}
			b.WriteString(s[start:j])
			start = j
			i = j - 1
		}
	}
	b.WriteString(s[start:])
	d, err := time.ParseDuration(b.String())
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

// formatDuration prints d without zero components: 24h rather than
// 24h0m0s, so that printed configurations read like written ones.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
