package crypt

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// A sealed blob record, at offset off of its segment:
//
//	0   4   n, the length of the ciphertext (the blob's frame and a 16-byte tag)
//	4   24  nonce, random
//	28  n   XChaCha20-Poly1305 of the frame, associated data segment id (u64)
//	        and off (u64), little-endian
//
// The nonce is random, not derived from the position: the active segment's
// torn or abandoned tail is cut and written again at the same offsets under
// the same key, and a position-derived nonce would then seal two plaintexts
// with one key and nonce. The position is bound as associated data instead,
// so a record moved within its file, or into another, fails to open.
const (
	recordLenSize  = 4
	nonceSize      = chacha20poly1305.NonceSizeX
	RecordOverhead = recordLenSize + nonceSize + chacha20poly1305.Overhead
	// RecordPrefix is how much of a record RecordLen needs.
	RecordPrefix = recordLenSize

	dataKeySize = chacha20poly1305.KeySize
	maxRecord   = 1 << 31
)

// BlobKey seals and opens the blobs of one segment. It is safe for
// concurrent use.
type BlobKey struct {
	aead    cipher.AEAD
	segment int64
}

// NewBlobKey makes a random data key for segment and returns it with its key
// block: the key as an age file encrypted to k's recipients, which the
// segment's header carries.
func (k *Keys) NewBlobKey(segment int64) ([]byte, *BlobKey, error) {
	key := make([]byte, dataKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, nil, fmt.Errorf("segment data key: %w", err)
	}
	block, err := k.Seal(key)
	if err != nil {
		return nil, nil, err
	}
	bk, err := newBlobKey(segment, key)
	return block, bk, err
}

// OpenBlobKey unwraps a segment's key block with k's identities.
func (k *Keys) OpenBlobKey(segment int64, block []byte) (*BlobKey, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: segment is encrypted, but the catalog says the archive is not", ErrCorrupt)
	}
	key, err := k.Open(block)
	if err != nil {
		return nil, err
	}
	if len(key) != dataKeySize {
		return nil, fmt.Errorf("%w: segment data key is %d bytes", ErrCorrupt, len(key))
	}
	return newBlobKey(segment, key)
}

func newBlobKey(segment int64, key []byte) (*BlobKey, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("segment data key: %w", err)
	}
	return &BlobKey{aead: aead, segment: segment}, nil
}

func (b *BlobKey) ad(off int64) []byte {
	var ad [16]byte
	binary.LittleEndian.PutUint64(ad[0:], uint64(b.segment))
	binary.LittleEndian.PutUint64(ad[8:], uint64(off))
	return ad[:]
}

// Seal appends to dst the record of frame, to be written at offset off of
// the segment. The record is RecordOverhead bytes longer than frame.
func (b *BlobKey) Seal(dst, frame []byte, off int64) ([]byte, error) {
	if len(frame)+RecordOverhead > maxRecord {
		return nil, fmt.Errorf("blob of %d bytes is too large to seal", len(frame))
	}
	var hdr [recordLenSize + nonceSize]byte
	binary.LittleEndian.PutUint32(hdr[:4], uint32(len(frame)+chacha20poly1305.Overhead))
	if _, err := rand.Read(hdr[4:]); err != nil {
		return nil, fmt.Errorf("blob nonce: %w", err)
	}
	dst = append(dst, hdr[:]...)
	return b.aead.Seal(dst, hdr[4:], frame, b.ad(off)), nil
}

// Open checks the record read at offset off and appends its frame to dst.
func (b *BlobKey) Open(dst, record []byte, off int64) ([]byte, error) {
	n, err := RecordLen(record)
	if err != nil {
		return nil, err
	}
	if int64(len(record)) != n {
		return nil, fmt.Errorf("%w: blob record is %d bytes, its length says %d", ErrCorrupt, len(record), n)
	}
	nonce := record[recordLenSize : recordLenSize+nonceSize]
	out, err := b.aead.Open(dst, nonce, record[recordLenSize+nonceSize:], b.ad(off))
	if err != nil {
		return nil, fmt.Errorf("%w: blob at offset %d", ErrCorrupt, off)
	}
	return out, nil
}

// RecordLen is the length of the record that begins with prefix (at least
// RecordPrefix bytes), its length field included.
func RecordLen(prefix []byte) (int64, error) {
	if len(prefix) < recordLenSize {
		return 0, fmt.Errorf("%w: blob record shorter than its length", ErrCorrupt)
	}
	n := int64(binary.LittleEndian.Uint32(prefix))
	if n < chacha20poly1305.Overhead || n+RecordOverhead-chacha20poly1305.Overhead > maxRecord {
		return 0, fmt.Errorf("%w: blob record length %d", ErrCorrupt, n)
	}
	return recordLenSize + nonceSize + n, nil
}
