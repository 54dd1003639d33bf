package catalog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"

	"github.com/pierrec/lz4/v4"

	"lbt/crypt"
	"lbt/storage"
)

// Segment and blob framing; see docs/FORMAT.md. Every number is little-endian.
const (
	segmentMagic          = "LBTSEG\x00\x01"
	encryptedSegmentMagic = "LBTSEG\x00\x02" // followed by a key block: docs/FORMAT.md
	SegmentHeaderSize     = 16               // magic, segment id (u64); more when encrypted

	blobMagic      = "LBTB"
	blobVersion    = 1
	BlobHeaderSize = 36

	compressionNone = 0
	compressionLZ4  = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BlobHeader describes one blob: a run of consecutive transactions' changes to
// one table.
type BlobHeader struct {
	TableID  int64
	Schema   int    // schema version in force at the first record
	RawLen   int    // length of the decompressed records
	CompLen  int    // length of the payload after the header
	FirstLSN uint64 // commit LSN of the first transaction in the blob
	CRC      uint32 // CRC-32C of the header (CRC field excluded) and the payload
	lz4      bool
}

// BlobEncoder compresses and frames blobs. It keeps buffers between calls;
// it is not safe for concurrent use.
type BlobEncoder struct {
	c   lz4.Compressor
	out []byte
}

// Encode frames raw records as a blob. The result is valid until the next
// call of Encode.
func (e *BlobEncoder) Encode(tableID int64, schema int, firstLSN uint64, raw []byte) ([]byte, BlobHeader, error) {
	need := BlobHeaderSize + lz4.CompressBlockBound(len(raw))
	if cap(e.out) < need {
		e.out = make([]byte, need)
	}
	out := e.out[:need]
	n, err := e.c.CompressBlock(raw, out[BlobHeaderSize:])
	if err != nil {
		return nil, BlobHeader{}, fmt.Errorf("compress blob: %w", err)
	}
	h := BlobHeader{TableID: tableID, Schema: schema, RawLen: len(raw), FirstLSN: firstLSN, lz4: true}
	if n == 0 || n >= len(raw) { // incompressible: store as is
		n = copy(out[BlobHeaderSize:], raw)
		h.lz4 = false
	}
	h.CompLen = n
	out = out[:BlobHeaderSize+n]
	h.putHeader(out)
	h.CRC = blobCRC(out)
	binary.LittleEndian.PutUint32(out[32:36], h.CRC)
	return out, h, nil
}

func (h *BlobHeader) putHeader(b []byte) {
	copy(b[0:4], blobMagic)
	b[4] = blobVersion
	b[5] = compressionNone
	if h.lz4 {
		b[5] = compressionLZ4
	}
	binary.LittleEndian.PutUint16(b[6:8], 0)
	binary.LittleEndian.PutUint32(b[8:12], uint32(h.TableID))
	binary.LittleEndian.PutUint32(b[12:16], uint32(h.Schema))
	binary.LittleEndian.PutUint32(b[16:20], uint32(h.RawLen))
	binary.LittleEndian.PutUint32(b[20:24], uint32(h.CompLen))
	binary.LittleEndian.PutUint64(b[24:32], h.FirstLSN)
}

func blobCRC(frame []byte) uint32 {
	crc := crc32.Update(0, castagnoli, frame[:32])
	return crc32.Update(crc, castagnoli, frame[BlobHeaderSize:])
}

// ParseBlobHeader decodes and checks the fixed header of a blob.
func ParseBlobHeader(b []byte) (BlobHeader, error) {
	var h BlobHeader
	if len(b) < BlobHeaderSize || string(b[0:4]) != blobMagic {
		return h, fmt.Errorf("%w: no blob header", ErrCorrupt)
	}
	if b[4] != blobVersion {
		return h, fmt.Errorf("%w: blob format version %d is not supported by this lbt", ErrCorrupt, b[4])
	}
	switch b[5] {
	case compressionNone:
	case compressionLZ4:
		h.lz4 = true
	default:
		return h, fmt.Errorf("%w: unknown blob compression %d", ErrCorrupt, b[5])
	}
	h.TableID = int64(binary.LittleEndian.Uint32(b[8:12]))
	h.Schema = int(binary.LittleEndian.Uint32(b[12:16]))
	h.RawLen = int(binary.LittleEndian.Uint32(b[16:20]))
	h.CompLen = int(binary.LittleEndian.Uint32(b[20:24]))
	h.FirstLSN = binary.LittleEndian.Uint64(b[24:32])
	h.CRC = binary.LittleEndian.Uint32(b[32:36])
	return h, nil
}

// DecodeBlob checks a framed blob's checksum and returns its header and
// decompressed records, reusing buf when it is large enough.
func DecodeBlob(frame, buf []byte) (BlobHeader, []byte, error) {
	h, err := ParseBlobHeader(frame)
	if err != nil {
		return h, nil, err
	}
	if len(frame) != BlobHeaderSize+h.CompLen {
		return h, nil, fmt.Errorf("%w: blob is %d bytes, header says %d", ErrCorrupt, len(frame), BlobHeaderSize+h.CompLen)
	}
	if got := blobCRC(frame); got != h.CRC {
		return h, nil, fmt.Errorf("%w: blob checksum %08x, expected %08x", ErrCorrupt, got, h.CRC)
	}
	payload := frame[BlobHeaderSize:]
	if !h.lz4 {
		if h.RawLen != h.CompLen {
			return h, nil, fmt.Errorf("%w: uncompressed blob of %d bytes, header says %d", ErrCorrupt, h.CompLen, h.RawLen)
		}
		return h, payload, nil
	}
	// An LZ4 block expands at most 255 times (a match length byte of 255
	// per input byte): a header claiming more is corrupt, and is not
	// allowed to make the reader allocate gigabytes.
	if h.RawLen > 255*h.CompLen {
		return h, nil, fmt.Errorf("%w: blob of %d bytes cannot decompress to %d", ErrCorrupt, h.CompLen, h.RawLen)
	}
	// Encode stores empty records raw; and the LZ4 decoder faults (SIGSEGV,
	// not a panic) when given no room to decompress into.
	if h.RawLen == 0 {
		return h, nil, fmt.Errorf("%w: compressed blob of no records", ErrCorrupt)
	}
	if cap(buf) < h.RawLen {
		buf = make([]byte, h.RawLen)
	}
	buf = buf[:h.RawLen]
	n, err := lz4.UncompressBlock(payload, buf)
	if err != nil || n != h.RawLen {
		return h, nil, fmt.Errorf("%w: blob does not decompress to %d bytes: %v", ErrCorrupt, h.RawLen, err)
	}
	return h, buf, nil
}

// SegmentName is the archive-relative name of segment id.
func SegmentName(id int64) string {
	return fmt.Sprintf("segments/%08d.lbs", id)
}

// SegmentWriter appends blobs to the active segment, a file of an FS.
type SegmentWriter struct {
	ID     int64
	f      storage.File
	size   int64
	key    *crypt.BlobKey // nil: a plaintext segment
	record []byte
}

// CreateSegment creates segment id in the archive dir on fsys, writes its
// header and makes the file and its directory entry durable: the catalog
// records the segment right after this (docs/FORMAT.md, write ordering).
// With keys (an encrypted archive) its blobs are sealed under a new data
// key wrapped to keys' recipients.
func CreateSegment(fsys storage.FS, dir string, id int64, keys *crypt.Keys) (*SegmentWriter, error) {
	path := filepath.Join(dir, SegmentName(id))
	// The header first: wrapping an encrypted segment's data key takes a
	// while, and a crash between creating the file and writing the header
	// leaves an empty file (RemoveSegmentLeftover removes it).
	hdr, key, err := segmentHeader(id, keys)
	if err != nil {
		return nil, fmt.Errorf("create segment %d: %w", id, err)
	}
	if err := fsys.MkdirAll(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	f, err := fsys.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	w, err := writeHeader(f, id, hdr, key)
	if err == nil {
		err = w.Sync()
	}
	if err == nil {
		err = fsys.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("create segment %s: %w", path, err)
	}
	return w, nil
}

// segmentHeader is the header of a new segment: for an encrypted archive
// (keys not nil) with a new data key, which it returns.
func segmentHeader(id int64, keys *crypt.Keys) ([]byte, *crypt.BlobKey, error) {
	hdr := make([]byte, SegmentHeaderSize, SegmentHeaderSize+4)
	copy(hdr, segmentMagic)
	binary.LittleEndian.PutUint64(hdr[8:], uint64(id))
	if keys == nil {
		return hdr, nil, nil
	}
	block, key, err := keys.NewBlobKey(id)
	if err != nil {
		return nil, nil, err
	}
	copy(hdr, encryptedSegmentMagic)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(block)))
	return append(hdr, block...), key, nil
}

