package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/inspect"
	"lbt/setup"
)

// Two roles from two applications change the same row in separate
// transactions; the history reports exactly those changes, in order, each
// with its role, application, client address, commit time and values. DDL
// by a third role shows in inspect ddl with that role.
func TestInspect_HistoryWithActors(t *testing.T) {
	e := newInspectEnv(t, `CREATE TABLE items (id int PRIMARY KEY, name text, qty int)`, true)
	alice, aliceDSN := e.role("alice", "billing", false, "items")
	bob, bobDSN := e.role("bob", "support", true, "items")
	carol, carolDSN := e.role("carol", "migrate", false)
	e.c.Exec(t, e.dsn, "ALTER TABLE items OWNER TO "+carol)

	tx1 := e.tx(aliceDSN, `INSERT INTO items VALUES (1, 'apple', 5), (2, 'pear', 3)`)
	tx2 := e.tx(bobDSN, `UPDATE items SET qty = 4 WHERE id = 1`)
	tx3 := e.tx(aliceDSN, `UPDATE items SET name = 'green apple' WHERE id = 1`, `UPDATE items SET qty = qty + 1 WHERE id = 1`,
		`UPDATE items SET qty = 0 WHERE id = 99`)
	e.tx(bobDSN, `UPDATE items SET qty = 1 WHERE id = 2`)
	tx5 := e.tx(carolDSN, `ALTER TABLE items ADD COLUMN note text`)
	tx6 := e.tx(bobDSN, `DELETE FROM items WHERE id = 1`)
	tx7 := e.tx(aliceDSN, `INSERT INTO items VALUES (1, 'apple again', 1, 'back')`)
	waitArchived(t, e.c, e.dsn, e.dir)

	got, notes := e.history(inspect.HistoryOptions{Table: "items", Key: "id=1"})
	row := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	// history is what inspect history shows of the row id=1.
	history := []wantChange{
		{tx: tx1, op: "INSERT", after: row("id", "1", "name", "apple", "qty", "5"), role: alice, app: "billing"},
		{tx: tx2, op: "UPDATE", before: row("id", "1", "name", "apple", "qty", "5"), after: row("id", "1", "name", "apple", "qty", "4"),
			changed: []any{"qty"}, role: bob, app: "support", addr: "127.0.0.1"},
		{tx: tx3, op: "UPDATE", before: row("id", "1", "name", "apple", "qty", "4"), after: row("id", "1", "name", "green apple", "qty", "4"),
			changed: []any{"name"}, role: alice, app: "billing"},
		{tx: tx3, op: "UPDATE", before: row("id", "1", "name", "green apple", "qty", "4"), after: row("id", "1", "name", "green apple", "qty", "5"),
			changed: []any{"qty"}, role: alice, app: "billing"},
		{tx: tx6, op: "DELETE", before: row("id", "1", "name", "green apple", "qty", "5"), role: bob, app: "support", addr: "127.0.0.1"},
		{tx: tx7, op: "INSERT", after: row("id", "1", "name", "apple again", "qty", "1", "note", "back"), role: alice, app: "billing"},
	}
	checkChanges(t, got, history)
	if len(notes) != 0 {
		t.Errorf("notes: %q", notes)
	}

	// One actor message per writing transaction, however many statements.
	var n int
	catalogQueryRow(t, e.dir, `SELECT count(*) FROM tx_message m JOIN tx ON tx.commit_lsn = m.commit_lsn WHERE tx.xid = ? AND m.prefix = 'lbt.actor'`,
		[]any{tx3.xid}, &n)
	if n != 1 {
		t.Errorf("transaction of three statements emitted %d actor messages, want 1", n)
	}

	ctx := context.Background()
	in := e.inspector()
	ddl, err := in.DDL(ctx, inspect.DDLOptions{Table: "items"})
	if err != nil {
		t.Fatal(err)
	}
	var captured, stream *inspect.DDLEvent
	for i, ev := range ddl.Events {
		switch {
		case ev.Source == inspect.SourceCaptured && strings.Contains(ev.Query, "ADD COLUMN note"):
			captured = &ddl.Events[i]
		case ev.Source == inspect.SourceStream && ev.Change == "definition changed":
			stream = &ddl.Events[i]
		}
	}
	switch {
	case captured == nil:
		t.Errorf("inspect ddl has no captured ALTER TABLE: %+v", ddl.Events)
	case captured.Actor.Role != carol || captured.Actor.Application != "migrate" || captured.Change != "ALTER TABLE" ||
		captured.Table != "public.items" || captured.Xid != tx5.xid || captured.Time.Before(tx5.before) || captured.Time.After(tx5.after):
		t.Errorf("captured DDL: %+v, want ALTER TABLE of public.items by %s in xid %d", *captured, carol, tx5.xid)
	}
	switch {
	case stream == nil:
		t.Errorf("inspect ddl has no new definition of items: %+v", ddl.Events)
	case stream.Detail != "added note text" || stream.Actor.Role != carol:
		t.Errorf("new definition: %+v, want the added column, by %s", *stream, carol)
	}

	// inspect tx: both updates of the transaction, with its actor.
	tr, err := in.Tx(ctx, inspect.TxOptions{Xid: tx3.xid})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Txs) != 1 || len(tr.Txs[0].Changes) != 2 || tr.Txs[0].Actor.Role != alice {
		t.Fatalf("inspect tx --xid %d: %+v", tx3.xid, tr.Txs)
	}
	byLSN, err := in.Tx(ctx, inspect.TxOptions{LSN: tr.Txs[0].LSN})
	if err != nil || len(byLSN.Txs) != 1 || byLSN.Txs[0].Xid != tx3.xid {
		t.Errorf("inspect tx --lsn %s: %+v, %v", catalog.FormatLSN(tr.Txs[0].LSN), byLSN, err)
	}

	// inspect changes: one line per transaction with its counts and actor.
	ch, err := in.Changes(ctx, inspect.ChangesOptions{Table: "public.items"})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range ch.Txs {
		lines = append(lines, fmt.Sprintf("%d/%d/%d/%d %s", s.Inserts, s.Updates, s.Deletes, s.Truncates, s.Actor.Role))
	}
	want := []string{"2/0/0/0 " + alice, "0/1/0/0 " + bob, "0/2/0/0 " + alice, "0/1/0/0 " + bob, "0/0/1/0 " + bob, "1/0/0/0 " + alice}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("inspect changes:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	// A window by commit time selects the transactions inside it.
	for _, w := range []struct {
		rng  inspect.Range
		want []string
	}{
		{inspect.Range{Since: tx3.before}, want[2:]},
		{inspect.Range{Since: tx2.before, Until: tx3.before}, want[1:2]},
		{inspect.Range{Until: tx1.before}, nil},
	} {
		ch, err := in.Changes(ctx, inspect.ChangesOptions{Table: "public.items", Range: w.rng})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range ch.Txs {
			got = append(got, fmt.Sprintf("%d/%d/%d/%d %s", s.Inserts, s.Updates, s.Deletes, s.Truncates, s.Actor.Role))
		}
		if strings.Join(got, "\n") != strings.Join(w.want, "\n") {
			t.Errorf("inspect changes since %v until %v:\n%s\nwant:\n%s", w.rng.Since, w.rng.Until, strings.Join(got, "\n"), strings.Join(w.want, "\n"))
		}
	}

	// The command line gives the same history, and a clear error for a
	// key column the table lacks.
	code, stdout, stderr := e.lbt("inspect", "history", "--table", "items", "--key", "id=1", "--format", "json")
	if code != 0 {
		t.Fatalf("lbt inspect history: exit %d: %s", code, stderr)
	}
	checkChanges(t, jsonLines(t, []byte(stdout)), history)
	code, _, stderr = e.lbt("inspect", "history", "--table", "items", "--key", "name=apple")
	if wantErr := "lbt inspect history: --key: column name is not in the key (id) of public.items: give --key 'id=42'\n"; code != 2 || stderr != wantErr {
		t.Errorf("history with a non-key column: exit %d, stderr %q; want 2, %q", code, stderr, wantErr)
	}
	for _, args := range [][]string{
		{"inspect", "history", "--table", "items", "--key", "id=1"},
		{"inspect", "tables", "--format", "csv"},
		{"inspect", "changes", "--table", "items"},
		{"inspect", "ddl", "--format", "json"},
		{"inspect", "tx", "--xid", fmt.Sprint(tx3.xid)},
		{"setup", "--status"},
	} {
		code, stdout, stderr := e.lbt(args...)
		if code != 0 || stdout == "" {
			t.Errorf("lbt %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, stdout, stderr)
		}
		t.Logf("lbt %s:\n%s%s", strings.Join(args, " "), stdout, stderr)
	}
}

// Without actor capture the history still works and says the actor is
// unknown. It follows a row across an update of its key, shows unchanged
// TOAST values as such, and shows the TRUNCATE that removed the row; --since
// starts the history later, with the values the change before it wrote.
func TestInspect_HistoryFollowsKeyAndTruncate(t *testing.T) {
	e := newInspectEnv(t, `CREATE TABLE acct (id int PRIMARY KEY, v text, doc text);
		ALTER TABLE acct ALTER COLUMN doc SET STORAGE EXTERNAL`, false)
	big := strings.Repeat("toast!", 2000)
	tx1 := e.tx(e.dsn, `INSERT INTO acct VALUES (1, 'a', '`+big+`'), (2, 'x', NULL)`)
	tx2 := e.tx(e.dsn, `UPDATE acct SET v = 'b' WHERE id = 1`)
	tx3 := e.tx(e.dsn, `UPDATE acct SET id = 10 WHERE id = 1`)
	tx4 := e.tx(e.dsn, `UPDATE acct SET v = 'c' WHERE id = 10`)
	e.tx(e.dsn, `INSERT INTO acct VALUES (1, 'another row', NULL)`)
	tx6 := e.tx(e.dsn, `TRUNCATE acct`)
	tx7 := e.tx(e.dsn, `INSERT INTO acct VALUES (10, 'after the truncate', NULL)`)
	waitArchived(t, e.c, e.dsn, e.dir)

	row := func(id, v string, doc any) map[string]any { return map[string]any{"id": id, "v": v, "doc": doc} }
	got, notes := e.history(inspect.HistoryOptions{Table: "acct", Key: "id=1"})
	checkChanges(t, got, []wantChange{
		{tx: tx1, op: "INSERT", after: row("1", "a", big)},
		{tx: tx2, op: "UPDATE", before: row("1", "a", big), after: map[string]any{"id": "1", "v": "b"}, changed: []any{"v"}},
		{tx: tx3, op: "UPDATE", before: row("1", "b", big), after: map[string]any{"id": "10", "v": "b"}, changed: []any{"id"},
			note: "key changed from id=1 to id=10"},
		{tx: tx4, op: "UPDATE", before: row("10", "b", big), after: map[string]any{"id": "10", "v": "c"}, changed: []any{"v"}},
		{tx: tx6, op: "TRUNCATE", before: row("10", "c", big), note: "removed the row"},
		{tx: tx7, op: "INSERT", after: row("10", "after the truncate", nil)},
	})
	if unchanged, _ := got[1]["unchanged"].([]any); len(unchanged) != 1 || unchanged[0] != "doc" {
		t.Errorf("unchanged TOAST column not reported: %v", got[1]["unchanged"])
	}
	if len(notes) != 1 || notes[0] != inspect.ActorHint {
		t.Errorf("notes %q, want the actor hint once", notes)
	}

	// The row index and a scan of every blob agree.
	scanned, _ := e.history(inspect.HistoryOptions{Table: "acct", Key: "id=1", FullScan: true})
	if fmt.Sprint(scanned) != fmt.Sprint(got) {
		t.Errorf("full scan:\n%v\nrow index:\n%v", scanned, got)
	}

	// From the middle: the key change is the first change, with the values
	// before it known.
	since, _ := e.history(inspect.HistoryOptions{Table: "acct", Key: "id=1", Range: inspect.Range{Since: tx3.before}})
	// The values before come from the change before the range; the TOAST
	// value it did not carry is unknown.
	if len(since) != 4 || since[0]["op"] != "UPDATE" || fmt.Sprint(since[0]["before"]) != fmt.Sprint(map[string]any{"id": "1", "v": "b"}) {
		t.Errorf("history since %s: %v", tx3.before, since)
	}
	until, _ := e.history(inspect.HistoryOptions{Table: "acct", Key: "id=1", Range: inspect.Range{Until: tx3.before}})
	if len(until) != 2 {
		t.Errorf("history until %s: %d changes, want 2", tx3.before, len(until))
	}

	// The other end: the row arrives under key 10 by the key change.
	got10, _ := e.history(inspect.HistoryOptions{Table: "acct", Key: "10"})
	if len(got10) != 4 || got10[0]["note"] != "key changed from id=1" || got10[2]["op"] != "TRUNCATE" || got10[3]["op"] != "INSERT" {
		t.Errorf("history of id=10: %v", got10)
	}
}

// A composite key with a value holding a comma selects exactly its row.
func TestInspect_HistoryCompositeKey(t *testing.T) {
	e := newInspectEnv(t, `CREATE TABLE pair (a int, b text, v int, PRIMARY KEY (a, b))`, false)
	tx1 := e.tx(e.dsn, `INSERT INTO pair VALUES (1, 'x,y', 1), (1, 'x', 2), (2, 'x,y', 3)`)
	tx2 := e.tx(e.dsn, `UPDATE pair SET v = v + 10`)
	tx3 := e.tx(e.dsn, `DELETE FROM pair WHERE a = 1 AND b = 'x,y'`)
	waitArchived(t, e.c, e.dsn, e.dir)

	got, _ := e.history(inspect.HistoryOptions{Table: "public.pair", Key: `b="x,y",a=1`})
	checkChanges(t, got, []wantChange{
		{tx: tx1, op: "INSERT", after: map[string]any{"a": "1", "b": "x,y", "v": "1"}},
		{tx: tx2, op: "UPDATE", before: map[string]any{"a": "1", "b": "x,y", "v": "1"}, after: map[string]any{"a": "1", "b": "x,y", "v": "11"}, changed: []any{"v"}},
		{tx: tx3, op: "DELETE", before: map[string]any{"a": "1", "b": "x,y", "v": "11"}},
	})
	if key, _ := got[0]["key"].(map[string]any); key["a"] != "1" || key["b"] != "x,y" {
		t.Errorf("key %v", got[0]["key"])
	}

	// Every row: all seven changes.
	all, _ := e.history(inspect.HistoryOptions{Table: "pair"})
	if len(all) != 7 {
		t.Errorf("history of every row: %d changes, want 7", len(all))
	}
}

// Bad input gets one line that names the problem and the fix.
func TestInspect_BadInput(t *testing.T) {
	e := newInspectEnv(t, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE nokey (v text)`, false)
	e.tx(e.dsn, `INSERT INTO t VALUES (1, 'a')`, `INSERT INTO nokey VALUES ('a')`)
	waitArchived(t, e.c, e.dsn, e.dir)
	ctx := context.Background()
	in := e.inspector()
	now := time.Now()
	for _, tt := range []struct {
		opts inspect.HistoryOptions
		want string
	}{
		{inspect.HistoryOptions{Table: "nosuch", Key: "id=1"}, "table public.nosuch is not in the archive (lbt inspect tables lists the archived tables)"},
		{inspect.HistoryOptions{Table: "t", Key: "nope=1"}, "--key: table public.t has no column nope; its key is (id): give --key 'id=42'"},
		{inspect.HistoryOptions{Table: "t", Key: "id"}, "--key id names a column but gives no value: give --key 'id=42'"},
		{inspect.HistoryOptions{Table: "t", Key: "id=one"}, "--key: column id of public.t is integer, and one is not an integer: give --key 'id=42'"},
		{inspect.HistoryOptions{Table: "t", Key: "id=1,"}, `--key "id=1,": nothing after the last comma (write it like 'id=42' or 'a=1,b="x,y"')`},
		{inspect.HistoryOptions{Table: "t", Key: `id="1`}, `--key "id=\"1": unterminated double quote (write it like 'id=42' or 'a=1,b="x,y"')`},
		{inspect.HistoryOptions{Table: "a.b.c", Key: "id=1"}, `--table: table name "a.b.c": want schema.table or table`},
		{inspect.HistoryOptions{Table: "nokey", Key: "v=a"}, "table public.nokey has no primary key or replica identity key, so rows have no key to look up: use lbt inspect changes --table public.nokey"},
		{inspect.HistoryOptions{Table: "t", Range: inspect.Range{Since: now, Until: now.Add(-time.Hour)}},
			fmt.Sprintf("--since %s is not before --until %s", now.UTC().Format(inspect.TimeLayout), now.Add(-time.Hour).UTC().Format(inspect.TimeLayout))},
	} {
		_, err := in.History(ctx, tt.opts)
		var ie *inspect.InputError
		if !errors.As(err, &ie) || err.Error() != tt.want {
			t.Errorf("history %+v: %v\nwant: %s", tt.opts, err, tt.want)
		}
	}
	if _, err := in.Tx(ctx, inspect.TxOptions{Xid: 3}); err == nil || !strings.HasPrefix(err.Error(), "no transaction with xid 3 in the archive (it holds transactions committed from ") {
		t.Errorf("tx of an unknown xid: %v", err)
	}
	code, stdout, stderr := e.lbt("inspect", "history", "--table", "t", "--key", "id=1,")
	if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 {
		t.Errorf("lbt with a bad key: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = e.lbt("inspect", "history", "--table", "t", "--key", "id")
	if want := "lbt inspect history: --key id names a column but gives no value: give --key 'id=42'\n"; code != 2 || stdout != "" || stderr != want {
		t.Errorf("lbt with a key column and no value: exit %d, stdout %q, stderr %q; want 2, %q", code, stdout, stderr, want)
	}
	code, _, stderr = e.lbt("inspect", "changes", "--table", "t", "--since", "yesterday-ish")
	if code != 2 || strings.Count(stderr, "\n") != 1 {
		t.Errorf("lbt with a bad time: exit %d, stderr %q", code, stderr)
	}
	// A relative time is a separate argument, as the docs write it.
	code, stdout, stderr = e.lbt("inspect", "changes", "--table", "t", "--since", "-1h", "--until", "-0s", "--format", "csv")
	if code != 0 || strings.Count(stdout, "\n") != 2 {
		t.Errorf("lbt inspect changes --since -1h --until -0s: exit %d, stdout %q, stderr %q; want the header and one transaction", code, stdout, stderr)
	}
}

// setup is idempotent, covers tables created later, reports what it
// installed and removes all of it; non-superusers get a clear error.
func TestSetup_InstallStatusRemove(t *testing.T) {
	e := newInspectEnv(t, `CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE parted (id int) PARTITION BY RANGE (id);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100)`, false)
	if s := e.status(); s.ActorCapture || s.DDLCapture || !s.PublicationExists || s.ActorTables != 3 || len(s.ActorMissing) != 3 {
		t.Fatalf("status before setup: %+v", s)
	}
	opts := setup.Options{Publication: "lbt", CaptureActors: true, CaptureDDL: true}
	if res := e.install(opts); res.TriggersAdded != 3 {
		t.Errorf("first install added %d triggers, want 3 (a, parted, parted_1)", res.TriggersAdded)
	}
	if res := e.install(opts); res.TriggersAdded != 0 {
		t.Errorf("second install added %d triggers, want 0", res.TriggersAdded)
	}
	e.c.Exec(t, e.dsn, `CREATE TABLE later (id int PRIMARY KEY)`)
	e.c.Exec(t, e.dsn, `CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (100) TO (200)`)
	if s := e.status(); !s.ActorCapture || !s.DDLCapture || s.ActorTables != 5 || len(s.ActorMissing) != 0 {
		t.Errorf("status after setup and new tables: %+v", s)
	}

	// A statement on a partition and one on its parent both record the actor.
	tx := e.tx(e.dsn, `INSERT INTO parted_2 VALUES (150)`)
	tx2 := e.tx(e.dsn, `INSERT INTO parted VALUES (1)`)
	waitArchived(t, e.c, e.dsn, e.dir)
	for _, x := range []inspectTx{tx, tx2} {
		r, err := e.inspector().Tx(context.Background(), inspect.TxOptions{Xid: x.xid})
		if err != nil || len(r.Txs) != 1 || r.Txs[0].Actor.Role != "postgres" {
			t.Errorf("inspect tx %d: %+v, %v", x.xid, r, err)
		}
	}

	ctx := context.Background()
	_, userDSN := e.role("mallory", "x", false)
	conn := e.c.Connect(t, userDSN)
	if _, err := setup.Install(ctx, conn, opts); !errors.Is(err, setup.ErrNotSuperuser) {
		t.Errorf("install as a non-superuser: %v", err)
	}
	code, _, stderr := e.lbt("--dsn", userDSN, "setup", "--capture-actors")
	if code != 2 || !strings.Contains(stderr, "event triggers need a superuser") {
		t.Errorf("lbt setup as a non-superuser: exit %d, %q", code, stderr)
	}

	code, stdout, stderr := e.lbt("setup", "--remove")
	if code != 0 {
		t.Fatalf("lbt setup --remove: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "5 table triggers") {
		t.Errorf("setup --remove said %q", stdout)
	}
	if s := e.status(); s.ActorCapture || s.DDLCapture || len(s.ActorMissing) != 5 {
		t.Errorf("status after remove: %+v", s)
	}
	if got := e.c.QueryString(t, e.dsn, `SELECT count(*) FROM pg_namespace WHERE nspname = 'lbt'`); got != "0" {
		t.Errorf("schema lbt left behind")
	}
	var buf bytes.Buffer
	if err := e.status().Write(&buf); err != nil || !strings.Contains(buf.String(), "actor capture:  not installed") {
		t.Errorf("status text: %q, %v", buf.String(), err)
	}
}
