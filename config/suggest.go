package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// The "did you mean" of an unknown key: the known key nearest to it.

// suggestionHints names the key meant by common mistakes that are too far
// from it for the edit distance to find.
var suggestionHints = map[string]string{
	"db.dbname": "db.database",
	"slot":      "slotname",
	"dsn":       "db.dsn",
	"host":      "db.host",
	"port":      "db.port",
	"user":      "db.user",
	"database":  "db.database",
	"password":  "db.password",
}

// knownKeys lists the names accepted at one level, for suggestions.
func knownKeys(fields map[string]reflect.Value, prefix string) []string {
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	for k := range keyAliases {
		if rest, ok := strings.CutPrefix(k, prefix); ok && !strings.Contains(rest, ".") {
			keys = append(keys, rest)
		}
	}
	for k := range legacyKeys {
		if rest, ok := strings.CutPrefix(k, prefix); ok && !strings.Contains(rest, ".") {
			keys = append(keys, rest)
		}
	}
	sort.Strings(keys)
	return keys
}

// suggest returns ` (did you mean "x"?)` for the known key closest to name,
// or nothing when none is close.
func suggest(name string, known []string, prefix string) string {
	if hint, ok := suggestionHints[prefix+name]; ok {
		return fmt.Sprintf(" (did you mean %q?)", hint)
	}
	best, bestDist := "", len(name)/3+2
	for _, k := range known {
		if canonical, ok := keyAliases[prefix+k]; ok {
			k = strings.TrimPrefix(canonical, prefix)
		}
		ln, lk := strings.ToLower(name), strings.ToLower(k)
		dist := levenshtein(ln, lk)
		if len(lk) >= 3 && len(ln) >= 3 && (strings.HasPrefix(ln, lk) || strings.HasPrefix(lk, ln)) {
			// hostname for host, archive for archiveDir
			dist = min(dist, 1)
		}
		if dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", prefix+best)
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
