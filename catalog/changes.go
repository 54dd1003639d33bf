package catalog

import (
	"fmt"
	"iter"
)

// Filter narrows the changes that Changes yields. The zero Filter yields
// every change.
type Filter struct {
	// CommitLSN, when not 0, keeps the changes of the transaction that
	// committed there.
	CommitLSN uint64
	// Keys, when not nil, keeps the changes of the rows it selects, and
	// truncates; the others are stepped over without being decoded
	// (RecordReader.NextKey).
	Keys KeyFunc
}

// Changes yields the changes of blob b, in the order they were made; raw
// is its records, decompressed (BlobSource.Read). A change's tuples are
// valid until the next one; their values alias raw. An error, which names
// the blob, ends the sequence.
func Changes(b Blob, raw []byte, f Filter) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		r := RecordReader{buf: raw, schema: b.Schema}
		for {
			var c Change
			var ok bool
			var err error
			if f.Keys != nil {
				c, ok, err = r.NextKey(f.CommitLSN, f.Keys)
			} else {
				c, ok, err = r.Next()
			}
			if err != nil {
				yield(c, fmt.Errorf("blob %d in %s: %w", b.ID, SegmentName(b.SegmentID), err))
				return
			}
			if !ok {
				return
			}
			if f.CommitLSN != 0 && c.CommitLSN != f.CommitLSN {
				if c.CommitLSN > f.CommitLSN {
					return
				}
				continue
			}
			if !yield(c, nil) {
				return
			}
		}
	}
}

// Changes yields the changes of blobs, in order, reading and checking each
// blob once, as the function Changes does for one.
func (s *BlobSource) Changes(blobs []Blob, f Filter) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		var buf []byte
		for _, b := range blobs {
			raw, err := s.Read(b, buf)
			if err != nil {
				yield(Change{}, err)
				return
			}
			buf = raw
			for c, err := range Changes(b, raw, f) {
				if !yield(c, err) || err != nil {
					return
				}
			}
		}
	}
}
