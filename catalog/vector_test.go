package catalog_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/storage"
)

// docs/FORMAT.md's test vector is the segment this code writes for one
// transaction that inserted one row: a reader written from the document
// alone can check itself against it, and a change of the format that the
// document does not follow fails here.
func TestFormatDoc_SegmentTestVector(t *testing.T) {
	const commitLSN, endLSN, xid = 0x16B374D848, 0x16B374D880, 1000
	commitTime := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

	// The records of one blob: a transaction marker (absolute deltas, the
	// first of the blob) and an insert of (1, 'ab').
	rec := []byte{catalog.TagTx}
	rec = binary.AppendUvarint(rec, commitLSN)
	rec = binary.AppendVarint(rec, xid)
	rec = append(rec, catalog.TagInsert, 2, 2+1, '1', 2+2, 'a', 'b')

	fsys := storage.NewCrashableMem()
	w, err := catalog.CreateSegment(fsys, "/archive", 1)
	if err != nil {
		t.Fatal(err)
	}
	var enc catalog.BlobEncoder
	frame, _, err := enc.Encode(1, 1, commitLSN, rec)
	if err != nil {
		t.Fatal(err)
	}
	off, err := w.Append(frame)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := catalog.AppendMetadata(nil, &catalog.Metadata{
		Position: &catalog.MetaPosition{Epoch: 1, EndLSN: endLSN, At: commitTime},
		Blobs:    []catalog.MetaBlob{{Offset: off, ID: 1}},
		Txs:      []catalog.MetaTx{{CommitLSN: commitLSN, EndLSN: endLSN, Xid: xid, CommitTime: commitTime}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mframe, _, err := enc.Encode(catalog.MetaTableID, 0, commitLSN, meta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(mframe); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	f, err := fsys.Open("/archive/" + catalog.SegmentName(1))
	if err != nil {
		t.Fatal(err)
	}
	written, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}

	// What the document says the data blob holds.
	_, _, raw, err := catalog.ReadBlob(f, off, int64(len(frame)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch, ok, err := catalog.NewRecordReader(raw, 1).Next()
	if err != nil || !ok || ch.Tag != catalog.TagInsert || ch.CommitLSN != commitLSN || ch.Xid != xid ||
		len(ch.New) != 2 || string(ch.New[0].Data) != "1" || string(ch.New[1].Data) != "ab" {
		t.Fatalf("the vector's blob reads as %+v (%v, %v)", ch, ok, err)
	}

	doc, err := os.ReadFile("../docs/FORMAT.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- segment test vector: begin -->\n```\n", "```\n<!-- segment test vector: end -->"
	i, j := strings.Index(string(doc), begin), strings.Index(string(doc), end)
	if i < 0 || j < i {
		t.Fatalf("docs/FORMAT.md has no segment test vector between %q and %q", begin, end)
	}
	if got, want := hexDump(written), string(doc[i+len(begin):j]); got != want {
		t.Errorf("docs/FORMAT.md's test vector is not what lbt writes; lbt writes:\n%s", got)
	}
}

// hexDump formats b as hexdump -C does, less its final offset line.
func hexDump(b []byte) string {
	var s strings.Builder
	for off := 0; off < len(b); off += 16 {
		line := b[off:min(off+16, len(b))]
		fmt.Fprintf(&s, "%08x ", off)
		for k := 0; k < 16; k++ {
			if k == 8 {
				s.WriteByte(' ')
			}
			if k < len(line) {
				fmt.Fprintf(&s, " %02x", line[k])
			} else {
				s.WriteString("   ")
			}
		}
		s.WriteString("  |")
		for _, c := range line {
			if c < 0x20 || c > 0x7e {
				c = '.'
			}
			s.WriteByte(c)
		}
		s.WriteString("|\n")
	}
	return s.String()
}
