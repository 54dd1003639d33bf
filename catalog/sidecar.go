package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"lbt/schema"
	"lbt/storage"
)

// A basebackup's sidecar holds its catalog row beside its file, so that a
// catalog rebuilt from the files has it: base/<table id>/<LSN>.meta.json,
// written and fsynced before the file moves into base/ (docs/FORMAT.md).

// SidecarName is the archive-relative path of the sidecar of the
// basebackup at path.
func SidecarName(path string) string {
	return strings.TrimSuffix(path, ".copy.lz4") + ".meta.json"
}

// sidecar is the sidecar's JSON.
type sidecar struct {
	Format  int    `json:"format_version"`
	TableID int64  `json:"table_id"`
	OID     uint32 `json:"oid"`
	// Relfilenode is the table's storage at the snapshot: the table_storage
	// row of a table that the basebackup registered. 0 in sidecars written
	// before it was added.
	Relfilenode uint32            `json:"relfilenode,omitempty"`
	LSN         uint64            `json:"lsn"`
	Path        string            `json:"path"`
	Rows        int64             `json:"rows"`
	Bytes       int64             `json:"bytes"`
	RawBytes    int64             `json:"raw_bytes"`
	CRC         uint32            `json:"crc"`
	Definition  schema.Definition `json:"definition"`
	Sequences   []schema.Sequence `json:"sequences"`
	Reason      string            `json:"reason"`
	StartedAt   int64             `json:"started_at"`
	FinishedAt  int64             `json:"finished_at"`
}

// SidecarTable is what a sidecar says of the table on the source at the
// basebackup's snapshot, beyond the basebackup's catalog row.
type SidecarTable struct {
	OID         uint32
	Relfilenode uint32 // 0 when not known
}

// EncodeSidecar encodes a basebackup's catalog row and its table on the
// source.
func EncodeSidecar(b Basebackup, t SidecarTable) ([]byte, error) {
	out, err := json.MarshalIndent(sidecar{
		Format: FormatVersion, TableID: b.TableID, OID: t.OID, Relfilenode: t.Relfilenode, LSN: b.LSN, Path: b.Path, Rows: b.Rows, Bytes: b.Bytes,
		RawBytes: b.RawBytes, CRC: b.CRC, Definition: b.Definition, Sequences: b.Sequences, Reason: b.Reason,
		StartedAt: Micros(b.StartedAt), FinishedAt: Micros(b.FinishedAt),
	}, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("encode sidecar of %s: %w", b.Path, err)
	}
	return append(out, '\n'), nil
}

// ParseSidecar decodes a sidecar and checks that it describes a basebackup
// file of this format.
func ParseSidecar(data []byte) (Basebackup, SidecarTable, error) {
	var s sidecar
	if err := json.Unmarshal(data, &s); err != nil {
		return Basebackup{}, SidecarTable{}, fmt.Errorf("%w: sidecar: %v", ErrCorrupt, err)
	}
	switch {
	case s.Format != FormatVersion:
		return Basebackup{}, SidecarTable{}, fmt.Errorf("%w: sidecar of format version %d, this lbt reads %d", ErrCorrupt, s.Format, FormatVersion)
	case s.TableID <= 0 || s.Path != BasebackupName(s.TableID, s.LSN):
		return Basebackup{}, SidecarTable{}, fmt.Errorf("%w: sidecar names table %d at %s as %q", ErrCorrupt, s.TableID, FormatLSN(s.LSN), s.Path)
	case s.Rows < 0 || s.Bytes < 0 || s.RawBytes < 0:
		return Basebackup{}, SidecarTable{}, fmt.Errorf("%w: sidecar of %s has negative sizes", ErrCorrupt, s.Path)
	}
	return Basebackup{
		TableID: s.TableID, LSN: s.LSN, Path: s.Path, Rows: s.Rows, Bytes: s.Bytes, RawBytes: s.RawBytes, CRC: s.CRC,
		Definition: s.Definition, Sequences: s.Sequences, Reason: s.Reason,
		StartedAt: FromMicros(s.StartedAt), FinishedAt: FromMicros(s.FinishedAt),
	}, SidecarTable{OID: s.OID, Relfilenode: s.Relfilenode}, nil
}

// WriteSidecar writes the sidecar of b into the archive in dir, durably:
// through a temporary name, fsynced, renamed, the directory fsynced. The
// file it returns holds an flock on the sidecar, so that the clean-up of
// leftovers leaves it alone: the caller closes it once the catalog row is
// committed.
func WriteSidecar(dir string, b Basebackup, t SidecarTable) (io.Closer, error) {
	data, err := EncodeSidecar(b, t)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, SidecarName(b.Path))
	if err := os.MkdirAll(filepath.Dir(path), DirMode); err != nil {
		return nil, fmt.Errorf("write sidecar: %w", err)
	}
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, FileMode)
	if err != nil {
		return nil, fmt.Errorf("write sidecar: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = SyncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		os.Remove(tmp) // ours, just written
		return nil, fmt.Errorf("write sidecar %s: %w", path, err)
	}
	return f, nil
}

// readAll reads the whole object name.
func readAll(ctx context.Context, store storage.Store, name string) ([]byte, error) {
	rc, err := store.ReadRange(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