// StartSegment writes the header of segment id into f, which is empty,
// for a segment built elsewhere (a purge's rewrite, in tmp/) and stored
// whole once complete. With keys the segment is encrypted, as
// CreateSegment's, and the writer keeps its data key.
func StartSegment(f storage.File, id int64, keys *crypt.Keys) (*SegmentWriter, error) {
	hdr, key, err := segmentHeader(id, keys)
	if err != nil {
		return nil, fmt.Errorf("create segment %d: %w", id, err)
	}
	return writeHeader(f, id, hdr, key)
}

func writeHeader(f storage.File, id int64, hdr []byte, key *crypt.BlobKey) (*SegmentWriter, error) {
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("create segment %d: %w", id, err)
	}
	return &SegmentWriter{ID: id, f: f, size: int64(len(hdr)), key: key}, nil
}

// OpenSegment opens segment id of the archive dir on fsys for appending
// after its last byte that the catalog references, cutting off a torn or
// unreferenced tail beyond size. An encrypted segment's data key is
// unwrapped with keys' identities: a daemon that holds only the recipients
// gets an error for which errors.Is(err, crypt.ErrNoKey) holds, once the
// tail is cut, and seals the segment instead of appending to it.
func OpenSegment(fsys storage.FS, dir string, id, size int64, keys *crypt.Keys) (*SegmentWriter, error) {
	path := filepath.Join(dir, SegmentName(id))
	f, err := fsys.OpenRW(path)
	if err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	if _, _, err := segmentStart(f, id); err != nil {
		f.Close()
		return nil, fmt.Errorf("open segment %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open segment: %w", err)
	}
	if st.Size() < size {
		f.Close()
		return nil, fmt.Errorf("open segment %s: %w: %d bytes on disk, the catalog references %d", path, ErrCorrupt, st.Size(), size)
	}
	if st.Size() > size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("cut torn tail of %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("cut torn tail of %s: %w", path, err)
		}
	}
	sr, err := OpenSegmentReader(f, id, keys)
	if err != nil {
		f.Close()
		if errors.Is(err, crypt.ErrNoKey) {
			return nil, err
		}
		return nil, fmt.Errorf("open segment %s: %w", path, err)
	}
	return &SegmentWriter{ID: id, f: f, size: size, key: sr.key}, nil
}

