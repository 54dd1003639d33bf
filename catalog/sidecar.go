package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"lbt/crypt"
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
	// Chunks are the files of a basebackup of several (format 4); absent
	// for one file.
	Chunks []Chunk `json:"chunks,omitempty"`
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
		StartedAt: Micros(b.StartedAt), FinishedAt: Micros(b.FinishedAt), Chunks: b.Chunks,
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
	case s.Format != FormatVersion && s.Format != 4:
		return Basebackup{}, SidecarTable{}, fmt.Errorf("%w: sidecar of format version %d, this lbt reads 4 and %d", ErrCorrupt, s.Format, FormatVersion)
	case s.TableID <= 0 || s.Path != BasebackupName(s.TableID, s.LSN):
		return Basebackup{}, SidecarTable{}, fmt.Errorf("%w: sidecar names table %d at %s as %q", ErrCorrupt, s.TableID, FormatLSN(s.LSN), s.Path)
	case s.Rows < 0 || s.Bytes < 0 || s.RawBytes < 0:
		return Basebackup{}, SidecarTable{}, fmt.Errorf("%w: sidecar of %s has negative sizes", ErrCorrupt, s.Path)
	}
	if err := checkChunks(s); err != nil {
		return Basebackup{}, SidecarTable{}, err
	}
	return Basebackup{
		TableID: s.TableID, LSN: s.LSN, Path: s.Path, Rows: s.Rows, Bytes: s.Bytes, RawBytes: s.RawBytes, CRC: s.CRC,
		Definition: s.Definition, Sequences: s.Sequences, Reason: s.Reason,
		StartedAt: FromMicros(s.StartedAt), FinishedAt: FromMicros(s.FinishedAt), Chunks: s.Chunks,
	}, SidecarTable{OID: s.OID, Relfilenode: s.Relfilenode}, nil
}

// WriteSidecar stores the sidecar of b, durably (Store.Put), sealed to
// keys' recipients in an encrypted archive (keys not nil). A running
// basebackup's files are told from a crash's leftovers by the lock on its
// data file (dump's clean-up), not on the sidecar.
func WriteSidecar(ctx context.Context, store storage.Store, keys *crypt.Keys, b Basebackup, t SidecarTable) error {
	data, err := EncodeSidecar(b, t)
	if err != nil {
		return err
	}
	if keys != nil {
		if data, err = keys.Seal(data); err != nil {
			return fmt.Errorf("write sidecar of %s: %w", b.Path, err)
		}
	}
	if err := store.Put(ctx, SidecarName(b.Path), bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("write sidecar: %w", err)
	}
	return nil
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

// checkChunks checks that a sidecar's chunks are the basebackup's files, in
// order, and add up to its totals. From format 5 a chunk after the first
// may be a reused file of an older basebackup of the same table
// (ReusedChunk).
func checkChunks(s sidecar) error {
	if len(s.Chunks) == 0 {
		return nil
	}
	var rows, bytes, raw int64
	seen := map[string]bool{}
	for k, c := range s.Chunks {
		want := ChunkName(s.TableID, s.LSN, k)
		if c.Path != want && (k == 0 || s.Format < 5 || !ReusedChunk(c.Path, s.TableID, s.LSN)) || seen[c.Path] {
			return fmt.Errorf("%w: sidecar of %s names its chunk %d %q, not %q", ErrCorrupt, s.Path, k, c.Path, want)
		}
		seen[c.Path] = true
		if c.Rows < 0 || c.Bytes < 0 || c.RawBytes < 0 {
			return fmt.Errorf("%w: sidecar of %s has negative sizes", ErrCorrupt, s.Path)
		}
		rows, bytes, raw = rows+c.Rows, bytes+c.Bytes, raw+c.RawBytes
	}
	if rows != s.Rows || bytes != s.Bytes || raw != s.RawBytes {
		return fmt.Errorf("%w: sidecar of %s: its chunks add up to %d rows and %d bytes, it says %d and %d", ErrCorrupt, s.Path, rows, bytes, s.Rows, s.Bytes)
	}
	return nil
}
