package catalog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"lbt/crypt"
	"lbt/storage"
)

// The catalog is an index of the archive's files, never their only copy:
// nothing that writes an archive may take files it does not know for
// garbage. These checks refuse to start where the catalog and the files
// disagree, and prove a file a leftover before anything deletes it.

// ErrCatalogMissing reports an archive directory that holds segments or
// basebackups but no catalog: creating a new catalog there would take the
// files for leftovers of interrupted writes.
var ErrCatalogMissing = errors.New("archive has files but no catalog")

// ErrUnknownFile reports an archive file the catalog has no row for and
// cannot prove a leftover: the catalog is older than the files.
var ErrUnknownFile = errors.New("archive file unknown to the catalog")

// archiveContent counts the segment and basebackup files of the archive
// in dir.
func archiveContent(dir string) (segments, basebackups int, err error) {
	store := storage.NewLocal(storage.OS{}, dir)
	segs, err := store.List(context.Background(), "segments/")
	if err != nil {
		return 0, 0, fmt.Errorf("read archive %s: %w", dir, err)
	}
	for _, f := range segs {
		if _, ok := ParseSegmentName(path.Base(f.Name)); ok && path.Dir(f.Name) == "segments" {
			segments++
		}
	}
	bases, err := store.List(context.Background(), "base/")
	if err != nil {
		return 0, 0, fmt.Errorf("read archive %s: %w", dir, err)
	}
	for _, f := range bases {
		if strings.HasSuffix(f.Name, ".copy.lz4") {
			basebackups++
		}
	}
	return segments, basebackups, nil
}

// CheckOrphanFiles refuses an archive directory that holds segments or
// basebackups but no catalog (ErrCatalogMissing). Commands that would
// create an archive call it before they change anything.
func CheckOrphanFiles(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, CatalogFile)); err == nil {
		return nil
	}
	return checkNoOrphanFiles(dir)
}

// checkNoOrphanFiles refuses a directory without a catalog that holds
// archive files.
func checkNoOrphanFiles(dir string) error {
	segs, bases, err := archiveContent(dir)
	if err != nil {
		return err
	}
	if segs == 0 && bases == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s holds %d segment files and %d basebackups but no %s: rebuild it from them with lbt repair --rebuild-catalog, or point archiveDir at an empty directory; nothing was changed",
		ErrCatalogMissing, dir, segs, bases, CatalogFile)
}

// ParseSegmentName returns the id of a segment file name (00000001.lbs,
// -0000001.lbs).
func ParseSegmentName(name string) (int64, bool) {
	s, ok := strings.CutSuffix(name, ".lbs")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id == 0 || SegmentName(id) != "segments/"+name {
		return 0, false
	}
	return id, true
}

// RemoveSegmentLeftover removes segment id's file if it is what a crash
// between creating a segment and committing its catalog row leaves: the
// header alone, or less of it (nothing yet, when the crash came between
// creating the file and writing the header), blobs being appended only
// once the row exists. Any other file with that id holds data the catalog
// does not know, and is refused.
func RemoveSegmentLeftover(fsys storage.FS, dir string, id int64) error {
	path := filepath.Join(dir, SegmentName(id))
	f, err := fsys.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("segment %s: %w", path, err)
	}
	leftover, err := headerAlone(f, id)
	f.Close()
	if err != nil {
		return fmt.Errorf("segment %s: %w", path, err)
	}
	if !leftover {
		return unknownSegment(dir, id)
	}
	if err := fsys.Remove(path); err != nil {
		return fmt.Errorf("remove segment leftover %s: %w", path, err)
	}
	return fsys.SyncDir(filepath.Dir(path))
}

// headerAlone says whether f, the file of segment id, holds no more than
// the beginning of a segment header with that id (all of it, part of it or
// none), and so no blob.
func headerAlone(f storage.File, id int64) (bool, error) {
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	size := st.Size()
	if size < SegmentHeaderSize {
		got := make([]byte, size)
		if _, err := f.ReadAt(got, 0); err != nil {
			return false, err
		}
		for _, magic := range []string{segmentMagic, encryptedSegmentMagic} {
			want := binary.LittleEndian.AppendUint64([]byte(magic), uint64(id))
			if bytes.HasPrefix(want, got) {
				return true, nil
			}
		}
		return false, nil
	}
	start, _, err := segmentStart(f, id)
	return err == nil && size == start, nil
}

func unknownSegment(dir string, id int64) error {
	return fmt.Errorf("%w: %s holds data but the catalog of %s has no segment %d (the catalog is older than the files): rebuild it with lbt repair --rebuild-catalog --force; nothing was deleted",
		ErrUnknownFile, filepath.Join(dir, SegmentName(id)), dir, id)
}

