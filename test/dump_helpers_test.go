package test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pierrec/lz4/v4"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/restore"
	"lbt/schema"
	"lbt/test/pgtest"
)

// This file holds what the basebackup and purge tests share: taking
// basebackups and running the scheduler in-process, and a small test-only
// applier that rebuilds a table from a basebackup and the deltas after it,
// to check the archive against the source row for row.

func testLogger(t *testing.T, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug, Output: testWriter{t}})
}

func dumpOptions(t *testing.T, dsn, dir string) basebackup.Options {
	t.Helper()
	cfg := connConfig(t, dsn)
	o := basebackup.NewOptions()
	o.ArchiveDir = dir
	o.TempDir = filepath.Join(dir, "tmp")
	o.Conn = cfg
	o.Publication = "lbt"
	o.Logger = testLogger(t, "basebackup")
	return o
}

// takeBasebackups dumps tables under one snapshot while the daemon runs.
func takeBasebackups(t *testing.T, dsn, dir string, tables ...string) []catalog.Basebackup {
	t.Helper()
	return takeWith(t, dumpOptions(t, dsn, dir), tables)
}

// takeChunked is takeBasebackups in chunks of about chunkBytes, copied by
// two connections under the one snapshot.
func takeChunked(t *testing.T, dsn, dir string, chunkBytes int64, tables ...string) []catalog.Basebackup {
	t.Helper()
	o := dumpOptions(t, dsn, dir)
	o.Jobs, o.ChunkBytes = 2, chunkBytes
	return takeWith(t, o, tables)
}

// takeWith dumps tables with the options o.
func takeWith(t *testing.T, o basebackup.Options, tables []string) []catalog.Basebackup {
	t.Helper()
	ctx := context.Background()
	cat, err := catalog.Open(ctx, o.ArchiveDir)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	bases, err := basebackup.Take(ctx, cat, o, tables)
	if err != nil {
		t.Fatalf("basebackup of %v: %v", tables, err)
	}
	return bases
}

