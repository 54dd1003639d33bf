package catalog_test

import (
	"bytes"
	"testing"

	"lbt/catalog"
	"lbt/crypt"
	"lbt/storage"
)

// Whatever the crash point, what the segment writer reported durable is
// there after the crash, in a plaintext segment and in an encrypted one:
// the header (and the file's name, and an encrypted segment's wrapped key)
// once CreateSegment returns, as the catalog then records the segment; the
// blobs once Sync returns, as the catalog then references them; and each
// durable blob reads back.
func TestSegmentWriter_DurableAtEveryCrashPoint(t *testing.T) {
	keys, daemon := newKeys(t, t.TempDir(), "key.txt")
	var enc catalog.BlobEncoder
	frame, _, err := enc.Encode(1, 1, 0x100, []byte("T\x80\x02\x02I\x01\x03x"))
	if err != nil {
		t.Fatal(err)
	}
	frame = append([]byte(nil), frame...)
	for _, tc := range []struct {
		name        string
		write, read *crypt.Keys // nil: plaintext
	}{
		{"plaintext", nil, nil},
		{"encrypted", daemon, keys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type blob struct{ off, length int64 }
			run := func(m *storage.MemFS) (created bool, synced int64, durable []blob) {
				w, err := catalog.CreateSegment(m, "/a", 1, tc.write)
				if err != nil {
					return false, 0, nil
				}
				defer w.Close()
				synced = w.Size()
				var pending []blob
				for i := 0; i < 3; i++ {
					off, length, err := w.Append(frame)
					if err != nil {
						return true, synced, durable
					}
					pending = append(pending, blob{off, length})
					if err := w.Sync(); err != nil {
						return true, synced, durable
					}
					synced, durable = w.Size(), append(durable, pending...)
					pending = nil
				}
				return true, synced, durable
			}
			probe := storage.NewCrashableMem()
			run(probe)
			for at := int64(0); at <= probe.Ops(); at++ {
				m := storage.NewCrashableMem()
				m.FailAfter(at)
				created, synced, durable := run(m)
				m.Crash()
				if !created {
					continue
				}
				w, err := catalog.OpenSegment(m, "/a", 1, synced, tc.read)
				if err != nil {
					t.Fatalf("crash after operation %d: %v", at, err)
				}
				w.Close()
				f, err := m.Open("/a/" + catalog.SegmentName(1))
				if err != nil {
					t.Fatal(err)
				}
				sr, err := catalog.OpenSegmentReader(f, 1, tc.read)
				if err != nil {
					t.Fatalf("crash after operation %d: %v", at, err)
				}
				for _, b := range durable {
					if _, got, _, err := sr.ReadBlob(b.off, b.length, nil, nil); err != nil || !bytes.Equal(got, frame) {
						t.Fatalf("crash after operation %d: blob at %d: %v", at, b.off, err)
					}
				}
				f.Close()
			}
		})
	}
}
