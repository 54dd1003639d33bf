package restore

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
)

// progress shows, on a terminal, how far a restore is: bytes of the
// basebackup and deltas read, rows written, the rate and the time left. A
// nil *progress shows nothing.
type progress struct {
	w     io.Writer
	table string
	total int64
	start time.Time
	bytes atomic.Int64
	rows  atomic.Int64

	stop     chan struct{}
	done     chan struct{}
	finished sync.Once
}

// progressInterval is how often the display is redrawn.
const progressInterval = 500 * time.Millisecond

func startProgress(w io.Writer, table string, total int64) *progress {
	p := &progress{table: table, total: total, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if w == nil {
		close(p.done)
		p.finished.Do(func() {})
		return p
	}
	p.w = w
	go func() {
		defer close(p.done)
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw()
			case <-p.stop:
				// Clear the line: the caller prints the summary.
				fmt.Fprint(p.w, "\r\033[K")
				return
			}
		}
	}()
	return p
}

func (p *progress) add(bytes, rows int64) {
	p.bytes.Add(bytes)
	p.rows.Add(rows)
}

func (p *progress) bytesDone() int64 { return p.bytes.Load() }

func (p *progress) draw() {
	done := p.bytes.Load()
	el := time.Since(p.start)
	rate := float64(done) / el.Seconds()
	line := fmt.Sprintf("restoring %s: %s of %s read, %s/s", p.table, humanize.IBytes(uint64(done)), humanize.IBytes(uint64(p.total)), humanize.IBytes(uint64(rate)))
	if rate > 0 && done < p.total {
		eta := time.Duration(float64(p.total-done) / rate * float64(time.Second))
		line += ", about " + eta.Round(time.Second).String() + " left"
	}
	if r := p.rows.Load(); r > 0 {
		line += fmt.Sprintf(", %d rows written", r)
	}
	fmt.Fprint(p.w, "\r\033[K"+line)
}

// finish stops the display and clears its line; it may be called twice.
func (p *progress) finish() {
	p.finished.Do(func() { close(p.stop) })
	<-p.done
}
