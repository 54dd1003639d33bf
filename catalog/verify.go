package catalog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/pierrec/lz4/v4"

	"lbt/storage"
)

// VerifyReport says what Verify checked and what it found wrong.
type VerifyReport struct {
	Segments    int
	Blobs       int
	Basebackups int
	BytesRead   int64
	// The segments whose blobs, and the basebackups whose rows, were read.
	SegmentsRead, BasebackupsRead int
	Problems                      []string
	Warnings                      []string // harmless findings: unreferenced files
	Chain                         ChainReport
}

// VerifyError reports an archive that failed verification.
type VerifyError struct{ Problems []string }

func (e *VerifyError) Error() string {
	more := ""
	if len(e.Problems) > 1 {
		more = fmt.Sprintf(" (and %d more problems)", len(e.Problems)-1)
	}
	return "archive damaged: " + e.Problems[0] + more
}

// VerificationFailed marks the error for the exit status of verification.
func (e *VerifyError) VerificationFailed() bool { return true }

// DataSubset chooses the files whose data Verify reads. The zero value
// reads none; All reads every one.
type DataSubset struct {
	All bool
	// Part of Parts: the files of one of Parts groups, by a hash of their
	// name, so that verifying 1/7 to 7/7 on seven days reads each file once.
	Part, Parts int
	// Fraction: each file with this probability (0 < Fraction <= 1), so
	// that daily runs cover everything over time.
	Fraction float64
	Rand     *rand.Rand // for Fraction; a random seed when nil
}

// ParseDataSubset reads restic's forms: "n/t" (part n of t) or "x%".
func ParseDataSubset(s string) (DataSubset, error) {
	bad := fmt.Errorf("read data subset %q: use n/t (part n of t, like 2/7) or a percentage (like 10%%)", s)
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(pct, 64)
		if err != nil || f <= 0 || f > 100 {
			return DataSubset{}, bad
		}
		return DataSubset{Fraction: f / 100}, nil
	}
	ns, ts, ok := strings.Cut(s, "/")
	n, err1 := strconv.Atoi(ns)
	t, err2 := strconv.Atoi(ts)
	if !ok || err1 != nil || err2 != nil || t < 1 || n < 1 || n > t {
		return DataSubset{}, bad
	}
	return DataSubset{Part: n, Parts: t}, nil
}

// picks says whether the file named name is in the subset.
func (d *DataSubset) picks(name string) bool {
	switch {
	case d.All:
		return true
	case d.Parts > 0:
		h := fnv.New32a()
		h.Write([]byte(name))
		return int(h.Sum32()%uint32(d.Parts)) == d.Part-1
	case d.Fraction > 0:
		if d.Rand == nil {
			d.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		}
		return d.Rand.Float64() < d.Fraction
	}
	return false
}

// Verify checks the archive: the catalog's own integrity, that every file it
// references is there and long enough, and that references agree. With
// readData it also reads every blob and basebackup, checks their checksums
// and decodes every record. It returns a *VerifyError listing the problems.
func (c *Catalog) Verify(ctx context.Context, readData bool) (VerifyReport, error) {
	return c.VerifyData(ctx, DataSubset{All: readData})
}

// VerifyData is Verify, reading the data of the segments and basebackups
// that subset picks. The catalog's full integrity check runs whenever any
// data is read.
func (c *Catalog) VerifyData(ctx context.Context, subset DataSubset) (VerifyReport, error) {
	return c.VerifyHead(ctx, subset, nil)
}

