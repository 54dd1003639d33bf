package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"lbt/config"
)

// writeConfig writes a config file named lbt.yaml into a fresh directory and
// returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lbt.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoad_LBTFiles(t *testing.T) {
	// What the two sample files of LBT both set.
	samples := func(c *config.Config) {
		c.DeltasPerFile = 10000
		c.BackupThreshold = 100
		c.ConcurrentBasebackups = 5
		c.TrackNewTables = true
		c.Publication = "mypub"
		c.InitialBasebackup = true
		c.Fsync = true
		c.ArchiveDir = "/tmp/final"
		c.ForceBasebackupAfterInactivityInterval = 24 * time.Hour
	}
	tests := []struct {
		file string
		want func(*config.Config)
	}{
		{
			file: "testdata/lbt-sample.yaml",
			want: func(c *config.Config) {
				samples(c)
				c.TempDir = "/tmp/staging"
				c.SlotName = "myslot"
				c.ArchiverTimeout = 3 * time.Minute
				c.DB = config.DBConfig{Host: "127.0.0.1", Port: 5432, Database: "postgres", User: "postgres"}
			},
		},
		{
			file: "testdata/lbt-test.yaml",
			want: func(c *config.Config) {
				samples(c)
				c.SlotName = "testslot"
				c.ArchiverTimeout = 3 * time.Hour
				c.MetricsAddr = "127.0.0.1:19999"
				c.DB = config.DBConfig{Host: "127.0.0.1", Port: 5432, Database: "lb_test_src", User: "postgres"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			got, err := config.Load(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			want := config.Default()
			tt.want(&want)
			assertSettings(t, got, want)
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// assertSettings compares two configurations by their Redacted form, which
// covers every setting.
func assertSettings(t *testing.T, got, want config.Config) {
	t.Helper()
	if !reflect.DeepEqual(got.DB, want.DB) {
		t.Errorf("DB = %+v, want %+v", got.DB, want.DB)
	}
	if g, w := got.Redacted(), want.Redacted(); g != w {
		t.Errorf("settings differ\ngot:\n%s\nwant:\n%s", g, w)
	}
}

func TestLoad_SampleWarnsAboutIgnoredKeys(t *testing.T) {
	c, err := config.Load("testdata/lbt-sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], `lbt-sample.yaml:8: "sendStatusOnCommit"`) {
		t.Errorf("Warnings() = %q, want one about sendStatusOnCommit on line 8", w)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(*config.Config) // changes from Default; nil when an error is expected
		err  string               // substring of the expected error
	}{
		{name: "empty file", yaml: "", want: func(*config.Config) {}},
		{name: "only a comment", yaml: "# nothing\n", want: func(*config.Config) {}},
		{name: "null value keeps default", yaml: "slotname:\nfsync: ~\n", want: func(*config.Config) {}},
		{
			name: "lbt additions",
			yaml: "retention: 7d\nretentionBasebackups: 3\nbasebackupSchedule: 24h\nmetricsAddr: 0.0.0.0:9000\n" +
				"statusInterval: 5s\nflushInterval: 250ms\nlogLevel: debug\nlogFormat: json\ndebugAddr: 127.0.0.1:6060\n" +
				"db:\n  dsn: host=/tmp\n  runtimeParams:\n    search_path: app\n",
			want: func(c *config.Config) {
				c.Retention = 7 * 24 * time.Hour
				c.RetentionBasebackups = 3
				c.BasebackupSchedule = 24 * time.Hour
				c.MetricsAddr = "0.0.0.0:9000"
				c.StatusInterval = 5 * time.Second
				c.FlushInterval = 250 * time.Millisecond
				c.LogLevel = "debug"
				c.LogFormat = "json"
				c.DebugAddr = "127.0.0.1:6060"
				c.DB = config.DBConfig{DSN: "host=/tmp", RuntimeParams: map[string]string{"search_path": "app"}}
			},
		},
		{name: "alias stagingDir", yaml: "stagingDir: /stage\n", want: func(c *config.Config) { c.TempDir = "/stage" }},
		{
			name: "encryption keys",
			yaml: "encryptRecipients:\n  - age1a\n  - age1b\ndecryptIdentityFile: /k.txt\n",
			want: func(c *config.Config) {
				c.EncryptRecipients = []string{"age1a", "age1b"}
				c.DecryptIdentityFile = "/k.txt"
			},
		},
		{name: "one recipient not in a list", yaml: "encryptRecipients: age1a\n", err: `lbt.yaml:1: encryptRecipients: expected a list, got a scalar`},
		{name: "restoreMemory", yaml: "restoreMemory: 64MiB\n", want: func(c *config.Config) { c.RestoreMemory = 64 << 20 }},
		{name: "restoreMemory off", yaml: "restoreMemory: 0\n", want: func(c *config.Config) { c.RestoreMemory = 0 }},
		{name: "alias StagingDir", yaml: "StagingDir: /stage\n", want: func(c *config.Config) { c.TempDir = "/stage" }},
		{name: "alias messagesPerDelta", yaml: "messagesPerDelta: 500\n", want: func(c *config.Config) { c.DeltasPerFile = 500 }},
		{
			name: "alias db.runtimeparams",
			yaml: "db:\n  runtimeparams: {application_name: x}\n",
			want: func(c *config.Config) { c.DB.RuntimeParams = map[string]string{"application_name": "x"} },
		},
		{
			name: "alias and canonical name together",
			yaml: "tempDir: /a\narchiveDir: /x\nstagingDir: /b\n",
			err:  `lbt.yaml:3: "stagingDir" sets the same setting as "tempDir" on line 1`,
		},
		{
			name: "prometheusPort and metricsAddr together",
			yaml: "metricsAddr: 127.0.0.1:1\nprometheusPort: 2\n",
			err:  `lbt.yaml:2: "prometheusPort" sets the same setting as "metricsAddr" on line 1`,
		},
		{name: "duplicate key", yaml: "fsync: true\nfsync: false\n", err: `lbt.yaml:2: duplicate key "fsync" (first given on line 1)`},
		{name: "unknown key", yaml: "archiveDir: /a\n\nfsynk: true\n", err: `config ` + "%s" + `:3: unknown key "fsynk" (did you mean "fsync"?)`},
		{name: "unknown key without suggestion", yaml: "completelyUnrelated: 1\n", err: `lbt.yaml:1: unknown key "completelyUnrelated"` + "$"},
		{name: "unknown key differing in case", yaml: "slotName: x\n", err: `unknown key "slotName" (did you mean "slotname"?)`},
		{name: "unknown nested key", yaml: "db:\n  hostname: x\n", err: `lbt.yaml:2: unknown key "db.hostname" (did you mean "db.host"?)`},
		{name: "db key at top level", yaml: "host: x\n", err: `unknown key "host" (did you mean "db.host"?)`},
		{name: "int expected", yaml: "deltasPerFile: many\n", err: `lbt.yaml:1: deltasPerFile: expected an integer, got "many"`},
		{name: "float for int", yaml: "deltasPerFile: 1.5\n", err: `deltasPerFile: expected an integer, got "1.5"`},
		{name: "binary for string", yaml: "archiveDir: !!binary aGk=\n", err: `lbt.yaml:1: archiveDir: expected a string, got binary data`},
		{name: "bool expected", yaml: "\nfsync: maybe\n", err: `lbt.yaml:2: fsync: expected true or false, got "maybe"`},
		{name: "quoted yes is a string", yaml: "fsync: 'yes'\n", err: `fsync: expected true or false`},
		{name: "YAML 1.1 booleans of LBT's yaml.v2", yaml: "fsync: no\ntrackNewTables: on\n", want: func(c *config.Config) {
			c.Fsync = false
			c.TrackNewTables = true
		}},
		{name: "mapping for string", yaml: "archiveDir: {a: b}\n", err: `archiveDir: expected a string, got a mapping`},
		{name: "number for string", yaml: "publication: 2024\n", want: func(c *config.Config) { c.Publication = "2024" }},
		{name: "bad duration", yaml: "retention: 7 days\n", err: `lbt.yaml:1: retention: invalid duration "7 days"`},
		{name: "duration without unit", yaml: "archiverTimeout: 30\n", err: `archiverTimeout: duration "30" needs a unit`},
		{name: "zero duration without unit", yaml: "archiverTimeout: 0\n", want: func(*config.Config) {}},
		{
			name: "LBT duration truncated to minutes",
			yaml: "forceBasebackupAfterInactivityInterval: 10h5s\n",
			want: func(c *config.Config) { c.ForceBasebackupAfterInactivityInterval = 10 * time.Hour },
		},
		{
			name: "LBT duration 5m55s",
			yaml: "forceBasebackupAfterInactivityInterval: 5m55s\n",
			want: func(c *config.Config) { c.ForceBasebackupAfterInactivityInterval = 5 * time.Minute },
		},
		{name: "days", yaml: "retention: 1d12h\n", want: func(c *config.Config) { c.Retention = 36 * time.Hour }},
		{
			name: "LBT log block",
			yaml: "log:\n  level: debug\n  development: true\n  location: false\n",
			want: func(c *config.Config) {
				c.LogLevel = "debug"
				c.LogFormat = "text"
			},
		},
		{name: "LBT production logger", yaml: "log:\n  level: fatal\n  development: false\n", want: func(c *config.Config) {
			c.LogLevel = "error"
			c.LogFormat = "json"
		}},
		{name: "LBT log level and logLevel", yaml: "logLevel: info\nlog:\n  level: debug\n", err: `lbt.yaml:3: "log.level" sets the same setting as "logLevel" on line 1`},
		{name: "unknown LBT log key", yaml: "log:\n  levle: debug\n", err: `lbt.yaml:2: unknown key "log.levle" (did you mean "log.level"?)`},
		{name: "ignored LBT keys", yaml: "tables: [a, b]\nperiodBetweenBackups: 1h\ndb:\n  usefallbacktls: true\n  loglevel: 3\n", want: func(*config.Config) {}},
		{name: "null values of LBT keys", yaml: "sendStatusOnCommit:\nlog:\n  level:\n  development:\nprometheusPort:\n", want: func(*config.Config) {}},
		{name: "prometheusPort out of range", yaml: "prometheusPort: 70000\n", err: `lbt.yaml:1: prometheusPort: 70000 is not a TCP port`},
		{name: "password of the wrong type is not shown", yaml: "db:\n  password: [hunter2]\n", err: `db.password: expected a string, got a list`},
		{name: "syntax error", yaml: "archiveDir: /a\n  slotname: x\n", err: `lbt.yaml:2: mapping values are not allowed`},
		{name: "root is not a mapping", yaml: "- a\n- b\n", err: `lbt.yaml:1: expected a mapping of keys to values, got a list`},
		{name: "merge keys", yaml: "<<: {fsync: true}\n", err: `lbt.yaml:1: merge keys (<<) are not supported`},
		{name: "anchors and aliases", yaml: "archiveDir: &dir /a\ntempDir: *dir\n", want: func(c *config.Config) {
			c.ArchiveDir = "/a"
			c.TempDir = "/a"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.yaml)
			got, err := config.Load(path)
			if tt.want == nil {
				wantErr := strings.Replace(tt.err, "%s", path, 1)
				checkErr(t, err, wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := config.Default()
			tt.want(&want)
			assertSettings(t, got, want)
		})
	}
}

// checkErr checks that err contains want; a want ending in $ must end err.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	msg := err.Error()
	if exact, ok := strings.CutSuffix(want, "$"); ok {
		if !strings.HasSuffix(msg, exact) {
			t.Fatalf("error %q does not end with %q", msg, exact)
		}
		return
	}
	if !strings.Contains(msg, want) {
		t.Fatalf("error %q does not contain %q", msg, want)
	}
	if strings.Contains(msg, "\n") {
		t.Fatalf("error %q spans several lines", msg)
	}
}

func TestLoad_MissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	checkErr(t, err, "nope.yaml: no such file or directory")
}

func TestApplyEnv(t *testing.T) {
	file := "archiveDir: /file\nslotname: fromfile\ndb:\n  host: filehost\n  password: filepw\n"
	tests := []struct {
		name string
		env  map[string]string
		want func(*config.Config) // changes from the file; nil when an error is expected
		err  string
	}{
		{name: "no environment", want: func(*config.Config) {}},
		{
			name: "environment beats file",
			env:  map[string]string{"LBT_ARCHIVE_DIR": "/env", "LBT_SLOTNAME": "fromenv", "LBT_DELTAS_PER_FILE": "7", "LBT_FSYNC": "false", "LBT_RETENTION": "7d"},
			want: func(c *config.Config) {
				c.ArchiveDir = "/env"
				c.SlotName = "fromenv"
				c.DeltasPerFile = 7
				c.Fsync = false
				c.Retention = 7 * 24 * time.Hour
			},
		},
		{name: "short slot name", env: map[string]string{"LBT_SLOT": "short"}, want: func(c *config.Config) { c.SlotName = "short" }},
		{
			name: "recipients separated by commas",
			env:  map[string]string{"LBT_ENCRYPT_RECIPIENTS": "age1a, age1b", "LBT_DECRYPT_IDENTITY_FILE": "/k.txt"},
			want: func(c *config.Config) {
				c.EncryptRecipients = []string{"age1a", "age1b"}
				c.DecryptIdentityFile = "/k.txt"
			},
		},
		{name: "both slot names", env: map[string]string{"LBT_SLOT": "a", "LBT_SLOTNAME": "b"}, err: "LBT_SLOT and LBT_SLOTNAME disagree"},
		{
			name: "LBT_DSN replaces db from the file",
			env:  map[string]string{"LBT_DSN": "host=envhost"},
			want: func(c *config.Config) { c.DB = config.DBConfig{DSN: "host=envhost"} },
		},
		{
			name: "LBT_DB_* apply over LBT_DSN",
			env:  map[string]string{"LBT_DSN": "host=envhost", "LBT_DB_PORT": "6543", "LBT_DB_PASSWORD": "envpw"},
			want: func(c *config.Config) { c.DB = config.DBConfig{DSN: "host=envhost", Port: 6543, Password: "envpw"} },
		},
		{
			name: "LBT duration truncated",
			env:  map[string]string{"LBT_FORCE_BASEBACKUP_AFTER_INACTIVITY_INTERVAL": "1h30s"},
			want: func(c *config.Config) { c.ForceBasebackupAfterInactivityInterval = time.Hour },
		},
		{name: "log settings", env: map[string]string{"LBT_LOG_LEVEL": "trace", "LBT_LOG_FORMAT": "json"}, want: func(c *config.Config) {
			c.LogLevel = "trace"
			c.LogFormat = "json"
		}},
		{name: "bad integer", env: map[string]string{"LBT_DELTAS_PER_FILE": "lots"}, err: `environment LBT_DELTAS_PER_FILE: expected an integer, got "lots"`},
		{name: "bad boolean", env: map[string]string{"LBT_FSYNC": "perhaps"}, err: `environment LBT_FSYNC: expected true or false, got "perhaps"`},
		{name: "bad duration", env: map[string]string{"LBT_STATUS_INTERVAL": "soon"}, err: `environment LBT_STATUS_INTERVAL: expected a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Load(writeConfig(t, file))
			if err != nil {
				t.Fatal(err)
			}
			want := got
			err = got.ApplyEnv(func(k string) string { return tt.env[k] })
			if tt.want == nil {
				checkErr(t, err, tt.err)
				return
			}
			if err != nil {
				t.Fatalf("ApplyEnv: %v", err)
			}
			tt.want(&want)
			assertSettings(t, got, want)
		})
	}
}

func TestValidate(t *testing.T) {
	valid := func(c *config.Config) { c.ArchiveDir = "/archive" }
	tests := []struct {
		name   string
		change func(*config.Config)
		err    string // empty when valid
	}{
		{name: "defaults with archive", change: func(*config.Config) {}},
		{name: "archiveDir required", change: func(c *config.Config) { c.ArchiveDir = "" }, err: "archiveDir is required"},
		{name: "slot name with capitals", change: func(c *config.Config) { c.SlotName = "MySlot" }, err: `slotname "MySlot" must be 1-63 characters`},
		{name: "slot name with quote", change: func(c *config.Config) { c.SlotName = `a"; drop` }, err: `slotname`},
		{name: "slot name too long", change: func(c *config.Config) { c.SlotName = strings.Repeat("a", 64) }, err: `slotname`},
		{name: "slot name of 63", change: func(c *config.Config) { c.SlotName = strings.Repeat("a", 63) }},
		{name: "empty publication", change: func(c *config.Config) { c.Publication = "" }, err: "publication must not be empty"},
		{name: "publication with spaces", change: func(c *config.Config) { c.Publication = "My Pub" }},
		{name: "zero deltasPerFile", change: func(c *config.Config) { c.DeltasPerFile = 0 }, err: "deltasPerFile must be greater than 0"},
		{name: "negative backupThreshold", change: func(c *config.Config) { c.BackupThreshold = -1 }, err: "backupThreshold must be greater than 0"},
		{name: "zero concurrentBasebackups", change: func(c *config.Config) { c.ConcurrentBasebackups = 0 }, err: "concurrentBasebackups"},
		{name: "negative retention", change: func(c *config.Config) { c.Retention = -time.Hour }, err: "retention must not be negative"},
		{name: "zero statusInterval", change: func(c *config.Config) { c.StatusInterval = 0 }, err: "statusInterval must be greater than 0"},
		{name: "tiny schedule", change: func(c *config.Config) { c.BasebackupSchedule = time.Second }, err: "basebackupSchedule 1s is shorter than a minute"},
		{name: "metrics off", change: func(c *config.Config) { c.MetricsAddr = "" }},
		{name: "bad metrics address", change: func(c *config.Config) { c.MetricsAddr = "9187" }, err: `metricsAddr "9187" must be host:port`},
		{name: "bad log level", change: func(c *config.Config) { c.LogLevel = "verbose" }, err: `logLevel "verbose" must be one of trace, debug, info, warn, error`},
		{name: "bad log format", change: func(c *config.Config) { c.LogFormat = "xml" }, err: `logFormat "xml"`},
		{name: "bad port", change: func(c *config.Config) { c.DB.Port = 70000 }, err: "db.port 70000"},
		{name: "recipient", change: func(c *config.Config) {
			c.EncryptRecipients = []string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}
		}},
		{name: "bad recipient", change: func(c *config.Config) {
			c.EncryptRecipients = []string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "age1nope"}
		}, err: "encryptRecipients[1] is not an age public key"},
		{name: "several problems in one error", change: func(c *config.Config) {
			c.ArchiveDir = ""
			c.DeltasPerFile = 0
		}, err: "archiveDir is required (set it in the config file or with LBT_ARCHIVE_DIR); deltasPerFile must be greater than 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			valid(&c)
			tt.change(&c)
			err := c.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			checkErr(t, err, tt.err)
		})
	}
}

func TestEffectiveTempDir(t *testing.T) {
	tests := []struct {
		archive, temp, want string
	}{
		{"/a", "", "/a/tmp"},
		{"/a", "/a/", "/a/tmp"}, // LBT: staging equal to the archive means none
		{"/a", "/stage", "/stage"},
		{"", "", ""},
	}
	for _, tt := range tests {
		c := config.Config{ArchiveDir: tt.archive, TempDir: tt.temp}
		if got := c.EffectiveTempDir(); got != tt.want {
			t.Errorf("EffectiveTempDir(archive %q, temp %q) = %q, want %q", tt.archive, tt.temp, got, tt.want)
		}
	}
}

func TestLoad_WarnsOfAReadablePassword(t *testing.T) {
	cases := []struct {
		name string
		text string
		mode os.FileMode
		warn bool
	}{
		{"password, 0644", "archiveDir: /a\ndb:\n  password: s3cret\n", 0o644, true},
		{"password in dsn, 0640", "archiveDir: /a\ndb:\n  dsn: postgres://u:s3cret@h/db\n", 0o640, true},
		{"password, 0600", "archiveDir: /a\ndb:\n  password: s3cret\n", 0o600, false},
		{"no password, 0644", "archiveDir: /a\ndb:\n  dsn: postgres://u@h/db\n", 0o644, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lbt.yaml")
			if err := os.WriteFile(path, []byte(tc.text), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tc.mode) // whatever the umask
			c, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(c.Warnings(), "\n")
			want := fmt.Sprintf("chmod 600 %s", path)
			if tc.warn != strings.Contains(got, want) {
				t.Errorf("warnings %q; want a warning naming %q: %v", got, want, tc.warn)
			}
			if strings.Contains(got, "s3cret") {
				t.Errorf("a warning shows the password: %q", got)
			}
		})
	}
}

func TestConfig_ChangedAndAssign(t *testing.T) {
	a := config.Default()
	a.ArchiveDir = "/a"
	b := a
	b.Retention = 7 * 24 * time.Hour
	b.SlotName = "other"
	b.DB.Host = "db2"
	b.StatusCritLag = 1 << 20
	got := a.Changed(b)
	want := []string{"slotname", "retention", "statusCritLag", "db.host"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Changed = %v, want %v", got, want)
	}
	a.Assign(b, "retention", "statusCritLag")
	if got := a.Changed(b); !reflect.DeepEqual(got, []string{"slotname", "db.host"}) {
		t.Errorf("after Assign of retention and statusCritLag, Changed = %v", got)
	}
}
