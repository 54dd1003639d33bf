package catalog_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"lbt/catalog"
	"lbt/crypt"
	"lbt/storage"
)

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
	keys, err := crypt.New(nil, vectorIdentity)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(vectorSegment)
	if err != nil {
		t.Fatal(err)
	}
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

// FuzzOpenSegmentReader feeds the segment header and blob record decoders
// arbitrary files, encrypted and plaintext: they fail cleanly, and open
// only the vector's blob.
func FuzzOpenSegmentReader(f *testing.F) {
	keys, err := crypt.New(nil, vectorIdentity)
	if err != nil {
		f.Fatal(err)
	}
	vector, err := os.ReadFile(vectorSegment)
	if err != nil {
		f.Fatal(err)
	}
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
