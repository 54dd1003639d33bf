package catalog_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/storage"
)

func TestBlob_RoundTrip(t *testing.T) {
	type tx struct {
		lsn     uint64
		xid     uint32
		changes []catalog.Change
	}
	long := bytes.Repeat([]byte("x'\"\\\x00é"), 5000)
	tests := []struct {
		name string
		txs  []tx
	}{
		{"one insert", []tx{{lsn: 100, xid: 7, changes: []catalog.Change{
			{Tag: catalog.TagInsert, New: catalog.Tuple{{Kind: 't', Data: []byte("42")}, {Kind: 'n'}}},
		}}}},
		{"update with toast and key change", []tx{{lsn: 1 << 40, xid: 4294967295, changes: []catalog.Change{
			{Tag: catalog.TagUpdate, OldKind: catalog.OldKey, Old: catalog.Tuple{{Kind: 't', Data: []byte("1")}},
				New: catalog.Tuple{{Kind: 't', Data: []byte("2")}, {Kind: 'u'}}},
			{Tag: catalog.TagUpdate, OldKind: catalog.OldNone, New: catalog.Tuple{{Kind: 't', Data: long}, {Kind: 't', Data: []byte{}}}},
		}}}},
		{"xid wraparound, delete, truncate", []tx{
			{lsn: 500, xid: 4294967290, changes: []catalog.Change{{Tag: catalog.TagDelete, OldKind: catalog.OldFull, Old: catalog.Tuple{{Kind: 't', Data: []byte("a")}}}}},
			{lsn: 900, xid: 3, changes: []catalog.Change{{Tag: catalog.TagTruncate, Truncate: 3}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw []byte
			var prevLSN uint64
			var prevXid uint32
			for _, x := range tt.txs {
				raw = catalog.AppendTx(raw, x.lsn, prevLSN, x.xid, prevXid)
				prevLSN, prevXid = x.lsn, x.xid
				for _, c := range x.changes {
					raw = catalog.AppendChange(raw, c)
				}
			}
			var enc catalog.BlobEncoder
			frame, h, err := enc.Encode(9, 3, tt.txs[0].lsn, raw)
			if err != nil {
				t.Fatal(err)
			}
			h2, got, err := catalog.DecodeBlob(frame, nil)
			if err != nil {
				t.Fatal(err)
			}
			if h2.CRC != h.CRC || h2.TableID != 9 || h2.Schema != 3 || !bytes.Equal(got, raw) {
				t.Fatalf("blob did not round-trip: %+v vs %+v", h2, h)
			}
			r := catalog.NewRecordReader(got, h2.Schema)
			for _, x := range tt.txs {
				for _, want := range x.changes {
					c, ok, err := r.Next()
					if err != nil || !ok {
						t.Fatalf("Next: ok=%v err=%v", ok, err)
					}
					if c.Tag != want.Tag || c.CommitLSN != x.lsn || c.Xid != x.xid || c.Schema != 3 ||
						c.OldKind != want.OldKind || c.Truncate != want.Truncate ||
						!tupleEqual(c.Old, want.Old) || !tupleEqual(c.New, want.New) {
						t.Fatalf("got %+v, want %+v (lsn %d xid %d)", c, want, x.lsn, x.xid)
					}
				}
			}
			if _, ok, err := r.Next(); ok || err != nil {
				t.Fatalf("expected end of blob, got ok=%v err=%v", ok, err)
			}
			// Any flipped byte is caught by the checksum.
			for _, i := range []int{0, 10, 33, len(frame) - 1} {
				bad := bytes.Clone(frame)
				bad[i] ^= 0x40
				if _, _, err := catalog.DecodeBlob(bad, nil); !errors.Is(err, catalog.ErrCorrupt) {
					t.Errorf("flipped byte %d: err = %v, want ErrCorrupt", i, err)
				}
			}
		})
	}
}

func tupleEqual(a, b catalog.Tuple) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Kind != b[i].Kind || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

func FuzzRecordReader(f *testing.F) {
	f.Add(catalog.AppendTuple(append(catalog.AppendTx(nil, 10, 0, 1, 0), 'I'), catalog.Tuple{{Kind: 't', Data: []byte("1")}}))
	f.Add([]byte{'T', 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := catalog.NewRecordReader(data, 1)
		for i := 0; i < 10000; i++ {
			_, ok, err := r.Next()
			if err != nil && !errors.Is(err, catalog.ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			if !ok {
				return
			}
		}
	})
}

func TestSegment_TornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	w, err := catalog.CreateSegment(storage.OS{}, dir, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	var enc catalog.BlobEncoder
	raw := catalog.AppendTuple(append(catalog.AppendTx(nil, 10, 0, 1, 0), 'I'), catalog.Tuple{{Kind: 't', Data: []byte("1")}})
	frame, _, _ := enc.Encode(1, 1, 10, raw)
	off, _, err := w.Append(frame)
	if err != nil || off != catalog.SegmentHeaderSize {
		t.Fatalf("append: off=%d err=%v", off, err)
	}
	good := w.Size()
	w.Append(frame[:20]) // a torn write the catalog never referenced
	w.Close()
	w, err = catalog.OpenSegment(storage.OS{}, dir, 1, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	st, _ := os.Stat(filepath.Join(dir, catalog.SegmentName(1)))
	if st.Size() != good {
		t.Fatalf("segment is %d bytes after reopen, want %d", st.Size(), good)
	}
	if _, err := catalog.OpenSegment(storage.OS{}, dir, 2, good, nil); err == nil {
		t.Fatal("opening a missing segment succeeded")
	}
}

func TestCatalog_CreateOpenForeign(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := catalog.Open(ctx, dir); !errors.Is(err, catalog.ErrNotArchive) {
		t.Fatalf("Open of empty dir: %v, want ErrNotArchive", err)
	}
	src := catalog.Source{SystemID: "123", Database: "app", ServerVersion: "15"}
	c, err := catalog.Create(ctx, dir, src)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ { // crosses the multi-row batch size
		w.AddRowKey(1, int64(i), uint64(i))
		w.AddTx(catalog.Tx{CommitLSN: uint64(i + 1), EndLSN: uint64(i + 2), Xid: uint32(i), CommitTime: time.Now()})
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	n, err := c.RowKeyCount(ctx)
	if err != nil || n != 1000 {
		t.Fatalf("the row-key index has %d pairs (%v), want 1000", n, err)
	}
	c.Close()
	c, err = catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CheckSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSource(ctx, catalog.Source{SystemID: "999", Database: "app"}); err == nil {
		t.Fatal("foreign source accepted")
	}
}
