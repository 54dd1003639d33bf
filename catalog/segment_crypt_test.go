package catalog_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"lbt/catalog"
	"lbt/crypt"
	"lbt/storage"
)

// newKeys writes a fresh identity file into dir and returns keys with its
// recipient and identity, and keys with the recipient only (a daemon's).
func newKeys(t *testing.T, dir, name string) (full, writeOnly *crypt.Keys) {
	t.Helper()
	id, rcpt, err := crypt.Generate(false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if full, err = crypt.New([]string{rcpt}, path); err != nil {
		t.Fatal(err)
	}
	if writeOnly, err = crypt.New([]string{rcpt}, ""); err != nil {
		t.Fatal(err)
	}
	return full, writeOnly
}

// TestSegment_Encrypted writes an encrypted segment as the daemon does, blob
// by blob with a torn tail, and reads it back blob by blob.
func TestSegment_Encrypted(t *testing.T) {
	dir := t.TempDir()
	keys, daemon := newKeys(t, t.TempDir(), "key.txt")
	other, _ := newKeys(t, t.TempDir(), "other.txt")
	w, err := catalog.CreateSegment(storage.OS{}, dir, 1, daemon)
	if err != nil {
		t.Fatal(err)
	}
	var enc catalog.BlobEncoder
	markers := []string{"3f6e0c1a9b2d4e5f", "a1b2c3d4e5f60718", "0918273645aabbcc"}
	var blobs []catalog.Blob
	var raws [][]byte
	for i, m := range markers {
		raw := catalog.AppendTuple(append(catalog.AppendTx(nil, uint64(10+i), 0, uint32(i), 0), 'I'), catalog.Tuple{{Kind: 't', Data: []byte(m)}})
		frame, h, err := enc.Encode(1, 1, uint64(10+i), raw)
		if err != nil {
			t.Fatal(err)
		}
		off, length, err := w.Append(frame)
		if err != nil {
			t.Fatal(err)
		}
		if length != int64(len(frame)+crypt.RecordOverhead) {
			t.Fatalf("blob %d is %d bytes on disk, frame %d", i, length, len(frame))
		}
		blobs = append(blobs, catalog.Blob{ID: int64(i + 1), TableID: 1, SegmentID: 1, Offset: off, Length: length, CRC: h.CRC, Schema: 1})
		raws = append(raws, bytes.Clone(raw))
	}
	good := w.Size()
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	frame, _, _ := enc.Encode(1, 1, 99, []byte("Ixx torn"))
	w.Append(frame[:20]) // a torn write the catalog never referenced
	w.Close()

	path := filepath.Join(dir, catalog.SegmentName(1))
	data, _ := os.ReadFile(path)
	for _, m := range markers {
		if bytes.Contains(data, []byte(m)) {
			t.Fatalf("marker %s in the encrypted segment", m)
		}
	}

	// The daemon, with the recipients only, cuts the tail and is told it
	// cannot append.
	if _, err := catalog.OpenSegment(storage.OS{}, dir, 1, good, daemon); !errors.Is(err, crypt.ErrNoKey) {
		t.Fatalf("open without identity: %v", err)
	}
	if st, _ := os.Stat(path); st.Size() != good {
		t.Fatalf("segment is %d bytes, want the tail cut to %d", st.Size(), good)
	}
	// With the identity it appends after the last blob.
	w, err = catalog.OpenSegment(storage.OS{}, dir, 1, good, keys)
	if err != nil {
		t.Fatal(err)
	}
	if off, _, err := w.Append(frame); err != nil || off != good {
		t.Fatalf("append after reopen at %d: %v", off, err)
	}
	w.Close()

	// Any one blob reads alone: the last one first.
	src := catalog.NewBlobSource(context.Background(), storage.NewLocal(storage.OS{}, dir), keys)
	defer src.Close()
	for _, i := range []int{2, 0, 1} {
		got, err := src.Read(blobs[i], nil)
		if err != nil || !bytes.Equal(got, raws[i]) {
			t.Fatalf("blob %d: %v", i, err)
		}
	}

	for name, c := range map[string]struct {
		keys *crypt.Keys
		want error
	}{
		"wrong identity":                {other, crypt.ErrNoKey},
		"no identity":                   {daemon, crypt.ErrNoKey},
		"read as a plaintext archive's": {nil, crypt.ErrCorrupt},
	} {
		src := catalog.NewBlobSource(context.Background(), storage.NewLocal(storage.OS{}, dir), c.keys)
		_, err := src.Read(blobs[0], nil)
		src.Close()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}

	// A flipped byte in one blob fails that blob only.
	data, _ = os.ReadFile(path)
	data[blobs[1].Offset+40] ^= 1
	os.WriteFile(path, data, 0o600)
	src2 := catalog.NewBlobSource(context.Background(), storage.NewLocal(storage.OS{}, dir), keys)
	defer src2.Close()
	if _, err := src2.Read(blobs[1], nil); !errors.Is(err, crypt.ErrCorrupt) {
		t.Fatalf("flipped byte: %v", err)
	}
	if _, err := src2.Read(blobs[2], nil); err != nil {
		t.Fatalf("the blob after a damaged one: %v", err)
	}
	// A blob's record moved to another's place does not open there.
	moved := blobs[0]
	moved.Offset = blobs[2].Offset
	moved.Length = blobs[2].Length
	if _, err := src2.Read(moved, nil); err == nil {
		t.Fatal("a blob read at another's offset")
	}
}

// TestSegment_EncryptedLeftover: a bare encrypted header is what a crash
// before the segment's catalog row leaves, and is removed; a plaintext
// segment does not read as an encrypted archive's.
func TestSegment_EncryptedLeftover(t *testing.T) {
	dir := t.TempDir()
	keys, daemon := newKeys(t, t.TempDir(), "key.txt")
	w, err := catalog.CreateSegment(storage.OS{}, dir, 3, daemon)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := catalog.CheckUnknownSegments(storage.OS{}, dir, 3); err != nil {
		t.Fatalf("a bare encrypted header counts as data: %v", err)
	}
	if err := catalog.RemoveSegmentLeftover(storage.OS{}, dir, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, catalog.SegmentName(3))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover not removed: %v", err)
	}
	p, err := catalog.CreateSegment(storage.OS{}, dir, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if _, err := catalog.OpenSegment(storage.OS{}, dir, 4, catalog.SegmentHeaderSize, keys); !errors.Is(err, catalog.ErrCorrupt) {
		t.Fatalf("plaintext segment in an encrypted archive: %v", err)
	}
}

// BenchmarkBlobSourceRead reads the same blobs from a plaintext and from an
// encrypted segment: the cost encryption adds to a restore's reading (the
// ratio of the two, measured in one run).
func BenchmarkBlobSourceRead(b *testing.B) {
	keys, _ := newKeysB(b)
	var enc catalog.BlobEncoder
	var raw []byte
	for i := 0; len(raw) < 256<<10; i++ {
		raw = catalog.AppendTuple(append(raw, 'I'), catalog.Tuple{{Kind: 't', Data: fmt.Appendf(nil, "%d", i)},
			{Kind: 't', Data: fmt.Appendf(nil, "%d|%d|account %d|2026-12-02 13:%02d:00", i%1000, i*7, i, i%60)}})
	}
	for _, c := range []struct {
		name string
		keys *crypt.Keys
	}{{"plaintext", nil}, {"encrypted", keys}} {
		dir := b.TempDir()
		w, err := catalog.CreateSegment(storage.OS{}, dir, 1, c.keys)
		if err != nil {
			b.Fatal(err)
		}
		var blobs []catalog.Blob
		for i := range 16 {
			frame, h, _ := enc.Encode(1, 1, uint64(i), raw)
			off, length, err := w.Append(frame)
			if err != nil {
				b.Fatal(err)
			}
			blobs = append(blobs, catalog.Blob{ID: int64(i), TableID: 1, SegmentID: 1, Offset: off, Length: length, CRC: h.CRC, Schema: 1})
		}
		w.Close()
		b.Run(c.name, func(b *testing.B) {
			src := catalog.NewBlobSource(context.Background(), storage.NewLocal(storage.OS{}, dir), c.keys)
			defer src.Close()
			b.SetBytes(int64(len(raw) * len(blobs)))
			var buf []byte
			for b.Loop() {
				for _, bl := range blobs {
					if buf, err = src.Read(bl, buf); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func newKeysB(b *testing.B) (*crypt.Keys, string) {
	id, rcpt, err := crypt.Generate(false)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "key.txt")
	os.WriteFile(path, []byte(id+"\n"), 0o600)
	k, err := crypt.New([]string{rcpt}, path)
	if err != nil {
		b.Fatal(err)
	}
	return k, rcpt
}

var updateVector = flag.Bool("update-vector", false, "write a new testdata/encrypted-segment.lbs (its bytes are random: docs/FORMAT.md quotes them)")

// The test vector of docs/FORMAT.md, "Format 4": an encrypted segment with
// one blob, and the identity (a test key, published) that opens it.
const (
	vectorIdentity = "testdata/vector-identity.txt"
	vectorSegment  = "testdata/encrypted-segment.lbs"
)

func vectorBlob(t *testing.T) []byte {
	var enc catalog.BlobEncoder
	raw := catalog.AppendTuple(append(catalog.AppendTx(nil, 0x16B374D848, 0, 7, 0), 'I'), catalog.Tuple{{Kind: 't', Data: []byte("42")}, {Kind: 't', Data: []byte("hello")}})
	frame, _, err := enc.Encode(1, 1, 0x16B374D848, raw)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(frame)
}

func TestSegment_EncryptedVector(t *testing.T) {
	if *updateVector {
		id, rcpt, _ := crypt.Generate(false)
		os.WriteFile(vectorIdentity, []byte("# the test key of docs/FORMAT.md's vector: public, never use it\n"+id+"\n"), 0o600)
		k, err := crypt.New([]string{rcpt}, "")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		w, err := catalog.CreateSegment(storage.OS{}, dir, 1, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.Append(vectorBlob(t)); err != nil {
			t.Fatal(err)
		}
		w.Close()
		data, _ := os.ReadFile(filepath.Join(dir, catalog.SegmentName(1)))
		os.WriteFile(vectorSegment, data, 0o644)
		t.Logf("vector:\n%s", hex.Dump(data))
	}
	keys, data := readVector(t)
	sr, err := catalog.OpenSegmentReader(bytes.NewReader(data), 1, keys)
	if err != nil {
		t.Fatal(err)
	}
	want := vectorBlob(t)
	off, length := sr.Start(), int64(len(data))-sr.Start()
	if length != int64(len(want)+crypt.RecordOverhead) {
		t.Fatalf("record of %d bytes, want %d", length, len(want)+crypt.RecordOverhead)
	}
	_, frame, _, err := sr.ReadBlob(off, length, nil, nil)
	if err != nil || !bytes.Equal(frame, want) {
		t.Fatalf("vector blob: %v\n got %x\nwant %x", err, frame, want)
	}
}

// readVector returns the keys of the vector's identity and the vector
// segment's bytes.
func readVector(tb testing.TB) (*crypt.Keys, []byte) {
	tb.Helper()
	keys, err := crypt.New(nil, vectorIdentity)
	if err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(vectorSegment)
	if err != nil {
		tb.Fatal(err)
	}
	return keys, data
}

// FuzzOpenSegmentReader feeds the segment header and blob record decoders
// arbitrary files, encrypted and plaintext: they fail cleanly, and open
// only the vector's blob.
func FuzzOpenSegmentReader(f *testing.F) {
	keys, vector := readVector(f)
	f.Add(vector)
	f.Add(vector[:30])
	f.Add([]byte("LBTSEG\x00\x02\x01\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"))
	f.Add([]byte("LBTSEG\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, k := range []*crypt.Keys{keys, nil} {
			sr, err := catalog.OpenSegmentReader(bytes.NewReader(data), 1, k)
			if err != nil {
				continue
			}
			if sr.Start() > int64(len(data)) {
				t.Fatalf("blobs start at %d of a %d-byte file", sr.Start(), len(data))
			}
			sr.ReadBlob(sr.Start(), int64(len(data))-sr.Start(), nil, nil)
		}
	})
}