// SegmentReader reads the blobs of one segment file, opening each sealed
// blob of an encrypted segment alone.
type SegmentReader struct {
	r      io.ReaderAt
	id     int64
	start  int64          // offset of the first blob
	key    *crypt.BlobKey // nil: a plaintext segment
	record []byte
}

// segmentStart reads the header of segment id and returns the offset of its
// first blob and, for an encrypted segment, its key block.
func segmentStart(r io.ReaderAt, id int64) (int64, []byte, error) {
	hdr := make([]byte, SegmentHeaderSize+4)
	n, err := r.ReadAt(hdr, 0)
	if n < SegmentHeaderSize {
		return 0, nil, fmt.Errorf("%w: no segment header: %v", ErrCorrupt, err)
	}
	if got := int64(binary.LittleEndian.Uint64(hdr[8:])); got != id {
		return 0, nil, fmt.Errorf("%w: segment header says id %d, expected %d", ErrCorrupt, got, id)
	}
	switch string(hdr[:8]) {
	case segmentMagic:
		return SegmentHeaderSize, nil, nil
	case encryptedSegmentMagic:
	default:
		return 0, nil, fmt.Errorf("%w: not an lbt segment", ErrCorrupt)
	}
	if n < len(hdr) {
		return 0, nil, fmt.Errorf("%w: encrypted segment header cut short", ErrCorrupt)
	}
	blockLen := int64(binary.LittleEndian.Uint32(hdr[SegmentHeaderSize:]))
	if blockLen > maxKeyBlock {
		return 0, nil, fmt.Errorf("%w: segment key block of %d bytes", ErrCorrupt, blockLen)
	}
	block := make([]byte, blockLen)
	if _, err := r.ReadAt(block, int64(len(hdr))); err != nil {
		return 0, nil, fmt.Errorf("%w: segment key block cut short: %v", ErrCorrupt, err)
	}
	return int64(len(hdr)) + blockLen, block, nil
}

// maxKeyBlock bounds a segment's key block: an age header holds about 200
// bytes per X25519 recipient and 1.6 KiB per post-quantum one.
const maxKeyBlock = 1 << 20

