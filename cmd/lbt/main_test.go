package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/config"
	"lbt/inspect"
	"lbt/repair"
	"lbt/restore"
	"lbt/setup"
)

// isolateEnv keeps the LBT_* and PG* variables of whoever runs the tests out
// of them.
func isolateEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "LBT_") || strings.HasPrefix(name, "PG") {
			t.Setenv(name, "")
		}
	}
	t.Setenv("PGPASSFILE", filepath.Join(t.TempDir(), "no-pgpass"))
}

// runLBT runs the command line with args and returns the exit status and
// the output.
func runLBT(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lbt.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// errorLines returns the lines of stderr that are lbt's error messages, as
// opposed to log lines.
func errorLines(stderr string) []string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "lbt") {
			lines = append(lines, l)
		}
	}
	return lines
}

func TestRun(t *testing.T) {
	isolateEnv(t)
	valid := writeFile(t, "archiveDir: /tmp/lbt-test-archive\n")
	unknownKey := writeFile(t, "archiveDir: /a\nslotname: s\nfsynk: true\n")
	noArchive := writeFile(t, "slotname: s\n")
	emptyDir := t.TempDir()
	empty := writeFile(t, "archiveDir: "+emptyDir+"\n")
	notArchive := fmt.Sprintf("not an lbt archive: %s has no catalog.db (is archiveDir right? lbt backup creates it)", emptyDir)

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string // the error line expected, exactly; empty for none
		stdout string // a substring expected in stdout
	}{
		{name: "version", args: []string{"version"}, code: 0, stdout: "lbt dev (go1."},
		{name: "no command", args: nil, code: 2, stderr: `lbt: expected one of "backup", "basebackup", "restore", "inspect", "status", ... (see lbt --help)`},
		{name: "unknown flag", args: []string{"--bogus", "version"}, code: 2, stderr: "lbt: unknown flag --bogus (see lbt --help)"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2},
		{name: "bad log level", args: []string{"--log-level", "loud", "version"}, code: 2, stderr: `lbt: --log-level must be one of trace, debug, info, warn, error, not "loud" (see lbt version --help)`},
		{name: "missing required flag", args: []string{"restore"}, code: 2, stderr: "lbt: missing flags: --table=TABLE (see lbt restore --help)"},
		{name: "exclusive flags", args: []string{"restore", "--table", "t", "--lsn", "0/1", "--xid", "5"}, code: 2},
		{name: "bad memory size", args: []string{"restore", "--table", "t", "--memory", "lots"}, code: 2},
		{name: "check config shows restoreMemory", args: []string{"backup", "--check-config", "-c", valid}, code: 0, stdout: "restoreMemory: 256 MiB\n"},
		{name: "inspect tx needs a target", args: []string{"inspect", "tx"}, code: 2, stderr: "lbt: inspect tx: give --xid or --lsn (see lbt inspect tx --help)"},
		{name: "bad format", args: []string{"inspect", "tables", "--format", "xml"}, code: 2},
		{name: "undo needs a selection", args: []string{"undo"}, code: 2, stderr: "lbt: undo: give what to undo: --xid, --lsn, or --actor/--application with --since and --until (see lbt undo --help)"},
		{name: "undo of two selections", args: []string{"undo", "--xid", "5", "--actor", "bob"}, code: 2, stderr: "lbt: undo: give one of --xid, --lsn and --actor/--application (see lbt undo --help)"},
		{name: "undo --force without --apply", args: []string{"undo", "--xid", "5", "--force"}, code: 2, stderr: "lbt: undo: --target-dsn, --skip-conflicts and --force go with --apply (see lbt undo --help)"},
		{name: "diff needs a first moment", args: []string{"diff", "--table", "t"}, code: 2, stderr: "lbt: diff: give the first moment: --from, --from-lsn or --from-xid (see lbt diff --help)"},
		{name: "status usage error is UNKNOWN", args: []string{"status", "--format", "xml"}, code: 3},
		{name: "unknown config key", args: []string{"backup", "--config", unknownKey}, code: 2,
			stderr: fmt.Sprintf(`lbt backup: config %s:3: unknown key "fsynk" (did you mean "fsync"?)`, unknownKey)},
		{name: "missing config file", args: []string{"backup", "--config", "/nonexistent/lbt.yaml"}, code: 2,
			stderr: "lbt backup: config: open /nonexistent/lbt.yaml: no such file or directory"},
		{name: "invalid config", args: []string{"backup", "--check-config", "--config", noArchive}, code: 2,
			stderr: "lbt backup: invalid configuration: archiveDir is required (set it in the config file or with LBT_ARCHIVE_DIR)"},
		{name: "check config", args: []string{"backup", "--check-config", "-c", valid}, code: 0, stdout: "tempDir: /tmp/lbt-test-archive/tmp\n"},
		{name: "LSN with a tail", args: []string{"restore", "-c", empty, "--table", "t", "--lsn", "0/1/2"}, code: 2,
			stderr: `lbt restore: --lsn "0/1/2": want a WAL position like 0/16B3748`},
		{name: "inspect LSN as restore's", args: []string{"inspect", "tx", "-c", empty, "--lsn", "0/100000000"}, code: 2,
			stderr: `lbt inspect tx: --lsn "0/100000000": want a WAL position like 0/16B3748`},
		{name: "restore from no archive", args: []string{"restore", "-c", empty, "--table", "t", "--sql", "-"}, code: 10, stderr: "lbt restore: " + notArchive},
		{name: "inspect no archive", args: []string{"inspect", "tables", "-c", empty}, code: 10, stderr: "lbt inspect tables: " + notArchive},
		{name: "verify no archive", args: []string{"verify", "-c", empty}, code: 10, stderr: "lbt verify: " + notArchive},
	}
	for _, cmd := range [][]string{
		{"basebackup", "--all"},
		{"restore", "--table", "public.t"},
		{"inspect", "history", "--table", "t"},
		{"inspect", "tx", "--xid", "42"},
		{"inspect", "changes", "--table", "t"},
		{"inspect", "tables"},
		{"inspect", "ddl"},
		{"status"},
		{"verify", "--read-data"},
		{"purge", "--dry-run"},
		{"setup", "--status"},
		{"undo", "--xid", "5"},
		{"diff", "--table", "t", "--from-xid", "5"},
	} {
		path := cmd[0]
		if path == "inspect" {
			path += " " + cmd[1]
		}
		code := 2
		if path == "status" {
			code = 3 // lbt status exits as a Nagios plugin: UNKNOWN
		}
		tests = append(tests, struct {
			name   string
			args   []string
			code   int
			stderr string
			stdout string
		}{name: path + " without archiveDir", args: cmd, code: code,
			stderr: "lbt " + path + ": invalid configuration: archiveDir is required (set it in the config file or with LBT_ARCHIVE_DIR)"})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runLBT(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			lines := errorLines(stderr)
			if tt.code != 0 && len(lines) != 1 {
				t.Errorf("want one error line, got %q", lines)
			}
			if tt.code == 0 && len(lines) != 0 {
				t.Errorf("want no error, got %q", lines)
			}
			if tt.stderr != "" && (len(lines) == 0 || lines[0] != tt.stderr) {
				t.Errorf("error line:\n got %q\nwant %q", lines, tt.stderr)
			}
			if !strings.Contains(stdout, tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, stdout)
			}
		})
	}
}

