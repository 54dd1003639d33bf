package config_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lbt/config"
)

// isolateFromPGEnv clears the libpq environment and points ~/.pgpass at a
// file that does not exist, so that connection tests see only what they set.
func isolateFromPGEnv(t *testing.T) {
	t.Helper()
	for _, name := range []string{
		"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGAPPNAME",
		"PGCONNECT_TIMEOUT", "PGSERVICE", "PGSSLMODE", "PGOPTIONS", "PGTARGETSESSIONATTRS",
	} {
		t.Setenv(name, "")
	}
	t.Setenv("PGPASSFILE", filepath.Join(t.TempDir(), "no-pgpass"))
	t.Setenv("PGSERVICEFILE", filepath.Join(t.TempDir(), "no-service-file"))
}

func TestConnConfig(t *testing.T) {
	isolateFromPGEnv(t)
	type want struct {
		host     string
		port     uint16
		user     string
		database string
		password string
	}
	tests := []struct {
		name string
		db   config.DBConfig
		want want
	}{
		{
			name: "LBT's db block",
			db:   config.DBConfig{Host: "127.0.0.1", Port: 5432, User: "postgres", Database: "postgres"},
			want: want{"127.0.0.1", 5432, "postgres", "postgres", ""},
		},
		{
			name: "values needing quotes",
			db:   config.DBConfig{Host: "/tmp/my sockets", User: `o'brien`, Database: `db with \ and '`, Password: `p a\ss'word`},
			want: want{"/tmp/my sockets", 5432, `o'brien`, `db with \ and '`, `p a\ss'word`},
		},
		{
			name: "keyword/value DSN",
			db:   config.DBConfig{DSN: "host=/tmp port=5433 user=alice dbname=app password='s3 cret'"},
			want: want{"/tmp", 5433, "alice", "app", "s3 cret"},
		},
		{
			name: "db keys override keyword/value DSN",
			db:   config.DBConfig{DSN: "host=/tmp port=5433 user=alice dbname=app", Host: "db.example", Port: 6000, Password: "pw=1 2"},
			want: want{"db.example", 6000, "alice", "app", "pw=1 2"},
		},
		{
			name: "URL DSN",
			db:   config.DBConfig{DSN: "postgres://alice:s%40cret@db.example:5434/app?sslmode=disable"},
			want: want{"db.example", 5434, "alice", "app", "s@cret"},
		},
		{
			name: "db keys override URL DSN",
			db:   config.DBConfig{DSN: "postgresql://alice@db.example/app", User: "bob smith", Database: "other db", Password: "p&w=d+ %"},
			want: want{"db.example", 5432, "bob smith", "other db", "p&w=d+ %"},
		},
		{
			name: "db keys override URL DSN with a query",
			db:   config.DBConfig{DSN: "postgres://db.example/app?sslmode=disable", Port: 7000},
			want: want{"db.example", 7000, "", "app", ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.DB = tt.db
			pc, err := c.ConnConfig()
			if err != nil {
				t.Fatalf("ConnConfig: %v", err)
			}
			got := want{pc.Host, pc.Port, pc.User, pc.Database, pc.Password}
			if tt.want.user == "" {
				got.user = "" // the OS user, whoever runs the test
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if pc.RuntimeParams["application_name"] != "lbt" {
				t.Errorf("application_name = %q, want lbt", pc.RuntimeParams["application_name"])
			}
			if _, ok := pc.RuntimeParams["replication"]; ok {
				t.Error("a normal connection asks for replication")
			}
		})
	}
}

func TestConnConfig_Environment(t *testing.T) {
	isolateFromPGEnv(t)
	t.Setenv("PGHOST", "envhost")
	t.Setenv("PGPORT", "6432")
	t.Setenv("PGPASSWORD", "envpw")
	t.Setenv("PGCONNECT_TIMEOUT", "3")

	c := config.Default()
	c.DB = config.DBConfig{Port: 7432, User: "u", Database: "d"}
	pc, err := c.ConnConfig()
	if err != nil {
		t.Fatal(err)
	}
	if pc.Host != "envhost" || pc.Port != 7432 || pc.Password != "envpw" || pc.ConnectTimeout != 3*time.Second {
		t.Errorf("got host %q port %d password %q timeout %s; want PGHOST, db.port, PGPASSWORD, PGCONNECT_TIMEOUT",
			pc.Host, pc.Port, pc.Password, pc.ConnectTimeout)
	}
}

func TestReplicationConnConfig(t *testing.T) {
	isolateFromPGEnv(t)
	c := config.Default()
	c.DB = config.DBConfig{DSN: "host=/tmp application_name=mine", RuntimeParams: map[string]string{"search_path": "app"}}
	pc, err := c.ReplicationConnConfig()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"replication": "database", "application_name": "mine", "search_path": "app"} {
		if got := pc.RuntimeParams[k]; got != want {
			t.Errorf("RuntimeParams[%q] = %q, want %q", k, got, want)
		}
	}
	if pc.ConnectTimeout != 30*time.Second {
		t.Errorf("ConnectTimeout = %s, want the 30s default", pc.ConnectTimeout)
	}
}