// OpenSegmentReader checks the header of segment id read through r and, for
// an encrypted segment, unwraps its data key with keys' identities. keys is
// nil for a plaintext archive, whose segments must be plaintext, and not
// nil for an encrypted one, whose segments must all be encrypted.
func OpenSegmentReader(r io.ReaderAt, id int64, keys *crypt.Keys) (*SegmentReader, error) {
	start, block, err := segmentStart(r, id)
	if err != nil {
		return nil, err
	}
	s := &SegmentReader{r: r, id: id, start: start}
	switch {
	case block == nil && keys != nil:
		return nil, fmt.Errorf("%w: segment is not encrypted, but the archive is", ErrCorrupt)
	case block != nil:
		if s.key, err = keys.OpenBlobKey(id, block); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Start is the offset of the segment's first blob: the header's length.
func (s *SegmentReader) Start() int64 { return s.start }

// recordLen is the length on disk of the blob at off, read from its first
// bytes; it fails when they lie beyond size.
func (s *SegmentReader) recordLen(off, size int64) (int64, error) {
	if s.key == nil {
		if off+BlobHeaderSize > size {
			return 0, fmt.Errorf("%w: %d bytes at offset %d are no blob", ErrCorrupt, size-off, off)
		}
		hdr := make([]byte, BlobHeaderSize)
		if _, err := s.r.ReadAt(hdr, off); err != nil {
			return 0, err
		}
		h, err := ParseBlobHeader(hdr)
		if err != nil {
			return 0, err
		}
		return int64(BlobHeaderSize + h.CompLen), nil
	}
	if off+crypt.RecordOverhead > size {
		return 0, fmt.Errorf("%w: %d bytes at offset %d are no blob", ErrCorrupt, size-off, off)
	}
	prefix := make([]byte, crypt.RecordPrefix)
	if _, err := s.r.ReadAt(prefix, off); err != nil {
		return 0, err
	}
	return crypt.RecordLen(prefix)
}

// ReadBlob reads and checks the blob at off, length bytes on disk, and
// returns its header, its frame and its decompressed records, reusing frame
// and buf when they are large enough.
func (s *SegmentReader) ReadBlob(off, length int64, frame, buf []byte) (BlobHeader, []byte, []byte, error) {
	if length < BlobHeaderSize || length > 1<<31 {
		return BlobHeader{}, frame, nil, fmt.Errorf("%w: blob length %d", ErrCorrupt, length)
	}
	into := &frame
	if s.key != nil {
		into = &s.record
	}
	if int64(cap(*into)) < length {
		*into = make([]byte, length)
	}
	*into = (*into)[:length]
	if _, err := s.r.ReadAt(*into, off); err != nil {
		if errors.Is(err, io.EOF) {
			return BlobHeader{}, frame, nil, fmt.Errorf("%w: blob at offset %d runs past the end of its segment", ErrCorrupt, off)
		}
		return BlobHeader{}, frame, nil, err
	}
	if s.key != nil {
		var err error
		if frame, err = s.key.Open(frame[:0], s.record, off); err != nil {
			return BlobHeader{}, frame, nil, err
		}
	}
	h, raw, err := DecodeBlob(frame, buf)
	return h, frame, raw, err
}

// Append writes a framed blob (sealed, in an encrypted segment) and returns
// its offset and its length on disk. The bytes are durable only after Sync.
func (w *SegmentWriter) Append(frame []byte) (off, length int64, err error) {
	off = w.size
	out := frame
	if w.key != nil {
		if w.record, err = w.key.Seal(w.record[:0], frame, off); err != nil {
			return 0, 0, fmt.Errorf("append to segment %d: %w", w.ID, err)
		}
		out = w.record
	}
	if _, err := w.f.WriteAt(out, off); err != nil {
		return 0, 0, fmt.Errorf("append to segment %d: %w", w.ID, err)
	}
	w.size += int64(len(out))
	return off, int64(len(out)), nil
}

// Size is the segment's length in bytes, header included.
func (w *SegmentWriter) Size() int64 { return w.size }

// Truncate cuts the segment back to size, dropping blobs that will never be
// referenced (those of a transaction that was not completed).
func (w *SegmentWriter) Truncate(size int64) error {
	if err := w.f.Truncate(size); err != nil {
		return fmt.Errorf("truncate segment %d: %w", w.ID, err)
	}
	w.size = size
	return nil
}

// Sync makes everything appended so far durable.
func (w *SegmentWriter) Sync() error {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("fsync segment %d: %w", w.ID, err)
	}
	return nil
}

// Close closes the file without syncing.
func (w *SegmentWriter) Close() error { return w.f.Close() }

// SyncDir fsyncs a directory of the host, making the creation, rename or
// removal of its entries durable: the live catalog's.
func SyncDir(dir string) error { return storage.OS{}.SyncDir(dir) }
