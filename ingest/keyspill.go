package ingest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"lbt/catalog"
)

// keySpill holds the row keys of a transaction too large to keep them in
// memory, in a temporary file: 16 bytes a key, table id and hash. They go
// to the catalog when the transaction commits, so that the catalog's write
// lock is not held while the transaction streams in, which can take
// minutes. After a crash the file is garbage: removeKeySpills deletes it
// at the next start.
type keySpill struct {
	f   *os.File
	w   *bufio.Writer
	r   *bufio.Reader
	rec [16]byte
}

const keySpillPattern = "rowkeys-*.spill"

func newKeySpill(dir string) (*keySpill, error) {
	if err := os.MkdirAll(dir, catalog.DirMode); err != nil {
		return nil, fmt.Errorf("row key spill file: %w", err)
	}
	f, err := os.CreateTemp(dir, keySpillPattern)
	if err != nil {
		return nil, fmt.Errorf("row key spill file: %w", err)
	}
	return &keySpill{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (s *keySpill) add(tableID, hash int64) error {
	binary.LittleEndian.PutUint64(s.rec[:8], uint64(tableID))
	binary.LittleEndian.PutUint64(s.rec[8:], uint64(hash))
	if _, err := s.w.Write(s.rec[:]); err != nil {
		return fmt.Errorf("row key spill file %s: %w", s.f.Name(), err)
	}
	return nil
}

// rewind ends writing; Next reads the keys from the start.
func (s *keySpill) rewind() error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("row key spill file %s: %w", s.f.Name(), err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("row key spill file %s: %w", s.f.Name(), err)
	}
	s.r = bufio.NewReaderSize(s.f, 256<<10)
	return nil
}

// Next implements catalog.RowKeySource.
func (s *keySpill) Next(buf []catalog.RowKey) (int, error) {
	n := 0
	for n < len(buf) {
		if _, err := io.ReadFull(s.r, s.rec[:]); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return n, fmt.Errorf("row key spill file %s: %w", s.f.Name(), err)
		}
		buf[n] = catalog.RowKey{TableID: int64(binary.LittleEndian.Uint64(s.rec[:8])), Hash: int64(binary.LittleEndian.Uint64(s.rec[8:]))}
		n++
	}
	return n, nil
}

// Close removes the file.
func (s *keySpill) Close() error {
	s.f.Close()
	return os.Remove(s.f.Name())
}

// removeKeySpills deletes the spill files a crash left in dir.
func removeKeySpills(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, keySpillPattern))
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale row key spill file: %w", err)
		}
	}
	return nil
}