// CheckUnknownSegments refuses segment files with ids from next on that
// hold more than a header: the catalog is older than the files, and
// writing on would overwrite or cut them.
func CheckUnknownSegments(fsys storage.FS, dir string, next int64) error {
	ents, err := fsys.ReadDir(filepath.Join(dir, "segments"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read archive %s: %w", dir, err)
	}
	for _, e := range ents {
		id, ok := ParseSegmentName(e.Name())
		if !ok || id < next {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("read archive %s: %w", dir, err)
		}
		if info.Size() <= SegmentHeaderSize {
			continue
		}
		// An encrypted segment's header is longer: read where its blobs begin.
		f, err := fsys.Open(filepath.Join(dir, "segments", e.Name()))
		if err != nil {
			return fmt.Errorf("read archive %s: %w", dir, err)
		}
		start, _, err := segmentStart(f, id)
		f.Close()
		if err != nil || info.Size() > start {
			return unknownSegment(dir, id)
		}
	}
	return nil
}

// CheckFiles refuses to write on where the files hold more than the
// catalog knows and the source no longer does: segment files beyond the
// catalog's ids, or, in the active segment's tail beyond what the catalog
// references (cut off at start), a flush's metadata with transactions the
// server will not send again (committed before resend: the slot's confirmed
// position, or all of them when the slot is gone). A tail the server sends
// again (a crash between the fsync and the catalog commit) is garbage: it
// is cut, and those transactions archived again.
func (c *Catalog) CheckFiles(ctx context.Context, resend uint64) error {
	next, _, err := c.NextIDs(ctx)
	if err != nil {
		return err
	}
	if err := CheckUnknownSegments(c.fsys, c.dir, next); err != nil {
		return err
	}
	active, ok, err := c.ActiveSegment(ctx)
	if err != nil || !ok {
		return err
	}
	f, err := c.fsys.Open(filepath.Join(c.dir, SegmentName(active.ID)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // OpenSegment reports it
	}
	if err != nil {
		return fmt.Errorf("segment %d: %w", active.ID, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("segment %d: %w", active.ID, err)
	}
	if st.Size() <= active.Size {
		return nil
	}
	sr, err := OpenSegmentReader(f, active.ID, c.keys)
	if errors.Is(err, crypt.ErrNoKey) {
		// The daemon of an encrypted archive may hold only the recipients:
		// it cannot read the tail. Cutting it is safe when the server sends
		// again everything after the catalog's position (the slot is not
		// beyond it), as it does after a crash between fsync and commit.
		pos, _, perr := c.Position(ctx)
		if perr != nil {
			return perr
		}
		if resend <= pos.EndLSN {
			return nil
		}
		return fmt.Errorf("%w: %s holds %d bytes beyond what its catalog knows, and the replication slot is past the catalog's position (the catalog may be older than the files): set decryptIdentityFile so that lbt can read them, or rebuild the catalog with lbt repair --rebuild-catalog --force; nothing was deleted",
			ErrUnknownFile, filepath.Join(c.dir, SegmentName(active.ID)), st.Size()-active.Size)
	}
	if err != nil {
		return fmt.Errorf("segment %d: %w", active.ID, err)
	}
	sc := newBlobScanner(sr, st.Size(), active.Size)
	for sc.next() {
		if sc.header.TableID == MetaTableID && sc.header.FirstLSN != 0 && sc.header.FirstLSN < resend {
			return fmt.Errorf("%w: %s holds transactions from %s on, which the server will not send again, beyond the %d bytes its catalog knows (the catalog is older than the files): rebuild it with lbt repair --rebuild-catalog --force; nothing was deleted",
				ErrUnknownFile, filepath.Join(c.dir, SegmentName(active.ID)), FormatLSN(sc.header.FirstLSN), active.Size)
		}
	}
	return nil
}

// blobScanner reads the blobs of a segment one after the other, checking
// each; it stops at the first that does not decode (a torn tail).
type blobScanner struct {
	r          *SegmentReader
	size, off  int64
	header     BlobHeader
	frame, raw []byte
	records    []byte // the current blob's, valid until next
	start      int64  // offset of the current blob
	length     int64  // length on disk of the current blob
	err        error  // why it stopped before size, if it did
}

func newBlobScanner(r *SegmentReader, size, off int64) *blobScanner {
	return &blobScanner{r: r, size: size, off: off}
}

func (s *blobScanner) next() bool {
	if s.off >= s.size {
		return false
	}
	length, err := s.r.recordLen(s.off, s.size)
	if err == nil && s.off+length > s.size {
		err = fmt.Errorf("%w: blob at offset %d runs past the end of the segment", ErrCorrupt, s.off)
	}
	if err != nil {
		s.err = err
		return false
	}
	hh, frame, raw, err := s.r.ReadBlob(s.off, length, s.frame, s.raw)
	s.frame = frame
	if err != nil {
		s.err = fmt.Errorf("offset %d: %w", s.off, err)
		return false
	}
	if cap(raw) > cap(s.raw) && hh.lz4 {
		s.raw = raw
	}
	s.header, s.start, s.length, s.records = hh, s.off, length, raw
	s.off += length
	return true
}