func TestRun_Help(t *testing.T) {
	isolateEnv(t)
	code, stdout, _ := runLBT(t, "--help")
	if code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	for _, want := range []string{
		"backup", "basebackup", "restore", "inspect history", "inspect tx", "inspect changes",
		"inspect tables", "inspect ddl", "status", "verify", "purge", "setup", "version",
		"Exit status:", "130  interrupted",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help lacks %q:\n%s", want, stdout)
		}
	}

	// Every flag of every command documents its default.
	for _, cmd := range [][]string{
		{"backup"}, {"basebackup"}, {"restore"}, {"inspect", "history"}, {"inspect", "tx"},
		{"inspect", "changes"}, {"inspect", "tables"}, {"inspect", "ddl"}, {"status"},
		{"verify"}, {"purge"}, {"setup"}, {"undo"}, {"diff"},
	} {
		code, stdout, _ := runLBT(t, append(cmd, "--help")...)
		if code != 0 {
			t.Errorf("%s --help: exit status %d", cmd, code)
		}
		_, flags, _ := strings.Cut(stdout, "\nFlags:\n")
		for _, f := range flagEntries(flags) {
			if strings.HasPrefix(f, "--help ") {
				continue
			}
			if !strings.Contains(f, "(default") && !strings.Contains(f, "(required)") {
				t.Errorf("lbt %s --help: flag %s documents no default", strings.Join(cmd, " "), f)
			}
		}
	}
}

