package restore

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgress_Draw(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, table: "public.t", total: 4 << 20, start: time.Now().Add(-2 * time.Second)}
	p.add(1<<20, 5000)
	p.draw()
	line := buf.String()
	for _, want := range []string{"\r\033[K", "restoring public.t: 1.0 MiB of 4.0 MiB read", "KiB/s", "left", "5000 rows written"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
}

func TestProgress_Off(t *testing.T) {
	p := startProgress(nil, "t", 100)
	p.add(10, 1)
	p.finish()
	p.finish()
	if p.bytesDone() != 10 {
		t.Errorf("bytes %d", p.bytesDone())
	}
}