// VerifyHead is VerifyData that also checks that head, when not nil, is a
// link of the archive's hash chain, whose history is unchanged.
func (c *Catalog) VerifyHead(ctx context.Context, subset DataSubset, head *Head) (VerifyReport, error) {
	readData := subset.All || subset.Parts > 0 || subset.Fraction > 0
	var r VerifyReport
	problem := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }

	check := "quick_check"
	if readData {
		check = "integrity_check"
	}
	var res string
	if err := c.db.QueryRowContext(ctx, "PRAGMA "+check).Scan(&res); err != nil {
		return r, fmt.Errorf("verify catalog: %w", err)
	}
	if res != "ok" {
		problem("catalog %s: %s", CatalogFile, res)
	}

	segSize := map[int64]int64{}
	rows, err := c.db.QueryContext(ctx, `SELECT id, size FROM segment WHERE retired_at IS NULL ORDER BY id`)
	if err != nil {
		return r, fmt.Errorf("verify: %w", err)
	}
	for rows.Next() {
		var id, size int64
		if err := rows.Scan(&id, &size); err != nil {
			rows.Close()
			return r, fmt.Errorf("verify: %w", err)
		}
		segSize[id] = size
	}
	rows.Close()
	for id, size := range segSize {
		r.Segments++
		path := filepath.Join(c.dir, SegmentName(id))
		f, err := storage.OpenReaderAt(ctx, c.store, SegmentName(id))
		if err != nil {
			problem("segment %d: %v", id, err)
			continue
		}
		st, err := c.store.Stat(ctx, SegmentName(id))
		if err == nil && st.Size < size {
			problem("segment %s is %d bytes, the catalog references %d", path, st.Size, size)
		}
		if _, _, err := segmentStart(f, id); err != nil {
			problem("segment %s: %v", path, err)
		}
		f.Close()
	}

	src := NewBlobSource(ctx, c.store, c.keys)
	defer src.Close()
	var buf []byte
	blobs, err := chainBlobs(ctx, c.db, `1`)
	if err != nil {
		return r, fmt.Errorf("verify: %w", err)
	}
	sort.Slice(blobs, func(i, j int) bool {
		a, b := blobs[i], blobs[j]
		return a.SegmentID < b.SegmentID || a.SegmentID == b.SegmentID && a.Offset < b.Offset
	})
	readSeg := make(map[int64]bool)
	for id := range segSize {
		if readData && subset.picks(SegmentName(id)) {
			readSeg[id] = true
			r.SegmentsRead++
		}
	}
	for _, b := range blobs {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		r.Blobs++
		size, ok := segSize[b.SegmentID]
		if !ok {
			problem("blob %d is in segment %d, which the catalog does not list", b.ID, b.SegmentID)
			continue
		}
		if b.Offset+b.Length > size {
			problem("blob %d ends at byte %d of segment %d, beyond its recorded size %d", b.ID, b.Offset+b.Length, b.SegmentID, size)
			continue
		}
		if !readSeg[b.SegmentID] {
			continue
		}
		raw, err := src.Read(b, buf)
		r.BytesRead += b.Length
		if err != nil {
			problem("%v", err)
			continue
		}
		buf = raw
		if msg := checkRecords(b, raw); msg != "" {
			problem("blob %d in %s: %s", b.ID, SegmentName(b.SegmentID), msg)
		}
	}

	dangling, err := c.danglingTxTables(ctx)
	if err != nil {
		return r, fmt.Errorf("verify: %w", err)
	}
	if dangling > 0 {
		problem("%d transactions have changes to a table that none of its blobs holds", dangling)
	}

	bases, err := c.allBasebackups(ctx)
	if err != nil {
		return r, err
	}
	for _, b := range bases {
		r.Basebackups++
		read := readData && subset.picks(b.Path)
		if read {
			r.BasebackupsRead++
		}
		for _, f := range b.Files() {
			n, msg := c.checkBasebackup(ctx, f, read)
			r.BytesRead += n
			if msg != "" {
				problem("basebackup %s: %s", f.Path, msg)
			}
		}
		// The sidecar is what a catalog rebuilt from the files knows the
		// basebackup by.
		if _, err := c.store.Stat(ctx, SidecarName(b.Path)); err != nil {
			problem("basebackup %s has no sidecar %s: lbt repair --rebuild-catalog could not rebuild its catalog row (%v)", b.Path, SidecarName(b.Path), err)
		}
	}
	chain, problems, err := c.verifyChain(ctx, head)
	if err != nil {
		return r, err
	}
	r.Chain = chain
	r.Problems = append(r.Problems, problems...)
	r.Warnings = c.unreferencedFiles(ctx, segSize, bases)
	if len(r.Problems) > 0 {
		return r, &VerifyError{Problems: r.Problems}
	}
	return r, nil
}

// checkRecords decodes every record of a blob and checks it against the
// catalog's account of it.
func checkRecords(b Blob, raw []byte) string {
	rr := NewRecordReader(raw, b.Schema)
	n := 0
	var last uint64
	for {
		ch, ok, err := rr.Next()
		if err != nil {
			return err.Error()
		}
		if !ok {
			break
		}
		if ch.CommitLSN < b.FirstLSN || ch.CommitLSN > b.LastLSN || ch.CommitLSN < last {
			return fmt.Sprintf("record of transaction %X outside the blob's range %X-%X or out of order", ch.CommitLSN, b.FirstLSN, b.LastLSN)
		}
		last = ch.CommitLSN
		n++
	}
	if n != b.Changes {
		return fmt.Sprintf("holds %d changes, the catalog says %d", n, b.Changes)
	}
	return ""
}

