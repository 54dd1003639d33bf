package catalog_test

import (
	"testing"

	"lbt/catalog"
	"lbt/storage"
)

// Whatever the crash point, what the segment writer reported durable is
// there after the crash: the header (and the file's name) once
// CreateSegment returns, as the catalog then records the segment; the blobs
// once Sync returns, as the catalog then references them.
func TestSegmentWriter_DurableAtEveryCrashPoint(t *testing.T) {
	var enc catalog.BlobEncoder
	frame, _, err := enc.Encode(1, 1, 0x100, []byte("T\x80\x02\x02I\x01\x03x"))
	if err != nil {
		t.Fatal(err)
	}
	frame = append([]byte(nil), frame...)
	run := func(m *storage.MemFS) (created bool, synced int64) {
		w, err := catalog.CreateSegment(m, "/a", 1)
		if err != nil {
			return false, 0
		}
		defer w.Close()
		for i := 0; i < 3; i++ {
			if _, err := w.Append(frame); err != nil {
				return true, synced
			}
			if err := w.Sync(); err != nil {
				return true, synced
			}
			synced = w.Size()
		}
		return true, synced
	}
	probe := storage.NewCrashableMem()
	run(probe)
	for at := int64(0); at <= probe.Ops(); at++ {
		m := storage.NewCrashableMem()
		m.FailAfter(at)
		created, synced := run(m)
		m.Crash()
		if !created {
			continue
		}
		w, err := catalog.OpenSegment(m, "/a", 1, max(synced, catalog.SegmentHeaderSize))
		if err != nil {
			t.Fatalf("crash after operation %d: %v", at, err)
		}
		w.Close()
	}
}