func TestRun_CheckConfigMasksPasswords(t *testing.T) {
	isolateEnv(t)
	path := writeFile(t, "archiveDir: /a\ndb:\n  host: h\n  password: hunter2\n")
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "password in the file", args: []string{"backup", "--check-config", "-c", path}, want: "  password: '****'"},
		{name: "password in --dsn", args: []string{"backup", "--check-config", "-c", path, "--dsn", "postgres://u:hunter2@h/db"}, want: "  dsn: postgres://u:****@h/db"},
		{name: "password in LBT_DSN", args: []string{"backup", "--check-config", "-c", path}, env: map[string]string{"LBT_DSN": "host=h password='hunter2'"}, want: "  dsn: host=h password=****"},
		{name: "password in LBT_DB_PASSWORD", args: []string{"backup", "--check-config", "-c", path}, env: map[string]string{"LBT_DB_PASSWORD": "hunter2"}, want: "  password: '****'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runLBT(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit status %d; stderr:\n%s", code, stderr)
			}
			if !strings.Contains(stdout, tt.want+"\n") {
				t.Errorf("output lacks %q:\n%s", tt.want, stdout)
			}
			if strings.Contains(stdout+stderr, "hunter2") {
				t.Errorf("output shows the password:\n%s%s", stdout, stderr)
			}
		})
	}
}

func TestRun_Precedence(t *testing.T) {
	isolateEnv(t)
	path := writeFile(t, "archiveDir: /file\nslotname: fromfile\npublication: fromfile\nlogLevel: debug\nlogFormat: json\n")
	t.Setenv("LBT_SLOTNAME", "fromenv")
	t.Setenv("LBT_LOG_LEVEL", "warn")
	t.Setenv("LBT_LOG_FORMAT", "text")
	t.Setenv("LBT_CONFIG", path)

	code, stdout, stderr := runLBT(t, "backup", "--check-config", "--log-level", "error")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		"archiveDir: /file\n",      // file over default
		"publication: fromfile\n",  // file over default
		"slotname: fromenv\n",      // environment over file
		"logFormat: text\n",        // environment over file
		"logLevel: error\n",        // flag over environment
		"deltasPerFile: 100000\n",  // default
		"metricsAddr: 127.0.0.1:9", // default, loopback only
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestRun_BackupUnreachable(t *testing.T) {
	isolateEnv(t)
	path := writeFile(t, "archiveDir: /a\ndb:\n  password: filepw\n")
	tests := []struct {
		name string
		args []string
	}{
		{name: "keyword/value", args: []string{"--dsn", "host=127.0.0.1 port=1 user=x dbname=y connect_timeout=2 password=hunter2"}},
		{name: "URL", args: []string{"--dsn", "postgres://x:hunter2@127.0.0.1:1/y?connect_timeout=2"}},
		{name: "config file", args: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.args == nil {
				t.Setenv("PGHOST", "127.0.0.1")
				t.Setenv("PGPORT", "1")
				t.Setenv("PGUSER", "x")
				t.Setenv("PGDATABASE", "y")
				t.Setenv("PGCONNECT_TIMEOUT", "2")
			}
			code, stdout, stderr := runLBT(t, append([]string{"backup", "-c", path}, tt.args...)...)
			if code != 1 {
				t.Errorf("exit status %d, want 1; stderr:\n%s", code, stderr)
			}
			lines := errorLines(stderr)
			want := "lbt backup: connect to source host=127.0.0.1 port=1 user=x dbname=y: "
			if len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
				t.Errorf("error lines %q, want one starting with %q", lines, want)
			}
			for _, secret := range []string{"hunter2", "filepw"} {
				if strings.Contains(stdout+stderr, secret) {
					t.Errorf("output shows a password:\n%s%s", stdout, stderr)
				}
			}
		})
	}
}

type mismatch struct{}

func (mismatch) Error() string            { return "checksum mismatch" }
func (mismatch) VerificationFailed() bool { return true }

