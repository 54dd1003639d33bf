package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/dustin/go-humanize"
)

// ByteSize is a number of bytes, written with a unit: 64MB, 1.5GB (powers
// of 1000) or 64MiB, 1GiB (powers of 1024), as go-humanize reads and prints
// them. A bare 0 means off.
type ByteSize int64

var byteSizeType = reflect.TypeOf(ByteSize(0))

// parseByteSize reads a size with a unit; only 0 may go without one.
func parseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r >= 'A' && r <= 'z' }) < 0 {
		return 0, fmt.Errorf("expected a size with a unit, like 64MB or 1GiB")
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<62 {
		return 0, fmt.Errorf("expected a size with a unit, like 64MB or 1GiB")
	}
	return ByteSize(n), nil
}

// String prints the size as go-humanize does, in powers of 1024.
func (b ByteSize) String() string {
	if b == 0 {
		return "0"
	}
	return humanize.IBytes(uint64(b))
}

// UnmarshalText reads a size as parseByteSize does, for flags.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := parseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}
