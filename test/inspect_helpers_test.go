package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lbt/inspect"
	"lbt/setup"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// inspectEnv is a test database with a running backup, for the inspect and
// setup tests.
type inspectEnv struct {
	t   *testing.T
	c   *pgtest.Cluster
	dsn string
	dir string
}

// newInspectEnv creates a database, runs setupSQL in it, installs the
// capture triggers when capture is set, and starts the backup.
func newInspectEnv(t *testing.T, setupSQL string, capture bool) *inspectEnv {
	t.Helper()
	c := pgtest.Shared(t)
	e := &inspectEnv{t: t, c: c, dsn: c.NewDatabase(t), dir: t.TempDir()}
	if setupSQL != "" {
		c.Exec(t, e.dsn, setupSQL)
	}
	if capture {
		// Before the backup starts, so that the publication the daemon
		// creates gets the triggers from the event trigger.
		e.install(setup.Options{Publication: "lbt", CaptureActors: true, CaptureDDL: true})
	}
	startBackup(t, c, e.dsn, e.dir)
	waitArchived(t, c, e.dsn, e.dir)
	return e
}

func (e *inspectEnv) install(opts setup.Options) setup.Result {
	e.t.Helper()
	conn := e.c.Connect(e.t, e.dsn)
	res, err := setup.Install(context.Background(), conn, opts)
	if err != nil {
		e.t.Fatalf("setup install: %v", err)
	}
	return res
}

func (e *inspectEnv) status() setup.Status {
	e.t.Helper()
	conn := e.c.Connect(e.t, e.dsn)
	s, err := setup.GetStatus(context.Background(), conn, "lbt", "")
	if err != nil {
		e.t.Fatalf("setup status: %v", err)
	}
	return s
}

var inspectRoleSeq atomic.Int64

// role creates a login role (a unique name starting with name) allowed to
// change tables, and returns its name and a DSN that connects as it with
// application_name app, over TCP when tcp is set.
func (e *inspectEnv) role(name, app string, tcp bool, tables ...string) (string, string) {
	e.t.Helper()
	role := fmt.Sprintf("%s_%d_%d", name, os.Getpid(), inspectRoleSeq.Add(1))
	e.c.Exec(e.t, e.dsn, "CREATE ROLE "+role+" LOGIN")
	for _, tbl := range tables {
		e.c.Exec(e.t, e.dsn, "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON "+tbl+" TO "+role)
	}
	dsn := fmt.Sprintf("%s user=%s application_name=%s", e.dsn, role, app)
	if tcp {
		dsn += " host=127.0.0.1"
	}
	return role, dsn
}

// inspectTx is a transaction a test ran, with what the server says of it.
type inspectTx struct {
	xid    uint32
	before time.Time // server clock before BEGIN
	after  time.Time // server clock after COMMIT
}

// tx runs statements in one transaction on a new connection to dsn.
func (e *inspectEnv) tx(dsn string, stmts ...string) inspectTx {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		e.t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	clock := func(round string) time.Time {
		var us int64
		if err := conn.QueryRow(ctx, "SELECT "+round+"(extract(epoch FROM clock_timestamp()) * 1000000)::bigint").Scan(&us); err != nil {
			e.t.Fatalf("clock: %v", err)
		}
		return time.UnixMicro(us).UTC()
	}
	var r inspectTx
	r.before = clock("floor")
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		var xid int64
		if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
			return err
		}
		r.xid = uint32(xid)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	r.after = clock("ceil")
	return r
}

func (e *inspectEnv) inspector() *inspect.Inspector {
	e.t.Helper()
	in, err := inspect.Open(context.Background(), e.dir, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { in.Close() })
	return in
}

