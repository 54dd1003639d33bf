package catalog_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pierrec/lz4/v4"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/ingest"
	"lbt/test/pgtest"
)

// The golden archive: testdata/golden is a small archive of the current
// format (its catalog, its segment, a basebackup and its sidecar) that lbt
// backup wrote, and testdata/golden.txt everything this lbt decodes from it.
// TestGolden reads the archive and compares, so that a change of the
// format, or of how it is read, fails a test instead of passing unnoticed.
//
// When the format changes on purpose (a new catalog.FormatVersion),
// regenerate both with one command, which starts a throwaway PostgreSQL,
// runs the workload of writeGolden through lbt backup and lbt basebackup,
// and rewrites testdata/golden and testdata/golden.txt:
//
//	go test ./catalog -run TestGolden -update
//
// then review the diff of golden.txt: it shows what the new format changed.
var update = flag.Bool("update", false, "regenerate testdata/golden and testdata/golden.txt (needs PostgreSQL, see test/pgtest)")

const (
	goldenDir  = "testdata/golden"
	goldenText = "testdata/golden.txt"
	// golden4 is the golden archive of format version 4, kept to test the
	// upgrade to version 5.
	golden4Dir = "testdata/golden4"
)

func TestGolden(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	dir := copyGolden(t)
	got := describeArchive(t, dir)
	want, err := os.ReadFile(goldenText)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("the golden archive reads differently from %s (if the format changed on purpose, regenerate it: go test ./catalog -run TestGolden -update):\n%s",
			goldenText, lineDiff(string(want), got))
	}

	// Independently of golden.txt: the changes of items are the workload's.
	ctx := context.Background()
	cat, err := catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	blobs, err := cat.Blobs(ctx, itemsID(t, cat), 0, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	src := catalog.NewBlobSource(ctx, cat.Store(), cat.Keys())
	defer src.Close()
	var changes []string
	for c, err := range src.Changes(blobs, catalog.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, describeChange(c))
	}
	wantChanges := []string{
		`I new=('1','apple','5')`,
		`I new=('2','pear',NULL)`,
		`I new=('3','it''s	tab\',NULL)`,
		`U - new=('1','apple','6')`,
		`U K old=('2',NULL,NULL) new=('20','pear',NULL)`,
		`D K old=('3',NULL,NULL)`,
		`I new=('4','after the basebackup','1')`,
		`X 0`,
		`I new=('5','after the truncate',NULL)`,
	}
	if strings.Join(changes, "\n") != strings.Join(wantChanges, "\n") {
		t.Errorf("changes of items:\n%s\nwant:\n%s", strings.Join(changes, "\n"), strings.Join(wantChanges, "\n"))
	}
}

// copyGolden copies the golden archive to a temporary directory, so that
// opening it (SQLite's -shm file) leaves testdata as it is.
func copyGolden(t *testing.T) string {
	return copyArchive(t, goldenDir)
}

func copyArchive(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if err := copyTree(src, dst, func(string) bool { return false }); err != nil {
		t.Fatalf("golden archive: %v", err)
	}
	return dst
}

// copyTree copies the files and directories under src to dst, but those
// whose path relative to src skip names.
func copyTree(src, dst string, skip func(rel string) bool) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		switch {
		case skip(rel) && d.IsDir():
			return filepath.SkipDir
		case skip(rel):
			return nil
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
}