func (c *Catalog) allBasebackups(ctx context.Context) ([]Basebackup, error) {
	refs, err := c.Tables(ctx)
	if err != nil {
		return nil, err
	}
	var out []Basebackup
	for _, t := range refs {
		bs, err := c.Basebackups(ctx, t.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, bs...)
	}
	return out, nil
}

// checkBasebackup checks a basebackup file's presence and size, and with
// readData its checksum, its lz4 frame and its row count.
func (c *Catalog) checkBasebackup(ctx context.Context, b Chunk, readData bool) (int64, string) {
	st, err := c.store.Stat(ctx, b.Path)
	if err != nil {
		return 0, err.Error()
	}
	if st.Size != b.Bytes {
		return 0, fmt.Sprintf("file is %d bytes, the catalog says %d", st.Size, b.Bytes)
	}
	if !readData {
		return 0, ""
	}
	f, err := c.store.ReadRange(ctx, b.Path, 0, -1)
	if err != nil {
		return 0, err.Error()
	}
	defer f.Close()
	// The checksum is of the file's bytes as stored: encrypted, in an
	// encrypted archive.
	h := crc32.New(castagnoli)
	plain, err := c.keys.Reader(io.TeeReader(f, h))
	if err != nil {
		return st.Size, err.Error()
	}
	zr := lz4.NewReader(plain)
	lines, err := countLines(zr)
	if err != nil {
		return st.Size, fmt.Sprintf("does not decompress: %v", err)
	}
	if h.Sum32() != b.CRC {
		return st.Size, fmt.Sprintf("checksum %08x, the catalog says %08x", h.Sum32(), b.CRC)
	}
	if lines != b.Rows {
		return st.Size, fmt.Sprintf("holds %d rows, the catalog says %d", lines, b.Rows)
	}
	return st.Size, ""
}

func countLines(r io.Reader) (int64, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var n int64
	buf := make([]byte, 1<<16)
	for {
		k, err := br.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// unreferencedFiles lists files in the archive that the catalog does not
// reference: left by a crash before their catalog rows were committed.
func (c *Catalog) unreferencedFiles(ctx context.Context, segs map[int64]int64, bases []Basebackup) []string {
	var out []string
	known := map[string]bool{}
	for id := range segs {
		known[SegmentName(id)] = true
	}
	for _, b := range bases {
		for _, f := range b.Files() {
			known[f.Path] = true
		}
		known[SidecarName(b.Path)] = true
	}
	for _, prefix := range []string{"segments/", "base/"} {
		list, _ := c.store.List(ctx, prefix) // a warning only: unreadable is not unreferenced
		for _, f := range list {
			if !known[f.Name] && !strings.HasSuffix(f.Name, ".partial") {
				out = append(out, "file not referenced by the catalog: "+f.Name)
			}
		}
	}
	return out
}

// danglingTxTables counts the transactions' table entries whose changes no
// blob of the table covers, leaving out history purged on purpose.
func (c *Catalog) danglingTxTables(ctx context.Context) (int, error) {
	type span struct{ first, last uint64 }
	blobs := map[int64][]span{} // by table, in first_lsn order
	rows, err := c.db.QueryContext(ctx, `SELECT table_id, first_lsn, last_lsn FROM blob ORDER BY table_id, first_lsn`)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var id, first, last int64
		if err := rows.Scan(&id, &first, &last); err != nil {
			rows.Close()
			return 0, err
		}
		blobs[id] = append(blobs[id], span{uint64(first), uint64(last)})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	purged, err := c.purgedLSNs(ctx)
	if err != nil {
		return 0, err
	}
	covered := func(table int64, lsn uint64) bool {
		spans := blobs[table]
		// The first blob whose last LSN reaches lsn.
		i := sort.Search(len(spans), func(i int) bool { return spans[i].last >= lsn })
		for ; i < len(spans) && spans[i].first <= lsn; i++ {
			if spans[i].last >= lsn {
				return true
			}
		}
		return false
	}
	rows, err = c.db.QueryContext(ctx, `SELECT commit_lsn, tables FROM tx ORDER BY commit_lsn`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var lsn int64
		var b []byte
		if err := rows.Scan(&lsn, &b); err != nil {
			return 0, err
		}
		tables, err := ParseTxTables(b)
		if err != nil {
			n++
			continue
		}
		for _, t := range tables {
			if t.Total() > 0 && uint64(lsn) >= purged[t.TableID] && !covered(t.TableID, uint64(lsn)) {
				n++
				break
			}
		}
	}
	return n, rows.Err()
}
