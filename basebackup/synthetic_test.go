package basebackup

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// The chunk writer cuts COPY text only at line ends, into chunks of about
// its size, whatever the sizes of the writes; the chunks hold the text in
// order, and count their rows.
func TestChunkWriterCutsAtLineEnds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		per       int64
		rows      int
		maxLine   int
		maxWrite  int
		wantFiles func(n int) bool
	}{
		{"no rows", 100, 0, 10, 10, func(n int) bool { return n == 1 }},
		{"one chunk", 1 << 20, 500, 40, 300, func(n int) bool { return n == 1 }},
		{"many chunks", 256, 2000, 40, 1000, func(n int) bool { return n > 50 }},
		{"lines longer than a chunk", 16, 300, 200, 64, func(n int) bool { return n > 100 }},
		{"one byte writes", 64, 300, 20, 1, func(n int) bool { return n > 20 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.rows)))
			var text bytes.Buffer
			for i := range tc.rows {
				fmt.Fprintf(&text, "%d\t%s\n", i, bytes.Repeat([]byte{'a' + byte(i%26)}, rng.IntN(tc.maxLine)))
			}
			w := &chunkWriter{tempDir: t.TempDir(), per: tc.per}
			defer w.remove()
			for in := text.Bytes(); len(in) > 0; {
				n := min(len(in), 1+rng.IntN(tc.maxWrite))
				if _, err := w.Write(in[:n]); err != nil {
					t.Fatal(err)
				}
				in = in[n:]
			}
			if err := w.close(); err != nil {
				t.Fatal(err)
			}
			if !tc.wantFiles(len(w.files)) {
				t.Errorf("%d chunks", len(w.files))
			}
			var all []byte
			var rows int64
			for k, f := range w.files {
				data, err := os.ReadFile(f.tmp.Name())
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(data)) != f.chunk.Bytes || f.crc.sum != f.chunk.CRC {
					t.Errorf("chunk %d: %d bytes, recorded %d", k, len(data), f.chunk.Bytes)
				}
				raw, err := io.ReadAll(lz4.NewReader(bytes.NewReader(data)))
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(raw)) != f.chunk.RawBytes || int64(bytes.Count(raw, []byte{'\n'})) != f.chunk.Rows {
					t.Errorf("chunk %d: %d bytes and %d rows of text, recorded %d and %d", k, len(raw), bytes.Count(raw, []byte{'\n'}), f.chunk.RawBytes, f.chunk.Rows)
				}
				if len(raw) > 0 && raw[len(raw)-1] != '\n' {
					t.Errorf("chunk %d does not end at a line end", k)
				}
				if k < len(w.files)-1 && f.chunk.RawBytes < tc.per {
					t.Errorf("chunk %d holds %d bytes, less than %d, and is not the last", k, f.chunk.RawBytes, tc.per)
				}
				all = append(all, raw...)
				rows += f.chunk.Rows
			}
			if !bytes.Equal(all, text.Bytes()) || rows != int64(tc.rows) {
				t.Errorf("the chunks hold %d bytes and %d rows, %d and %d were written", len(all), rows, text.Len(), tc.rows)
			}
		})
	}
}