func TestConnConfig_ErrorHidesPassword(t *testing.T) {
	isolateFromPGEnv(t)
	tests := []config.DBConfig{
		{DSN: "host=/tmp password='hunter2 unterminated"},
		{DSN: "host=/tmp password=hunter2 port=notaport"},
		{DSN: "postgres://u:hunter2@h:notaport/db"},
		{DSN: "host=/tmp port=notaport", Password: "hunter2"},
		{DSN: "postgres://h/db?port=x", Password: "hunter2 '\\"},
	}
	for _, db := range tests {
		c := config.Default()
		c.DB = db
		_, err := c.ConnConfig()
		if err == nil {
			t.Errorf("ConnConfig(%q): no error", db.DSN)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestRedacted(t *testing.T) {
	tests := []struct {
		name    string
		db      config.DBConfig
		want    []string // lines expected in the output
		secrets []string // must not appear
	}{
		{
			name:    "password",
			db:      config.DBConfig{Host: "h", Password: "hunter2"},
			want:    []string{"  password: '****'", "  host: h"},
			secrets: []string{"hunter2"},
		},
		{
			name:    "keyword/value DSN",
			db:      config.DBConfig{DSN: `host=/tmp password='a b\'c' user=x sslpassword=k3y`},
			want:    []string{`  dsn: host=/tmp password=**** user=x sslpassword=****`},
			secrets: []string{"a b", "k3y"},
		},
		{
			name:    "URL DSN",
			db:      config.DBConfig{DSN: "postgres://alice:hunter2@db:5432/app?sslmode=require&password=other"},
			want:    []string{"  dsn: postgres://alice:****@db:5432/app?sslmode=require&password=****"},
			secrets: []string{"hunter2", "other"},
		},
		{
			name:    "URL DSN without password",
			db:      config.DBConfig{DSN: "postgres://alice@db/app"},
			want:    []string{"  dsn: postgres://alice@db/app"},
			secrets: nil,
		},
		{
			name:    "malformed DSN is hidden whole",
			db:      config.DBConfig{DSN: "host=/tmp password='hunter2"},
			want:    []string{"  dsn: '****'"},
			secrets: []string{"hunter2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.ArchiveDir = "/archive"
			c.Retention = 7 * 24 * time.Hour
			c.DB = tt.db
			out := c.Redacted()
			lines := strings.Split(out, "\n")
			for _, w := range append(tt.want, "archiveDir: /archive", "tempDir: /archive/tmp", "retention: 168h", "fsync: true", "statusInterval: 10s") {
				found := false
				for _, l := range lines {
					if l == w {
						found = true
					}
				}
				if !found {
					t.Errorf("output lacks line %q:\n%s", w, out)
				}
			}
			for _, s := range tt.secrets {
				if strings.Contains(out, s) {
					t.Errorf("output shows secret %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestRedacted_RoundTrips(t *testing.T) {
	c, err := config.Load("testdata/lbt-sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Retention = 36 * time.Hour
	c.DB.RuntimeParams = map[string]string{"search_path": "a, b"}
	again, err := config.Load(writeConfig(t, c.Redacted()))
	if err != nil {
		t.Fatalf("loading Redacted output: %v", err)
	}
	assertSettings(t, again, c)
}

func TestRedactSecrets(t *testing.T) {
	c := config.Default()
	c.DB = config.DBConfig{DSN: "postgres://u:dsn%20pw@h/db", Password: "it's"}
	got := c.RedactSecrets("a dsn pw, dsn%20pw, it's, 'it\\'s', it%27s")
	if want := "a ****, ****, ****, ****, ****"; got != want {
		t.Errorf("RedactSecrets = %q, want %q", got, want)
	}
}

// RedactError hides the password in the message and keeps the chain, so
// that an error keeps its kind (and its exit status) through redaction.
func TestRedactError(t *testing.T) {
	c := config.Default()
	c.DB.Password = "hunter2"
	kind := errors.New("cannot restore to that moment")
	err := c.RedactError(fmt.Errorf("connect with password hunter2: %w", kind))
	if want := "connect with password ****: cannot restore to that moment"; err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
	if !errors.Is(err, kind) {
		t.Error("the redacted error lost its chain")
	}
	if c.RedactError(nil) != nil {
		t.Error("RedactError(nil) is not nil")
	}
}