// describeArchive prints what this lbt reads from an archive: every
// catalog table's rows, every blob of every segment decoded (metadata blobs
// as JSON), and every basebackup with its sidecar and rows.
func describeArchive(t *testing.T, dir string) string {
	t.Helper()
	ctx := context.Background()
	cat, err := catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	var b strings.Builder
	describeCatalog(t, &b, cat.DB())
	err = cat.EachRowKey(ctx, func(table, hash int64, lsn uint64) error {
		fmt.Fprintf(&b, "row key: table_id=%d key_hash=%d commit_lsn=%d\n", table, hash, lsn)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	segments, err := filepath.Glob(filepath.Join(dir, "segments", "*.lbs"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(segments)
	for _, path := range segments {
		describeSegment(t, &b, dir, path)
	}

	tables, err := cat.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range tables {
		bases, err := cat.Basebackups(ctx, tr.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, bb := range bases {
			describeBasebackup(t, &b, dir, bb)
		}
	}
	return b.String()
}

// describeCatalog prints the catalog's schema and every row of every table
// in a stable order.
func describeCatalog(t *testing.T, b *strings.Builder, db *sql.DB) {
	t.Helper()
	rows, err := db.Query(`SELECT type, name, coalesce(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var typ, name, text string
		if err := rows.Scan(&typ, &name, &text); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(b, "catalog %s %s: %s\n", typ, name, strings.Join(strings.Fields(text), " "))
		if typ == "table" {
			tables = append(tables, name)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			parts := make([]string, len(cols))
			for i, v := range vals {
				parts[i] = cols[i] + "=" + describeValue(v)
			}
			lines = append(lines, fmt.Sprintf("row %s: %s\n", table, strings.Join(parts, " ")))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		sort.Strings(lines) // rowid order is not part of the format
		for _, l := range lines {
			b.WriteString(l)
		}
	}
}

func describeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return fmt.Sprintf("x'%x'", v)
	case string:
		return fmt.Sprintf("%q", v)
	default:
		return fmt.Sprint(v)
	}
}

// describeSegment walks a segment file frame by frame, as a reader
// without the catalog does.
func describeSegment(t *testing.T, b *strings.Builder, dir, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(dir, path)
	if len(data) < catalog.SegmentHeaderSize {
		t.Fatalf("%s: %d bytes, no header", rel, len(data))
	}
	fmt.Fprintf(b, "segment %s: %d bytes, header %x\n", rel, len(data), data[:catalog.SegmentHeaderSize])
	for off := catalog.SegmentHeaderSize; off < len(data); {
		h, err := catalog.ParseBlobHeader(data[off:])
		if err != nil {
			t.Fatalf("%s at %d: %v", rel, off, err)
		}
		end := off + catalog.BlobHeaderSize + h.CompLen
		if end > len(data) {
			t.Fatalf("%s at %d: blob runs past the end", rel, off)
		}
		h, raw, err := catalog.DecodeBlob(data[off:end], nil)
		if err != nil {
			t.Fatalf("%s at %d: %v", rel, off, err)
		}
		fmt.Fprintf(b, "blob at %d: table %d schema %d first LSN %s, %d bytes, %d raw, crc %08x\n",
			off, h.TableID, h.Schema, catalog.FormatLSN(h.FirstLSN), end-off, h.RawLen, h.CRC)
		if h.TableID == catalog.MetaTableID {
			m, err := catalog.ParseMetadata(raw)
			if err != nil {
				t.Fatalf("%s at %d: metadata: %v", rel, off, err)
			}
			j, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(b, "  metadata %s\n", j)
		} else {
			r := catalog.NewRecordReader(raw, h.Schema)
			for {
				c, ok, err := r.Next()
				if err != nil {
					t.Fatalf("%s at %d: %v", rel, off, err)
				}
				if !ok {
					break
				}
				fmt.Fprintf(b, "  %s xid %d schema %d: %s\n", catalog.FormatLSN(c.CommitLSN), c.Xid, c.Schema, describeChange(c))
			}
		}
		off = end
	}
}

// describeChange prints a change with its tuples as SQL-like literals.
func describeChange(c catalog.Change) string {
	tuple := func(tp catalog.Tuple) string {
		parts := make([]string, len(tp))
		for i, v := range tp {
			switch v.Kind {
			case catalog.ValueNull:
				parts[i] = "NULL"
			case catalog.ValueUnchanged:
				parts[i] = "UNCHANGED"
			default:
				parts[i] = "'" + strings.ReplaceAll(string(v.Data), "'", "''") + "'"
			}
		}
		return "(" + strings.Join(parts, ",") + ")"
	}
	switch c.Tag {
	case catalog.TagInsert:
		return "I new=" + tuple(c.New)
	case catalog.TagUpdate:
		if c.OldKind == catalog.OldNone {
			return "U - new=" + tuple(c.New)
		}
		return fmt.Sprintf("U %c old=%s new=%s", c.OldKind, tuple(c.Old), tuple(c.New))
	case catalog.TagDelete:
		return fmt.Sprintf("D %c old=%s", c.OldKind, tuple(c.Old))
	default:
		return fmt.Sprintf("X %d", c.Truncate)
	}
}

// describeBasebackup checks a basebackup file against its row, parses its
// sidecar and prints its rows.
func describeBasebackup(t *testing.T, b *strings.Builder, dir string, bb catalog.Basebackup) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, bb.Path))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(lz4.NewReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatalf("basebackup %s: %v", bb.Path, err)
	}
	side, err := os.ReadFile(filepath.Join(dir, catalog.SidecarName(bb.Path)))
	if err != nil {
		t.Fatal(err)
	}
	sb, st, err := catalog.ParseSidecar(side)
	if err != nil {
		t.Fatalf("sidecar of %s: %v", bb.Path, err)
	}
	if sb.Path != bb.Path || sb.LSN != bb.LSN || sb.CRC != bb.CRC || sb.Rows != bb.Rows {
		t.Errorf("sidecar of %s says %+v, the catalog %+v", bb.Path, sb, bb)
	}
	j, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(b, "basebackup %s: table %d LSN %s, %d rows, %d bytes, %d raw, crc %08x, sidecar table %s\n",
		bb.Path, bb.TableID, catalog.FormatLSN(bb.LSN), bb.Rows, len(data), len(raw), bb.CRC, j)
	for _, line := range strings.SplitAfter(string(raw), "\n") {
		if line != "" {
			fmt.Fprintf(b, "  %q\n", line)
		}
	}
}

// lineDiff lists the lines only in want (-) and only in got (+), at most
// 40 of them.
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var out []string
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			out = append(out, "+ "+l)
		}
	}
	if len(out) > 40 {
		out = append(out[:40], fmt.Sprintf("... and %d more", len(out)-40))
	}
	return strings.Join(out, "\n")
}

// writeGolden runs the workload through lbt backup and lbt basebackup on a
// throwaway PostgreSQL and replaces testdata/golden and golden.txt.
func writeGolden(t *testing.T) {
	ctx := context.Background()
	c, err := pgtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	c.Exec(t, c.DSN("postgres"), "CREATE DATABASE golden")
	dsn := c.DSN("golden")
	c.Exec(t, dsn, `CREATE TABLE items (id int PRIMARY KEY, name text, qty int)`)
	c.Exec(t, dsn, `CREATE TABLE notes (body text, at date) WITH (fillfactor = 90)`)
	c.Exec(t, dsn, `ALTER TABLE notes REPLICA IDENTITY FULL`)

	dir := t.TempDir()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	opts := ingest.NewOptions()
	opts.ArchiveDir = dir
	opts.Conn = cfg
	opts.Slot = "golden"
	opts.FlushInterval = 50 * time.Millisecond
	opts.StatusInterval = time.Second
	opts.Logger = hclog.NewNullLogger()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		unlock, err := ingest.LockArchive(dir)
		if err != nil {
			done <- err
			return
		}
		defer unlock()
		done <- ingest.Run(runCtx, opts)
	}()
	defer func() {
		stop()
		<-done
	}()
	waitGolden(t, c, dsn, dir, "started")

	for _, stmt := range []string{
		`INSERT INTO items VALUES (1, 'apple', 5), (2, 'pear', NULL), (3, E'it''s\ttab\\', NULL)`,
		`UPDATE items SET qty = 6 WHERE id = 1`,
		`UPDATE items SET id = 20 WHERE id = 2`,
		`DELETE FROM items WHERE id = 3`,
		`INSERT INTO notes VALUES ('first note', '2026-11-21')`,
	} {
		c.Exec(t, dsn, stmt)
	}
	waitGolden(t, c, dsn, dir, "before basebackup")
	cat, err := catalog.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	bo := basebackup.NewOptions()
	bo.ArchiveDir = dir
	bo.TempDir = filepath.Join(dir, "tmp")
	bo.Conn = cfg
	bo.Publication = opts.Publication
	bo.Logger = hclog.NewNullLogger()
	if _, err := basebackup.Take(ctx, cat, bo, []string{"items"}); err != nil {
		t.Fatal(err)
	}
	cat.Close()
	for _, stmt := range []string{
		`INSERT INTO items VALUES (4, 'after the basebackup', 1)`,
		`UPDATE notes SET body = 'edited' WHERE body = 'first note'`,
		`TRUNCATE items`,
		`INSERT INTO items VALUES (5, 'after the truncate', NULL)`,
		`ALTER TABLE notes ADD COLUMN n int`,
		`INSERT INTO notes VALUES ('with n', NULL, 7)`,
		`DELETE FROM notes WHERE n IS NULL`,
	} {
		c.Exec(t, dsn, stmt)
	}
	waitGolden(t, c, dsn, dir, "done")
	stop()
	if err := <-done; err != nil {
		t.Fatalf("lbt backup: %v", err)
	}
	done <- nil // for the deferred stop

	if err := os.RemoveAll(goldenDir); err != nil {
		t.Fatal(err)
	}
	// LOCK, tmp/ and SQLite's -wal and -shm are the daemon's, not the archive's.
	err = copyTree(dir, goldenDir, func(rel string) bool {
		return rel == "tmp" || rel == "LOCK" || rel == "PURGE.lock" || strings.HasPrefix(rel, catalog.CatalogFile+"-")
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(goldenText, []byte(describeArchive(t, copyGolden(t))), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitGolden emits a logical message and waits until the archive holds it:
// then it holds everything committed before.
func waitGolden(t *testing.T, c *pgtest.Cluster, dsn, dir, content string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		// The first message may come before the slot exists: repeat it.
		c.Exec(t, dsn, fmt.Sprintf("SELECT pg_logical_emit_message(true, 'lbt.golden', '%s')", content))
		for i := 0; i < 40; i++ {
			if cat, err := catalog.OpenReadOnly(context.Background(), dir); err == nil {
				var n int
				err := cat.DB().QueryRow(`SELECT count(*) FROM tx_message WHERE prefix = 'lbt.golden' AND content = CAST(? AS BLOB)`, content).Scan(&n)
				cat.Close()
				if err == nil && n > 0 {
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Fatalf("the archive did not receive %q within 90s", content)
}

// TestGolden_UpgradesFormat4 opens the version-4 golden archive: read-only
// it is refused with one line; opened to write, it becomes version 5 with
// the same row keys, a catalog rebuilt from its files has them too, and a
// history lookup finds the same transactions.
func TestGolden_UpgradesFormat4(t *testing.T) {
	ctx := context.Background()
	dir := copyArchive(t, golden4Dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, catalog.CatalogFile)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	rows, err := db.Query(`SELECT table_id, key_hash, commit_lsn FROM row_key ORDER BY table_id, key_hash, commit_lsn`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var table, hash, lsn int64
		if err := rows.Scan(&table, &hash, &lsn); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprint(table, hash, lsn))
	}
	rows.Close()
	db.Close()
	if len(want) == 0 {
		t.Fatal("the version-4 golden archive has no row keys")
	}

	_, err = catalog.OpenReadOnly(ctx, dir)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "format version 4") {
		t.Fatalf("read-only open of a version-4 archive: %v, want one line refusing it", err)
	}
	cat, err := catalog.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cat.Meta(ctx, "format_version"); err != nil || v != fmt.Sprint(catalog.FormatVersion) {
		t.Fatalf("format_version %q, %v after the upgrade", v, err)
	}
	if left, err := cat.PurgeFiles(ctx); err != nil || len(left) > 0 {
		t.Errorf("purge_file after the upgrade: %v (%v), want it there and empty", left, err)
	}
	got := rowKeyPairs(t, cat)
	cat.Close()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("row keys after the upgrade:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A catalog rebuilt from its version-4 files (segments, sidecars) has
	// the same pairs.
	if _, err := catalog.Rebuild(ctx, dir, true, nil); err != nil {
		t.Fatalf("rebuild of the upgraded archive: %v", err)
	}
	cat, err = catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	got = rowKeyPairs(t, cat)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("row keys after a rebuild:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	cat.Close()
	// Readers open it now, and find the key 1 of items in the transactions
	// that inserted and updated it.
	cat, err = catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	txs, err := cat.RowKeyTxs(ctx, itemsID(t, cat), []int64{catalog.KeyHash([][]byte{[]byte("1")})}, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(txs) != 2 {
		t.Fatalf("key 1 of items is in %d transactions after the upgrade, want 2 (its insert and its update): %+v", len(txs), txs)
	}
}

// itemsID is the table id of the golden workload's items.
func itemsID(t *testing.T, cat *catalog.Catalog) int64 {
	t.Helper()
	ids, err := cat.FindTable(context.Background(), "public", "items")
	if err != nil || len(ids) != 1 {
		t.Fatalf("items: %v, %v", ids, err)
	}
	return ids[0]
}

// rowKeyPairs lists the row-key index's pairs, one "table hash lsn" each.
func rowKeyPairs(t *testing.T, cat *catalog.Catalog) []string {
	t.Helper()
	var got []string
	err := cat.EachRowKey(context.Background(), func(table, hash int64, lsn uint64) error {
		got = append(got, fmt.Sprint(table, hash, lsn))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}