// history runs a history query and returns its JSON lines, decoded, and
// its notes.
func (e *inspectEnv) history(opts inspect.HistoryOptions) ([]map[string]any, []string) {
	e.t.Helper()
	h, err := e.inspector().History(context.Background(), opts)
	if err != nil {
		e.t.Fatalf("history: %v", err)
	}
	var buf bytes.Buffer
	if err := h.Write(&buf, inspect.FormatJSON); err != nil {
		e.t.Fatal(err)
	}
	return jsonLines(e.t, buf.Bytes()), h.Notes
}

func jsonLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("bad JSON line %s: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// wantChange is what a test expects of one JSON line of a history.
type wantChange struct {
	tx      inspectTx
	op      string
	before  map[string]any // nil: JSON null
	after   map[string]any
	changed []any
	role    string // "" for an unknown actor
	app     string
	addr    any // client_addr: a string, or nil for a Unix socket
	note    string
}

// checkChanges compares history lines with the expected changes, field by
// field.
func checkChanges(t *testing.T, got []map[string]any, want []wantChange) {
	t.Helper()
	if len(got) != len(want) {
		for _, g := range got {
			t.Logf("got %v", g)
		}
		t.Fatalf("%d changes, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		where := fmt.Sprintf("change %d (%s)", i+1, w.op)
		eq := func(field string, have, want any) {
			t.Helper()
			hj, _ := json.Marshal(have)
			wj, _ := json.Marshal(want)
			if string(hj) != string(wj) {
				t.Errorf("%s: %s = %s, want %s", where, field, hj, wj)
			}
		}
		eq("op", g["op"], w.op)
		eq("xid", g["xid"], float64(w.tx.xid))
		tm, err := time.Parse(time.RFC3339Nano, fmt.Sprint(g["time"]))
		if err != nil {
			t.Errorf("%s: time %v: %v", where, g["time"], err)
		} else if tm.Before(w.tx.before) || tm.After(w.tx.after) {
			t.Errorf("%s: time %s is not between %s and %s, when the transaction ran", where, tm, w.tx.before, w.tx.after)
		}
		if lsn, ok := g["lsn"].(string); !ok || !strings.Contains(lsn, "/") {
			t.Errorf("%s: lsn %v", where, g["lsn"])
		}
		if w.before == nil {
			eq("before", g["before"], nil)
		} else {
			eq("before", g["before"], w.before)
		}
		if w.after == nil {
			eq("after", g["after"], nil)
		} else {
			eq("after", g["after"], w.after)
		}
		if w.changed == nil {
			w.changed = []any{}
		}
		eq("changed", g["changed"], w.changed)
		if w.note != "" {
			if note, _ := g["note"].(string); !strings.Contains(note, w.note) {
				t.Errorf("%s: note %q does not say %q", where, note, w.note)
			}
		}
		actor, _ := g["actor"].(map[string]any)
		if w.role == "" {
			eq("actor", actor, map[string]any{"known": false})
			continue
		}
		eq("actor.known", actor["known"], true)
		eq("actor.role", actor["role"], w.role)
		eq("actor.session_user", actor["session_user"], w.role)
		eq("actor.application", actor["application"], w.app)
		eq("actor.client_addr", actor["client_addr"], w.addr)
		if pid, _ := actor["backend_pid"].(float64); pid <= 0 {
			t.Errorf("%s: backend_pid %v", where, actor["backend_pid"])
		}
	}
}

// lbt runs the lbt binary with a config file for the environment, and
// returns its exit status and output.
func (e *inspectEnv) lbt(args ...string) (code int, stdout, stderr string) {
	e.t.Helper()
	cfg := filepath.Join(e.t.TempDir(), "lbt.yaml")
	text := fmt.Sprintf("archiveDir: '%s'\npublication: lbt\ndb:\n  dsn: '%s'\n",
		strings.ReplaceAll(e.dir, "'", "''"), strings.ReplaceAll(e.dsn, "'", "''"))
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(lbtrun.Binary(e.t), append([]string{"--config", cfg}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Env = []string{"HOME=" + e.t.TempDir(), "PATH=" + os.Getenv("PATH")}
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}