// runScheduler runs the basebackup scheduler beside the daemon until the
// test ends; the returned function stops it and fails the test if it failed.
func runScheduler(t *testing.T, dsn, dir string, tune func(*basebackup.SchedulerOptions)) (stop func()) {
	t.Helper()
	o := basebackup.NewSchedulerOptions()
	o.Options = dumpOptions(t, dsn, dir)
	o.Logger = testLogger(t, "scheduler")
	o.PollInterval = 100 * time.Millisecond
	o.RetryBackoff = 200 * time.Millisecond
	o.Threshold = 0
	if tune != nil {
		tune(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- basebackup.RunScheduler(ctx, o) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("scheduler: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("scheduler did not stop within 30s")
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// basebackupsOf lists a table's basebackups (by its current name), oldest first.
func basebackupsOf(t *testing.T, dir, table string) []catalog.Basebackup {
	t.Helper()
	ctx := context.Background()
	cat := openArchive(t, dir)
	defer cat.Close()
	id := tableID(t, cat, table)
	if id == 0 {
		return nil
	}
	bases, err := cat.Basebackups(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return bases
}

// mustTableID is tableID of a table that must be in the archive.
func mustTableID(t *testing.T, cat *catalog.Catalog, table string) int64 {
	t.Helper()
	id := tableID(t, cat, table)
	if id == 0 {
		t.Fatalf("table %s is not in the archive", table)
	}
	return id
}

// tableID is the archive's id of the table named table, or 0 if it has none.
func tableID(t *testing.T, cat *catalog.Catalog, table string) int64 {
	t.Helper()
	ns, name, err := schema.ParseName(table)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := cat.FindTable(context.Background(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 {
		return 0
	}
	return ids[0]
}

// archivePosition is the commit LSN of the newest archived transaction.
func archivePosition(t *testing.T, dir string) uint64 {
	t.Helper()
	cat := openArchive(t, dir)
	defer cat.Close()
	p, _, err := cat.Position(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p.CommitLSN
}

// sourceRows returns a table's rows on the source, encoded and sorted.
func sourceRows(t *testing.T, dsn, table string, columns []string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	sel := make([]string, len(columns))
	for i, c := range columns {
		sel[i] = schema.QuoteIdent(c) + "::text"
	}
	rows, err := conn.Query(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals := make([]*string, len(columns))
		dest := make([]any, len(columns))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		out = append(out, encodeRow(vals))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func encodeRow(vals []*string) string {
	var b strings.Builder
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(0x1e)
		}
		if v == nil {
			b.WriteString("\x00N")
		} else {
			b.WriteString(*v)
		}
	}
	return b.String()
}

// restored is a table rebuilt by the test applier.
type restored struct {
	columns []string
	rows    []string // encoded, sorted
	base    catalog.Basebackup
	deltas  int // changes applied on top of the basebackup
}

// restoreAt rebuilds a table as it was after the transaction that committed
// at upTo, from the newest basebackup that holds nothing committed after
// upTo and the deltas after that basebackup.
func restoreAt(t *testing.T, dir, table string, upTo uint64) restored {
	t.Helper()
	ctx := context.Background()
	cat := openArchive(t, dir)
	defer cat.Close()
	id := mustTableID(t, cat, table)
	bases, err := cat.Basebackups(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(math.MaxUint64)
	var v *int64
	if err := cat.DB().QueryRow(`SELECT min(commit_lsn) FROM tx WHERE commit_lsn > ?`, int64(upTo)).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != nil {
		next = uint64(*v)
	}
	for i := len(bases) - 1; i >= 0; i-- {
		if bases[i].LSN <= next {
			return applyFrom(t, cat, id, bases[i], upTo)
		}
	}
	t.Fatalf("no basebackup of %s restores LSN %X (basebackups: %d)", table, upTo, len(bases))
	return restored{}
}

// applyFrom loads a basebackup and applies the table's changes committed in
// [base.LSN, upTo].
func applyFrom(t *testing.T, cat *catalog.Catalog, tableID int64, base catalog.Basebackup, upTo uint64) restored {
	t.Helper()
	ctx := context.Background()
	versions, err := cat.SchemaVersions(ctx, tableID)
	if err != nil || len(versions) == 0 {
		t.Fatalf("schema of table %d: %v", tableID, err)
	}
	v := versions[len(versions)-1]
	a := newApplier(v.KeyColumns())
	for _, row := range readBasebackup(t, cat.Dir(), base) {
		a.insert(row)
	}
	res := restored{base: base}
	for _, c := range v.Columns {
		res.columns = append(res.columns, c.Name)
	}
	blobs, err := cat.Blobs(ctx, tableID, base.LSN, upTo)
	if err != nil {
		t.Fatal(err)
	}
	src := catalog.NewBlobSource(ctx, cat.Store(), cat.Keys())
	defer src.Close()
	for ch, err := range src.Changes(blobs, catalog.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if ch.CommitLSN < base.LSN || ch.CommitLSN > upTo {
			continue
		}
		if err := a.apply(ch); err != nil {
			t.Fatalf("apply change at %X to table %d: %v", ch.CommitLSN, tableID, err)
		}
		res.deltas++
	}
	res.rows = a.rows()
	return res
}

// applier keeps a table's rows by key; a key-less table (REPLICA IDENTITY
// FULL) is keyed by the whole row, so one key may hold several equal rows.
type applier struct {
	key   []int
	byKey map[string][][]*string
}

func newApplier(key []int) *applier {
	return &applier{key: key, byKey: map[string][][]*string{}}
}

func (a *applier) keyOf(row []*string) string {
	k := make([]*string, len(a.key))
	for i, c := range a.key {
		k[i] = row[c]
	}
	return encodeRow(k)
}

func (a *applier) insert(row []*string) {
	k := a.keyOf(row)
	a.byKey[k] = append(a.byKey[k], row)
}

func (a *applier) take(key string) ([]*string, error) {
	rows := a.byKey[key]
	if len(rows) == 0 {
		return nil, fmt.Errorf("no row with key %q", key)
	}
	row := rows[0]
	if len(rows) == 1 {
		delete(a.byKey, key)
	} else {
		a.byKey[key] = rows[1:]
	}
	return row, nil
}

func (a *applier) apply(ch catalog.Change) error {
	switch ch.Tag {
	case catalog.TagInsert:
		a.insert(texts(ch.New))
	case catalog.TagDelete:
		_, err := a.take(a.keyOf(texts(ch.Old)))
		return err
	case catalog.TagUpdate:
		newRow := texts(ch.New)
		from := newRow
		if ch.OldKind != catalog.OldNone {
			from = texts(ch.Old)
		}
		old, err := a.take(a.keyOf(from))
		if err != nil {
			return err
		}
		for i, v := range newRow {
			if v != nil && *v == unchanged {
				newRow[i] = old[i]
			}
		}
		a.insert(newRow)
	case catalog.TagTruncate:
		clear(a.byKey)
	}
	return nil
}

func (a *applier) rows() []string {
	var out []string
	for _, rows := range a.byKey {
		for _, r := range rows {
			out = append(out, encodeRow(r))
		}
	}
	slices.Sort(out)
	return out
}

// readBasebackup reads a basebackup's files after checking each one's
// checksum and length against the catalog, and decodes its COPY text rows.
func readBasebackup(t *testing.T, dir string, b catalog.Basebackup) [][]*string {
	t.Helper()
	var rows [][]*string
	for _, f := range b.Files() {
		raw := readBaseChunk(t, dir, f)
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(nil, 64<<20)
		n := 0
		for sc.Scan() {
			rows = append(rows, decodeCopyLine(sc.Text()))
			n++
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		if int64(n) != f.Rows {
			t.Fatalf("basebackup %s: %d rows, catalog says %d", f.Path, n, f.Rows)
		}
	}
	if int64(len(rows)) != b.Rows {
		t.Fatalf("basebackup %s: %d rows, catalog says %d", b.Path, len(rows), b.Rows)
	}
	return rows
}

// readBaseChunk reads one basebackup file's COPY text after checking its
// checksum and lengths against the catalog.
func readBaseChunk(t *testing.T, dir string, f catalog.Chunk) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, f.Path))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != f.Bytes || crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)) != f.CRC {
		t.Fatalf("basebackup %s: %d bytes, checksum does not match the catalog's", f.Path, len(data))
	}
	raw, err := io.ReadAll(lz4.NewReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatalf("basebackup %s: %v", f.Path, err)
	}
	if int64(len(raw)) != f.RawBytes {
		t.Fatalf("basebackup %s: %d bytes of COPY text, catalog says %d", f.Path, len(raw), f.RawBytes)
	}
	return raw
}

// checkBasebackupFile checks a basebackup's files' checksums and lengths
// against the catalog and returns how many lines of COPY text they hold,
// without decoding them.
func checkBasebackupFile(t *testing.T, dir string, b catalog.Basebackup) int64 {
	t.Helper()
	var lines int64
	for _, f := range b.Files() {
		lines += int64(bytes.Count(readBaseChunk(t, dir, f), []byte{'\n'}))
	}
	return lines
}

// decodeCopyLine splits one line of COPY TEXT format into values: tab
// separated, \N is NULL, backslash escapes as COPY writes them.
func decodeCopyLine(line string) []*string {
	var out []*string
	for _, field := range strings.Split(line, "\t") {
		if field == `\N` {
			out = append(out, nil)
			continue
		}
		var b strings.Builder
		for i := 0; i < len(field); i++ {
			c := field[i]
			if c != '\\' || i+1 == len(field) {
				b.WriteByte(c)
				continue
			}
			i++
			switch e := field[i]; e {
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'v':
				b.WriteByte('\v')
			default:
				b.WriteByte(e) // COPY writes only the escapes above and \\
			}
		}
		s := b.String()
		out = append(out, &s)
	}
	return out
}

// diskBytes is the disk space the archive's segment and basebackup files
// take (allocated blocks, as du counts them).
func diskBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	for _, sub := range []string{"segments", "base"} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			var st syscall.Stat_t
			if err := syscall.Stat(path, &st); err != nil {
				return err
			}
			n += st.Blocks * 512
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return n
}

// checkRestores compares the test applier's result, and when targetDSN is
// set also the restore package's, with rows captured from the source.
func checkRestores(t *testing.T, dir, targetDSN, table string, upTo uint64, want []string, what string) {
	t.Helper()
	got := restoreAt(t, dir, table, upTo)
	if !slices.Equal(got.rows, want) {
		t.Errorf("%s: %s restored from basebackup at %X plus %d changes differs from the source: %s",
			what, table, got.base.LSN, got.deltas, diffRows(got.rows, want))
	}
	if targetDSN == "" {
		return
	}
	if rows := restoreRows(t, dir, targetDSN, table, upTo, got.columns); !slices.Equal(rows, want) {
		t.Errorf("%s: %s restored by restore.Run differs from the source: %s", what, table, diffRows(rows, want))
	}
}

// diffRows describes how two sorted row lists differ.
func diffRows(got, want []string) string {
	var missing, extra []string
	i, j := 0, 0
	for i < len(got) || j < len(want) {
		switch {
		case j == len(want) || (i < len(got) && got[i] < want[j]):
			extra = append(extra, got[i])
			i++
		case i == len(got) || got[i] > want[j]:
			missing = append(missing, want[j])
			j++
		default:
			i++
			j++
		}
	}
	show := func(rows []string) string {
		if len(rows) > 5 {
			rows = append(rows[:5:5], "...")
		}
		return strings.ReplaceAll(strings.Join(rows, " | "), "\x1e", ",")
	}
	return fmt.Sprintf("%d rows vs %d; %d missing [%s], %d extra [%s]", len(got), len(want), len(missing), show(missing), len(extra), show(extra))
}

var restoreSeq atomic.Int64

// restoreRows restores a table as of upTo with the restore package into the
// database targetDSN and returns the restored rows, encoded and sorted.
func restoreRows(t *testing.T, dir, targetDSN, table string, upTo uint64, columns []string) []string {
	t.Helper()
	ctx := context.Background()
	cat := openArchive(t, dir)
	defer cat.Close()
	target, err := pgconn.ParseConfig(targetDSN)
	if err != nil {
		t.Fatal(err)
	}
	o := restore.NewOptions()
	o.Table = table
	o.LSN = upTo
	o.TargetConn = target
	o.TargetTable = fmt.Sprintf("restored_%d", restoreSeq.Add(1))
	o.Verify = true
	o.Logger = testLogger(t, "restore")
	if _, err := restore.Run(ctx, cat, o); err != nil {
		t.Fatalf("restore %s at %X: %v", table, upTo, err)
	}
	return sourceRows(t, targetDSN, o.TargetTable, columns)
}

// execEach runs each statement as its own transaction.
func execEach(t *testing.T, c *pgtest.Cluster, dsn string, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		c.Exec(t, dsn, s)
	}
}
