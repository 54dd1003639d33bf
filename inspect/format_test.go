package inspect

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

// The reports' bytes in every format are part of lbt's interface (tools
// read the JSON and CSV): they are compared with golden files, written
// before the reports' output moved to column specs.
func TestReportFormats(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 890123000, time.UTC)
	known := Actor{Known: true, Role: "alice", SessionUser: "admin", Application: "psql", ClientAddr: "10.0.0.1", BackendPID: 4242}
	local := Actor{Known: true, Role: "bob", BackendPID: 7}
	changes := &ChangesReport{Table: `public."T"`, Txs: []TxSummary{
		{Time: at, Xid: 1234, LSN: 0x16B3748, Actor: known, Inserts: 3, Updates: 1},
		{Time: at.Add(time.Second), Xid: 4294967295, LSN: 1<<32 | 0x10, Actor: Actor{}, Deletes: 100000, Truncates: 1},
		{Time: at.Add(time.Hour), Xid: 5, LSN: 0x20, Actor: local},
	}}
	tables := &TablesReport{Tables: []TableInfo{
		{ID: 1, OID: 16384, Name: "public.t", SchemaVersions: 1},
		{ID: 2, OID: 4294967295, Name: `s."New, name"`, FormerNames: []string{"s.old", `s."older"`}, SchemaVersions: 3,
			Basebackups: 2, NewestBasebackup: at, NewestBasebackupLSN: 0xABCDEF, Transactions: 12, Inserts: 10, Updates: 5, Deletes: 2, Truncates: 1,
			FirstChange: at.Add(-time.Hour), LastChange: at, Blobs: 4, DeltaBytes: 5000, BasebackupBytes: 3 << 20},
	}}
	ddl := &DDLReport{Events: []DDLEvent{
		{LSN: 0x100, Table: "public.t", Source: SourceStream, Change: "first seen", Detail: "columns id integer; key (id)"},
		{Time: at, Xid: 77, LSN: 0x200, Table: "public.t", Source: SourceCaptured, Change: "ALTER TABLE", Detail: "table",
			Query: "ALTER TABLE t\n    ADD COLUMN \"x,y\" text", Actor: known},
		{Time: at.Add(time.Minute), Xid: 78, LSN: 0x300, Table: "public.t", Source: SourceStream, Change: "definition changed", Detail: "added \"x,y\" text", Actor: local},
	}}
	txt := func(s string) Value { return Value{Kind: Text, Text: s} }
	cols := []string{"id", "v"}
	history := &History{Table: "public.t", Key: map[string]string{"id": "1"}, Changes: []Change{
		{Time: at, Xid: 10, LSN: 0x10, Table: "public.t", Op: OpInsert, Columns: cols, Key: map[string]string{"id": "1"},
			After: []Value{txt("1"), txt(" padded ")}, Actor: known},
		{Time: at, Xid: 11, LSN: 0x20, Table: "public.t", Op: OpUpdate, Columns: cols, Key: map[string]string{"id": "2"},
			Before: []Value{txt("1"), {Kind: Null}}, After: []Value{txt("2"), {Kind: Unchanged}}, Changed: []string{"id"},
			Note: "key changed from id=1 to id=2: following the row", Actor: local},
		{Time: at, Xid: 12, LSN: 0x30, Table: "public.t", Op: OpDelete, Columns: cols, Key: map[string]string{"id": "2"},
			Before: []Value{txt("2"), {}}},
		{Time: at, Xid: 13, LSN: 0x40, Op: OpMessage, Prefix: "app", Content: "hello\nworld"},
	}}
	tx := &TxReport{Txs: []TxInfo{{Time: at, Xid: 11, LSN: 0x20, EndLSN: 0x28, Origin: "node1", Actor: local, Changes: history.Changes[1:2]},
		{Time: at, Xid: 13, LSN: 0x40, EndLSN: 0x48, Changes: history.Changes[3:]}}}
	for _, r := range []struct {
		name  string
		write func(io.Writer, Format) error
	}{
		{"changes", changes.Write},
		{"tables", tables.Write},
		{"ddl", ddl.Write},
		{"changes-empty", (&ChangesReport{Table: "public.t"}).Write},
		{"history", history.Write},
		{"tx", tx.Write},
	} {
		for _, f := range []Format{FormatTable, FormatJSON, FormatCSV} {
			var b bytes.Buffer
			if err := r.write(&b, f); err != nil {
				t.Fatalf("%s %s: %v", r.name, f, err)
			}
			path := filepath.Join("testdata", r.name+"."+string(f))
			if *updateGolden {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("%s in %s:\n%s\nwant (%s):\n%s", r.name, f, b.Bytes(), path, want)
			}
		}
	}
}

// Each report's columns are one spec for its three formats: every column
// says how each format it is in writes it, and no name or heading repeats.
func TestReportColumns(t *testing.T) {
	checkColumns(t, "changes", (&ChangesReport{}).columns())
	checkColumns(t, "tables", tableColumns)
	checkColumns(t, "ddl", ddlColumns)
}

func checkColumns[T any](t *testing.T, report string, cols []column[T]) {
	t.Helper()
	seen := map[string]bool{}
	for i, c := range cols {
		if c.name == "" && c.head == "" {
			t.Errorf("%s: column %d is in no format", report, i)
		}
		if c.text == nil && c.actor == nil {
			t.Errorf("%s: column %q %q has no text", report, c.name, c.head)
		}
		for _, k := range []string{"name " + c.name, "heading " + c.head} {
			if strings.HasSuffix(k, " ") {
				continue
			}
			if seen[k] {
				t.Errorf("%s: %s twice", report, k)
			}
			seen[k] = true
		}
	}
}
