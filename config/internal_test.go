package config

import (
	"reflect"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "10h5s", want: 10*time.Hour + 5*time.Second},
		{in: "5m55s", want: 5*time.Minute + 55*time.Second},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "1.5d", want: 36 * time.Hour},
		{in: "2d30m", want: 48*time.Hour + 30*time.Minute},
		{in: " 24h ", want: 24 * time.Hour},
		{in: "-1d", want: -24 * time.Hour},
		{in: "0", want: 0},
		{in: "", err: true},
		{in: "7", err: true},
		{in: "d", err: true},
		{in: "7days", err: true},
		{in: "7 d", err: true},
		{in: "1w", err: true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParseDuration(%q) = %s, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{24 * time.Hour, "24h"},
		{90 * time.Minute, "1h30m"},
		{10 * time.Minute, "10m"},
		{time.Hour + time.Second, "1h0m1s"},
		{1500 * time.Millisecond, "1.5s"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.in); got != tt.want {
			t.Errorf("formatDuration(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEnvName(t *testing.T) {
	tests := map[string]string{
		"archiveDir":                             "LBT_ARCHIVE_DIR",
		"slotname":                               "LBT_SLOTNAME",
		"publication":                            "LBT_PUBLICATION",
		"deltasPerFile":                          "LBT_DELTAS_PER_FILE",
		"db.dsn":                                 "LBT_DSN",
		"db.host":                                "LBT_DB_HOST",
		"db.password":                            "LBT_DB_PASSWORD",
		"metricsAddr":                            "LBT_METRICS_ADDR",
		"logLevel":                               "LBT_LOG_LEVEL",
		"statusInterval":                         "LBT_STATUS_INTERVAL",
		"forceBasebackupAfterInactivityInterval": "LBT_FORCE_BASEBACKUP_AFTER_INACTIVITY_INTERVAL",
	}
	for key, want := range tests {
		if got := envName(key); got != want {
			t.Errorf("envName(%q) = %q, want %q", key, got, want)
		}
	}
}

// TestEveryKeyHasAnEnvironmentVariable guards the naming rule against a new
// setting whose name would collide with another's variable.
func TestEveryKeyHasAnEnvironmentVariable(t *testing.T) {
	c := Default()
	seen := make(map[string]string)
	for _, s := range settings(reflect.ValueOf(&c).Elem(), "") {
		name := envName(s.key)
		if other, ok := seen[name]; ok {
			t.Errorf("%s and %s share %s", other, s.key, name)
		}
		seen[name] = s.key
	}
	if len(seen) < 20 {
		t.Errorf("only %d settings found", len(seen))
	}
}

func TestConnString(t *testing.T) {
	tests := []struct {
		db   DBConfig
		want string
	}{
		{DBConfig{}, ""},
		{DBConfig{DSN: " host=/tmp "}, "host=/tmp"},
		{DBConfig{Host: "/tmp", Port: 5432}, "host='/tmp' port='5432'"},
		{DBConfig{User: `a b`, Password: `it's \ ok`}, `user='a b' password='it\'s \\ ok'`},
		{DBConfig{DSN: "dbname=x", Database: "y"}, "dbname=x dbname='y'"},
		{DBConfig{DSN: "postgres://h/db", User: "a b", Password: "p&=%+"}, "postgres://h/db?user=a%20b&password=p%26%3D%25%2B"},
		{DBConfig{DSN: "postgres://h/db?sslmode=disable", Port: 1}, "postgres://h/db?sslmode=disable&port=1"},
		{DBConfig{DSN: "postgres://u:p?w@h/db", Port: 1}, "postgres://u:p?w@h/db?port=1"},
	}
	for _, tt := range tests {
		if got := tt.db.connString(); got != tt.want {
			t.Errorf("connString(%+v) = %q, want %q", tt.db, got, tt.want)
		}
	}
}