func TestExitCode(t *testing.T) {
	tests := []struct {
		command string
		err     error
		want    int
	}{
		{"restore", nil, 0},
		{"restore", errors.New("disk full"), 1},
		{"backup", context.Canceled, 1},
		{"backup", usageError{errors.New("bad key")}, 2},
		{"restore", fmt.Errorf("load: %w", usageError{errors.New("bad key")}), 2},
		{"verify", fmt.Errorf("verify: %w", mismatch{}), 3},
		// Kinds keep their status through wrapping and redaction.
		{"restore", config.Default().RedactError(fmt.Errorf("plan: %w", restore.ErrNotRestorable)), 6},
		{"undo", fmt.Errorf("undo of transaction 7: %w", restore.ErrNotRestorable), 6},
		{"inspect tables", fmt.Errorf("%w: /a has no catalog.db", catalog.ErrNotArchive), 10},
		{"backup", fmt.Errorf("%w: /a is in use", catalog.ErrLocked), 11},
		{"purge", fmt.Errorf("purge: %w", catalog.ErrLocked), 11},
		// Packages' bad-input errors are usage errors.
		{"inspect history", fmt.Errorf("history: %w", &inspect.InputError{Msg: "--key: no such column"}), 2},
		{"undo", &repair.InputError{Msg: "transaction 7 is not in the archive"}, 2},
		{"basebackup", fmt.Errorf("basebackup: %w", basebackup.ErrNoTable), 2},
		{"setup", fmt.Errorf("setup: %w", setup.ErrNotSuperuser), 2},
		// lbt status speaks Nagios: its states are its statuses, and
		// anything that kept it from judging is UNKNOWN.
		{"status", exitStatus(2), 2},
		{"status", exitStatus(0), 0},
		{"status", usageError{errors.New("bad key")}, 3},
		{"status", errors.New("archive unreadable"), 3},
	}
	for _, tt := range tests {
		if got := exitCode(tt.command, tt.err); got != tt.want {
			t.Errorf("exitCode(%q, %v) = %d, want %d", tt.command, tt.err, got, tt.want)
		}
	}
}

func TestOneLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"failed to connect:\n\ta: refused\n\ta: refused\n\tb: timeout\n", "failed to connect: a: refused; b: timeout"},
		{"one\ntwo", "one; two"},
	}
	for _, tt := range tests {
		if got := oneLine(tt.in); got != tt.want {
			t.Errorf("oneLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// flagEntries splits kong's Flags section into one string per flag: an entry
// starts on a line whose first word is a flag, and continues on the wrapped
// lines below it.
func flagEntries(section string) []string {
	var out []string
	for _, line := range strings.Split(section, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			continue
		case strings.HasPrefix(trimmed, "--") || (strings.HasPrefix(trimmed, "-") && strings.Contains(trimmed, ", --")):
			if i := strings.Index(trimmed, "--"); i > 0 {
				trimmed = trimmed[i:]
			}
			out = append(out, trimmed)
		case len(out) > 0:
			out[len(out)-1] += " " + trimmed
		}
	}
	return out
}

// The object store's credentials live in the AWS variables, never in the
// configuration: --check-config shows where the archive goes and nothing
// of them.
func TestRun_CheckConfigShowsNoS3Credentials(t *testing.T) {
	isolateEnv(t)
	path := writeFile(t, "archiveDir: /a\narchiveUrl: s3://backups/pg\ns3Endpoint: http://127.0.0.1:7070\ns3ForcePathStyle: true\n")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "hunter2secret")
	code, stdout, stderr := runLBT(t, "backup", "--check-config", "-c", path)
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"archiveUrl: s3://backups/pg\n", "s3Endpoint: http://127.0.0.1:7070\n", "uploadInterval: 1m\n", "confirmAfterUpload: true\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout+stderr, "hunter2secret") || strings.Contains(stdout+stderr, "AKIAEXAMPLEKEYID") {
		t.Errorf("output shows the credentials:\n%s%s", stdout, stderr)
	}

	bad := writeFile(t, "archiveDir: /a\narchiveUrl: s3://AKIAEXAMPLEKEYID:hunter2secret@backups/pg\n")
	code, stdout, stderr = runLBT(t, "backup", "--check-config", "-c", bad)
	if code != 2 || !strings.Contains(stderr, "holds credentials") {
		t.Errorf("credentials in archiveUrl: exit status %d, stderr:\n%s", code, stderr)
	}
	if strings.Contains(stdout+stderr, "hunter2secret") {
		t.Errorf("output shows the secret:\n%s%s", stdout, stderr)
	}
}
