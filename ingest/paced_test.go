package ingest

import (
	"net"
	"path/filepath"
	"testing"
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
