package ingest

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// chunkedReader returns its chunks one per Read.
type chunkedReader struct{ chunks [][]byte }

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks = c.chunks[1:]
	return n, nil
}

func TestCoalescingReader_WaitsOnlyAfterShortReads(t *testing.T) {
	short := bytes.Repeat([]byte{'s'}, 100)
	full := bytes.Repeat([]byte{'f'}, coalesceShortRead)
	tests := []struct {
		name   string
		chunks [][]byte
		waits  int
	}{
		// The last read of each case meets EOF.
		{"the first read does not wait", [][]byte{full}, 0},
		{"a read after a short one waits", [][]byte{short, short, short}, 3},
		{"a read after a full one does not wait", [][]byte{full, full, short, full}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []byte
			for _, c := range tt.chunks {
				want = append(want, c...)
			}
			c := newCoalescingReader(&chunkedReader{chunks: tt.chunks})
			waits := 0
			c.sleep = func(time.Duration) { waits++ }
			var got []byte
			buf := make([]byte, 4*coalesceShortRead)
			for {
				n, err := c.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, want %d", len(got), len(want))
			}
			if waits != tt.waits {
				t.Errorf("waited %d times, want %d", waits, tt.waits)
			}
		})
	}
}
