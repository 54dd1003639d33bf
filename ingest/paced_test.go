package ingest

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReadPause(t *testing.T) {
	unixConn := func(t *testing.T) net.Conn {
		path := filepath.Join(t.TempDir(), "s")
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	tcpConn := func(t *testing.T) net.Conn {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	tests := []struct {
		name   string
		conn   func(*testing.T) net.Conn
		paused bool
	}{
		{"unix socket", unixConn, true},
		{"tcp", tcpConn, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readPause(tt.conn(t)) > 0; got != tt.paused {
				t.Errorf("paused = %v, want %v", got, tt.paused)
			}
		})
	}
}

// The reader's clock moves at each read of the connection, also one that
// fails (a read deadline): a clock that stood still after a timeout would
// set the next deadline in the past, and the reader would spin.
func TestPacedReader_ClockMovesWithEachRead(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"data", nil},
		{"timeout", os.ErrDeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &pacedReader{r: readerFunc(func(b []byte) (int, error) { return copy(b, "x"), tt.err })}
			before := time.Now()
			if got := p.now(); got.Before(before) {
				t.Fatalf("before any read, now() = %v, earlier than %v", got, before)
			}
			p.Read(make([]byte, 8))
			first := p.now()
			if first.Before(before) {
				t.Fatalf("after a read, now() = %v, earlier than %v", first, before)
			}
			if again := p.now(); !again.Equal(first) {
				t.Fatalf("without a read, now() moved from %v to %v", first, again)
			}
			mid := time.Now()
			p.Read(make([]byte, 8))
			if second := p.now(); second.Before(mid) {
				t.Fatalf("after a second read, now() = %v, earlier than %v before it", second, mid)
			}
		})
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }
