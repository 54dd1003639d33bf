package catalog

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"lbt/crypt"
	"lbt/storage"
)

// Rebuild recreates the catalog of the archive in dir from its files, as
// restic's rebuild-index does for its index: the metadata blobs of every
// segment and the sidecars of the basebackups (docs/FORMAT.md, "Recovery
// without a catalog"). The new catalog is written as catalog.db.new and
// renamed into place only when complete. An existing catalog is refused
// unless force, and then kept as catalog.db.bak-<time>.
//
// keys are the configured ones: an encrypted archive's files are read with
// their identities, and the rebuilt catalog records the archive as
// encrypted.
func Rebuild(ctx context.Context, dir string, force bool, keys *crypt.Keys) (RebuildReport, error) {
	return RebuildFrom(ctx, dir, storage.NewLocal(storage.OS{}, dir), force, keys)
}

// RebuildFrom is Rebuild reading the archive's files from store, the
// catalog written in dir: a test rebuilds the files of an archive on
// another file system, or beside its live catalog.
func RebuildFrom(ctx context.Context, dir string, store storage.Store, force bool, keys *crypt.Keys) (RebuildReport, error) {
	path := filepath.Join(dir, CatalogFile)
	_, statErr := os.Stat(path)
	if statErr == nil && !force {
		return RebuildReport{}, fmt.Errorf("%s exists: lbt repair --rebuild-catalog --force replaces it (keeping it as %s.bak-<time>)", path, CatalogFile)
	}
	tmp := path + ".new"
	r := &rebuilder{ctx: ctx, dir: dir, store: store, tmp: tmp, schemas: map[schemaRef]MetaSchema{}, epochs: map[int64]EpochRecord{},
		blobs: map[int64]*rebuiltBlob{}, txs: map[uint64]*rebuiltTx{}, bases: map[string]Basebackup{}, baseTables: map[string]SidecarTable{},
		truncs: map[[2]int64]bool{}, rangeStarts: map[uint64]bool{}}
	if keys.Reads() {
		r.fileKeys = keys
	}
	err := r.readSegments()
	if err == nil {
		err = r.readBasebackups()
	}
	if err == nil && r.source == nil {
		if r.rep.Segments == 0 && len(r.bases) == 0 {
			err = fmt.Errorf("%s holds no segments and no basebackups: nothing to rebuild a catalog from", dir)
		} else {
			err = fmt.Errorf("%w: no metadata blob in the segments of %s names the archive's source database: the catalog cannot be rebuilt", ErrCorrupt, dir)
		}
	}
	if err == nil {
		if err = r.write(ctx); err != nil {
			err = fmt.Errorf("rebuild catalog: %w", err)
		}
	}
	if err != nil {
		r.abandon()
		return r.rep, err
	}
	if err := r.cat.Close(); err != nil {
		return r.rep, fmt.Errorf("rebuild catalog: %w", err)
	}
	if statErr == nil {
		r.rep.Backup = fmt.Sprintf("%s.bak-%s", path, time.Now().UTC().Format("20060102T150405Z"))
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Rename(path+suffix, r.rep.Backup+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return r.rep, fmt.Errorf("keep the old catalog: %w", err)
			}
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return r.rep, fmt.Errorf("rebuild catalog: %w", err)
	}
	return r.rep, SyncDir(dir)
}

// RebuildReport is what Rebuild found and wrote.
type RebuildReport struct {
	Segments, Commits, Blobs, Transactions, Basebackups, Tables int
	Position                                                    Position
	Backup                                                      string   // where the old catalog went, with force
	Warnings                                                    []string // what the rebuilt catalog leaves out, and why
}

type schemaRef struct {
	table   int64
	version int
}

type rebuilder struct {
	ctx         context.Context
	dir         string
	store       storage.Store // the archive's files
	tmp         string        // the new catalog's file
	cat         *Catalog      // the new catalog, once the source is known
	tx          *sql.Tx       // its one transaction
	rep         RebuildReport
	source      *ArchiveRecord
	created     string
	epochs      map[int64]EpochRecord
	position    MetaPosition
	schemas     map[schemaRef]MetaSchema
	segments    []rebuiltSegment
	blobs       map[int64]*rebuiltBlob
	txs         map[uint64]*rebuiltTx
	rangeStarts map[uint64]bool // first commit LSNs of tx_range rows
	undescribed []undescribedBlob
	messages    []MetaMessage
	bases       map[string]Basebackup // by path
	baseTables  map[string]SidecarTable
	rowKeys     []keyEntry
	truncs      map[[2]int64]bool
	tableRows   rebuiltTableRows
	fileKeys    *crypt.Keys // nil: a plaintext archive
}

type rebuiltSegment struct {
	id, size  int64
	createdAt time.Time
}

type rebuiltBlob struct {
	Blob
	distinct int // transactions with changes in it
}

type rebuiltTx struct {
	MetaTx
	tables map[int64]*Counts
}

// openNew creates the new catalog once a metadata blob has named the
// source, so that row keys go there as they are read rather than pile up
// in memory. Everything is written in one transaction, committed by write.
func (r *rebuilder) openNew() error {
	if r.tx != nil || r.source == nil {
		return nil
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(r.tmp + suffix) // a rebuild or creation that did not finish
	}
	src := Source{SystemID: r.source.SystemID, Database: r.source.Database, ServerVersion: r.source.ServerVersion}
	if err := createSchema(r.ctx, r.tmp, src); err != nil {
		return err
	}
	cat, err := openFile(r.dir, r.tmp, false)
	if err != nil {
		return err
	}
	r.cat = cat
	if r.tx, err = cat.db.BeginTx(r.ctx, nil); err != nil {
		return fmt.Errorf("rebuild catalog: %w", err)
	}
	return nil
}

// flushKeys writes the row keys read so far as runs, as ingest does.
func (r *rebuilder) flushKeys() error {
	err := writeKeys(r.ctx, r.tx, r.rowKeys)
	r.rowKeys = r.rowKeys[:0]
	return err
}

// abandon drops the new catalog of a rebuild that failed.
func (r *rebuilder) abandon() {
	if r.tx != nil {
		r.tx.Rollback()
	}
	if r.cat != nil {
		r.cat.Close()
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(r.tmp + suffix) // ours, incomplete
	}
}

func (r *rebuilder) warn(format string, args ...any) {
	r.rep.Warnings = append(r.rep.Warnings, fmt.Sprintf(format, args...))
}

// readSegments reads every segment file: each metadata blob and the blobs
// it lists are one catalog commit.
func (r *rebuilder) readSegments() error {
	ents, err := r.store.List(r.ctx, "segments/")
	if err != nil {
		return fmt.Errorf("read archive %s: %w", r.dir, err)
	}
	var ids []int64
	for _, e := range ents {
		if id, ok := ParseSegmentName(path.Base(e.Name)); ok && path.Dir(e.Name) == "segments" {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := r.readSegment(id); err != nil {
			return err
		}
	}
	// Only the newest segment may end in blobs no metadata describes (a
	// crash before a commit). Elsewhere such a blob is either a copy of a
	// described one (a purge interrupted before its catalog commit) or
	// damage, and a catalog without it would silently lack history.
	newest := int64(0)
	for _, id := range ids {
		newest = max(newest, id)
	}
	if r.rep.Commits == 0 && len(r.undescribed) > 0 {
		return fmt.Errorf("%w: the segments of %s hold blobs but no metadata blob: they were written by an lbt of archive format version 2, whose catalog cannot be rebuilt from the files; restore from a copy of its catalog.db with that lbt",
			ErrCorrupt, r.dir)
	}
	described := map[blobIdentity]bool{}
	for _, b := range r.blobs {
		described[blobIdentity{b.TableID, b.CRC, b.FirstLSN}] = true
	}
	for _, u := range r.undescribed {
		if u.segment != newest && !described[u.blobIdentity] {
			return fmt.Errorf("%w: %s holds a blob of table %d at offset %d that no metadata blob describes, and no other segment holds: the rebuilt catalog would lack its changes; restore the file from a copy of the archive",
				ErrCorrupt, filepath.Join(r.dir, SegmentName(u.segment)), u.TableID, u.offset)
		}
	}
	return nil
}

type blobIdentity struct {
	TableID  int64
	CRC      uint32
	FirstLSN uint64
}

type undescribedBlob struct {
	blobIdentity
	segment, offset int64
}

func (r *rebuilder) readSegment(id int64) error {
	path := filepath.Join(r.dir, SegmentName(id))
	f, err := storage.OpenReaderAt(r.ctx, r.store, SegmentName(id))
	if err != nil {
		return fmt.Errorf("read segment: %w", err)
	}
	defer f.Close()
	st, err := r.store.Stat(r.ctx, SegmentName(id))
	if err != nil {
		return fmt.Errorf("read segment: %w", err)
	}
	if _, block, err := segmentStart(f, id); err == nil && block != nil && r.fileKeys == nil {
		return crypt.MissingIdentity()
	}
	sr, err := OpenSegmentReader(f, id, r.fileKeys)
	if errors.Is(err, crypt.ErrNoKey) {
		return err
	}
	if err != nil {
		r.warn("%s is left out: %v", path, err)
		return nil
	}
	r.rep.Segments++
	data := map[int64]BlobHeader{} // the blobs since the last metadata blob, by offset
	lengths := map[int64]int64{}   // and their lengths on disk
	end := sr.Start()
	sc := newBlobScanner(sr, st.Size, sr.Start())
	for sc.next() {
		if sc.header.TableID != MetaTableID {
			data[sc.start] = sc.header
			lengths[sc.start] = sc.length
			continue
		}
		m, err := ParseMetadata(sc.records)
		if err == nil {
			err = r.commit(sr, id, m, data, lengths)
		}
		if err != nil {
			return fmt.Errorf("%s at offset %d: %w", path, sc.start, err)
		}
		clear(data)
		clear(lengths)
		end = sc.off
	}
	for off, h := range data {
		r.undescribed = append(r.undescribed, undescribedBlob{blobIdentity{h.TableID, h.CRC, h.FirstLSN}, id, off})
	}
	if end < st.Size {
		why := "blobs no metadata blob lists (a flush whose catalog commit did not happen)"
		if sc.err != nil && len(data) == 0 {
			why = sc.err.Error()
		}
		r.warn("%s: the %d bytes from offset %d on are not in the rebuilt catalog: %s", path, st.Size-end, end, why)
	}
	r.segments = append(r.segments, rebuiltSegment{id: id, size: end, createdAt: st.ModTime})
	return nil
}

// commit takes in one metadata blob and the blobs it lists.
func (r *rebuilder) commit(f *SegmentReader, segID int64, m Metadata, data map[int64]BlobHeader, lengths map[int64]int64) error {
	r.rep.Commits++
	if m.Archive != nil {
		if r.source != nil && (r.source.SystemID != m.Archive.SystemID || r.source.Database != m.Archive.Database) {
			return fmt.Errorf("%w: segments of two sources (database %q of cluster %s, and %q of %s)", ErrCorrupt,
				r.source.Database, r.source.SystemID, m.Archive.Database, m.Archive.SystemID)
		}
		if r.source == nil {
			r.source = m.Archive
		}
		if r.created == "" || m.Archive.CreatedAt < r.created {
			r.created = m.Archive.CreatedAt
		}
	}
	for _, e := range m.Epochs {
		r.epochs[e.ID] = e
	}
	if p := m.Position; p != nil {
		r.position.Epoch = max(p.Epoch, r.position.Epoch)
		r.position.EndLSN = max(p.EndLSN, r.position.EndLSN)
		if p.At.After(r.position.At) {
			r.position.At = p.At
		}
	}
	for _, s := range m.Schemas {
		r.schemas[schemaRef{s.TableID, s.Version}] = s
	}
	type txTable struct {
		lsn   uint64
		table int64
	}
	counts := map[txTable]*Counts{}
	marks := map[uint64]uint32{}
	var frame, buf []byte
	for _, mb := range m.Blobs {
		h, ok := data[mb.Offset]
		if !ok {
			return fmt.Errorf("%w: metadata lists a blob at offset %d that is not there", ErrCorrupt, mb.Offset)
		}
		length := lengths[mb.Offset]
		var raw []byte
		var err error
		_, frame, raw, err = f.ReadBlob(mb.Offset, length, frame, buf)
		if err != nil {
			return err
		}
		if cap(raw) > cap(buf) && h.lz4 {
			buf = raw
		}
		b := &rebuiltBlob{Blob: Blob{ID: mb.ID, TableID: h.TableID, SegmentID: segID, Offset: mb.Offset, Length: length,
			CRC: h.CRC, Schema: h.Schema, FirstLSN: h.FirstLSN, RawLength: len(raw), SHA256: sha256.Sum256(frame)}}
		dup := r.blobs[mb.ID]
		if dup != nil && dup.CRC != b.CRC {
			return fmt.Errorf("%w: blob %d is in %s and %s with different content", ErrCorrupt, mb.ID, SegmentName(dup.SegmentID), SegmentName(segID))
		}
		rr := NewRecordReader(raw, h.Schema)
		var last uint64
		for {
			c, ok, err := rr.Next()
			if err != nil {
				return fmt.Errorf("blob %d: %w", mb.ID, err)
			}
			if !ok {
				break
			}
			if c.CommitLSN != last {
				b.distinct++
				last = c.CommitLSN
				marks[c.CommitLSN] = c.Xid
			}
			b.LastLSN = c.CommitLSN
			b.Changes++
			var one Counts
			switch c.Tag {
			case TagInsert:
				one.Inserts = 1
			case TagUpdate:
				one.Updates = 1
			case TagDelete:
				one.Deletes = 1
			case TagTruncate:
				one.Truncates = 1
			}
			b.Counts.Add(one)
			if dup == nil { // a copy left by an interrupted purge counts once
				k := txTable{c.CommitLSN, h.TableID}
				tc := counts[k]
				if tc == nil {
					tc = &Counts{}
					counts[k] = tc
				}
				tc.Add(one)
				if err := r.keys(h.TableID, c); err != nil {
					return fmt.Errorf("blob %d: %w", mb.ID, err)
				}
			}
		}
		if dup == nil {
			r.blobs[mb.ID] = b
		}
		if !m.Carries {
			r.tableRows.uncarried(b.TableID, b.LastLSN)
		}
	}
	r.tableRows.take(&m)
	sorted := make([]TxMark, 0, len(marks))
	for lsn, xid := range marks {
		sorted = append(sorted, TxMark{CommitLSN: lsn, Xid: xid})
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].CommitLSN < sorted[j].CommitLSN })
	if err := m.ResolveTxs(sorted); err != nil {
		return err
	}
	first := true
	for _, t := range m.Txs {
		if t.Purged {
			continue // purge removed its row: so does the rebuilt catalog
		}
		if first && !m.Rewrite {
			// Each commit's transactions were a tx_range row; a purge's
			// copies join the ranges of the commits they came from.
			r.rangeStarts[t.CommitLSN] = true
			first = false
		}
		if r.txs[t.CommitLSN] == nil {
			r.txs[t.CommitLSN] = &rebuiltTx{MetaTx: t, tables: map[int64]*Counts{}}
		}
	}
	for k, c := range counts {
		t := r.txs[k.lsn]
		if t == nil {
			continue
		}
		if t.tables[k.table] == nil {
			t.tables[k.table] = c
		} else {
			t.tables[k.table].Add(*c) // a large transaction over several commits' blobs
		}
		if c.Truncates > 0 {
			r.truncs[[2]int64{k.table, int64(k.lsn)}] = true
		}
	}
	r.messages = append(r.messages, m.Messages...)
	if err := r.openNew(); err != nil {
		return err
	}
	if r.tx != nil && len(r.rowKeys) >= 1<<16 {
		return r.flushKeys()
	}
	return nil
}

// keys indexes a change's row keys as ingest does (docs/FORMAT.md, "Row keys").
func (r *rebuilder) keys(tableID int64, c Change) error {
	if c.Tag == TagTruncate {
		return nil
	}
	s, ok := r.schemas[schemaRef{tableID, c.Schema}]
	if !ok {
		return fmt.Errorf("%w: schema version %d of table %d is in no metadata blob", ErrCorrupt, c.Schema, tableID)
	}
	cols := s.KeyColumns()
	hash := func(t Tuple) (int64, bool) {
		if len(cols) == 0 {
			return 0, false
		}
		h := NewKeyHasher()
		var enc []byte
		for _, i := range cols {
			if i >= len(t) {
				return 0, false
			}
			enc = AppendValue(enc[:0], t[i].Kind, t[i].Data)
			h.Write(enc)
		}
		return h.Sum(), true
	}
	add := func(k int64) { r.rowKeys = append(r.rowKeys, keyEntry{tableID, k, c.CommitLSN}) }
	switch c.Tag {
	case TagInsert:
		if k, ok := hash(c.New); ok {
			add(k)
		}
	case TagUpdate:
		k, ok := hash(c.New)
		if ok {
			add(k)
		}
		if c.OldKind != OldNone {
			if o, ook := hash(c.Old); ook && (!ok || o != k) {
				add(o)
			}
		}
	case TagDelete:
		if k, ok := hash(c.Old); ok {
			add(k)
		}
	}
	return nil
}

// readBasebackups reads the sidecars under base/.
func (r *rebuilder) readBasebackups() error {
	files := map[string]int64{} // archive-relative data files and their sizes
	var sidecars []string
	list, err := r.store.List(r.ctx, "base/")
	if err != nil {
		return fmt.Errorf("read archive %s: %w", r.dir, err)
	}
	for _, f := range list {
		switch {
		case strings.HasSuffix(f.Name, ".copy.lz4"):
			files[f.Name] = f.Size
		case strings.HasSuffix(f.Name, ".meta.json"):
			sidecars = append(sidecars, f.Name)
		}
	}
	described := map[string]bool{}
	for _, rel := range sidecars {
		data, err := readAll(r.ctx, r.store, rel)
		if err != nil {
			return fmt.Errorf("read sidecar: %w", err)
		}
		data, err = r.fileKeys.Open(data)
		if errors.Is(err, crypt.ErrNoKey) {
			return err
		}
		var b Basebackup
		var tbl SidecarTable
		if err == nil {
			b, tbl, err = ParseSidecar(data)
		}
		if err == nil && SidecarName(b.Path) != rel {
			err = fmt.Errorf("%w: it names %s", ErrCorrupt, b.Path)
		}
		if err != nil {
			r.warn("%s is left out: %v", rel, err)
			continue
		}
		whole := true
		for _, c := range b.Files() {
			size, ok := files[c.Path]
			switch {
			case !ok && c.Path == b.Path:
				// a purge removed the first file, and stopped
			case !ok:
				r.warn("%s is left out: its chunk %s is missing", b.Path, c.Path)
			case size != c.Bytes:
				r.warn("%s is left out: %s is %d bytes, its sidecar says %d", b.Path, c.Path, size, c.Bytes)
			default:
				continue
			}
			whole = false
			break
		}
		if !whole {
			continue
		}
		r.bases[b.Path], r.baseTables[b.Path] = b, tbl
		for _, c := range b.Files() {
			described[c.Path] = true
		}
	}
	for rel := range files {
		if !described[rel] {
			first, _ := BasebackupOfChunk(rel)
			if _, err := r.store.Stat(r.ctx, SidecarName(first)); errors.Is(err, fs.ErrNotExist) {
				r.warn("%s is left out: it has no sidecar", rel)
			}
		}
	}
	return nil
}

// write fills the new catalog.
func (r *rebuilder) write(ctx context.Context) error {
	if err := r.openNew(); err != nil {
		return err
	}
	tx := r.tx
	var err error
	exec := func(q string, args ...any) {
		if err == nil {
			if _, e := tx.ExecContext(ctx, q, args...); e != nil {
				err = fmt.Errorf("%s: %w", strings.Fields(q)[2], e)
			}
		}
	}
	exec(`INSERT INTO meta (key, value) VALUES ('rebuilt_at', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, time.Now().UTC().Format(time.RFC3339))
	if r.fileKeys != nil {
		exec(`INSERT INTO meta (key, value) VALUES (?, 'age') ON CONFLICT (key) DO UPDATE SET value = excluded.value`, metaEncryption)
	}
	if r.created != "" {
		exec(`UPDATE meta SET value = ? WHERE key = 'created_at'`, r.created)
	}
	epochIDs := make([]int64, 0, len(r.epochs))
	for id := range r.epochs {
		epochIDs = append(epochIDs, id)
	}
	slices.Sort(epochIDs)
	var lastEpoch EpochRecord
	for _, id := range epochIDs {
		e := r.epochs[id]
		exec(`INSERT INTO epoch (id, start_lsn, started_at, slot, reason) VALUES (?, ?, ?, ?, ?)`, e.ID, int64(e.StartLSN), Micros(e.StartedAt), e.Slot, e.Reason)
		lastEpoch = e
	}
	newest := int64(0)
	for _, s := range r.segments {
		newest = max(newest, s.id)
	}
	for _, s := range r.segments {
		exec(`INSERT INTO segment (id, created_at, size, sealed) VALUES (?, ?, ?, ?)`, s.id, Micros(s.createdAt), s.size, s.id != newest)
	}

	// Tables: from their schema versions, or from a basebackup's sidecar
	// for a table the stream never described.
	type relRow struct {
		oid   uint32
		first uint64
	}
	rels := map[int64]*relRow{}
	for k, s := range r.schemas {
		rel := rels[k.table]
		if rel == nil {
			rel = &relRow{oid: s.OID, first: s.FromLSN}
			rels[k.table] = rel
		}
		if s.RelFirstLSN != 0 {
			rel.first = s.RelFirstLSN
		} else if rel.first > s.FromLSN {
			rel.first = s.FromLSN
		}
	}
	paths := make([]string, 0, len(r.bases))
	for p := range r.bases {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		a, b := r.bases[paths[i]], r.bases[paths[j]]
		return a.TableID < b.TableID || a.TableID == b.TableID && a.LSN < b.LSN
	})
	for _, p := range paths {
		b := r.bases[p]
		if rels[b.TableID] == nil {
			rels[b.TableID] = &relRow{oid: r.baseTables[p].OID, first: b.LSN}
			r.schemas[schemaRef{b.TableID, 1}] = MetaSchema{SchemaVersion: SchemaVersion{TableID: b.TableID, Version: 1, FromLSN: b.LSN, Table: b.Definition.Table}}
		}
	}
	for id, rel := range rels {
		exec(`INSERT INTO rel (id, oid, first_lsn) VALUES (?, ?, ?)`, id, int64(rel.oid), int64(rel.first))
		exec(`INSERT INTO table_state (table_id) VALUES (?)`, id)
	}
	r.rep.Tables = len(rels)
	for _, s := range r.schemas {
		if err != nil {
			break
		}
		cols, e1 := s.columnsJSON()
		pk, e2 := s.primaryKeyJSON()
		if err = errors.Join(e1, e2); err != nil {
			break
		}
		exec(`INSERT INTO schema_version (table_id, version, from_lsn, nspname, relname, replident, columns, primary_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			s.TableID, s.Version, int64(s.FromLSN), s.Schema, s.Name, string(rune(s.ReplicaIdentity)), cols, pk)
	}
	for _, p := range paths {
		b := r.bases[p]
		def, e1 := json.Marshal(b.Definition)
		seqs, e2 := json.Marshal(b.Sequences)
		if e := errors.Join(e1, e2); e != nil && err == nil {
			err = e
		}
		chunks, e3 := encodeChunks(b.Chunks)
		if e := errors.Join(e1, e2, e3); e != nil && err == nil {
			err = e
		}
		exec(`INSERT INTO basebackup (table_id, lsn, path, rows, bytes, raw_bytes, crc, definition, sequences, reason, started_at, finished_at, chunks)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			b.TableID, int64(b.LSN), b.Path, b.Rows, b.Bytes, b.RawBytes, int64(b.CRC), string(def), string(seqs), b.Reason,
			Micros(b.StartedAt), Micros(b.FinishedAt), chunks)
	}
	r.rep.Basebackups = len(paths)
	if err != nil {
		return err
	}
	firsts := make(map[int64]uint64, len(rels))
	for id, rel := range rels {
		firsts[id] = rel.first
	}
	if err := r.writeTableRows(ctx, firsts, paths); err != nil {
		return err
	}

	// Blobs, in id order: a blob's first transaction began in the table's
	// blob before it when that one ends with it (a large transaction).
	blobs := make([]*rebuiltBlob, 0, len(r.blobs))
	for _, b := range r.blobs {
		blobs = append(blobs, b)
	}
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].ID < blobs[j].ID })
	lastOf := map[int64]uint64{}
	ins := newBatchInsert("blob", "id, table_id, segment_id, offset, length, crc, schema, first_lsn, last_lsn, changes, raw_length, "+
		"txs, inserts, updates, deletes, truncates, sha256", 17, 32, "")
	for _, b := range blobs {
		b.Txs = b.distinct
		if l, ok := lastOf[b.TableID]; ok && l == b.FirstLSN {
			b.Txs--
		}
		lastOf[b.TableID] = b.LastLSN
		ins.add(b.ID, b.TableID, b.SegmentID, b.Offset, b.Length, int64(b.CRC), b.Schema,
			int64(b.FirstLSN), int64(b.LastLSN), b.Changes, b.RawLength, b.Txs, b.Inserts, b.Updates, b.Deletes, b.Truncates, b.SHA256[:])
	}
	if err := ins.flush(ctx, tx); err != nil {
		return err
	}
	r.rep.Blobs = len(blobs)

	// Transactions, their tables in table id order (the order in which a
	// transaction first changed them is not in the files).
	lsns := make([]uint64, 0, len(r.txs))
	for lsn := range r.txs {
		lsns = append(lsns, lsn)
	}
	slices.Sort(lsns)
	ins = newBatchInsert("tx", "commit_lsn, end_lsn, xid, commit_time, origin, tables", 6, 128, "")
	type activity struct {
		lsn uint64
		at  time.Time
	}
	lastChange := map[int64]activity{}
	var tables []TxTable
	for _, lsn := range lsns {
		t := r.txs[lsn]
		tables = tables[:0]
		for id, c := range t.tables {
			tables = append(tables, TxTable{TableID: id, Counts: *c})
			lastChange[id] = activity{lsn, t.CommitTime}
		}
		sort.Slice(tables, func(i, j int) bool { return tables[i].TableID < tables[j].TableID })
		var origin any
		if t.Origin != "" {
			origin = t.Origin
		}
		ins.add(int64(lsn), int64(t.EndLSN), int64(t.Xid), Micros(t.CommitTime), origin, AppendTxTables([]byte{}, tables))
	}
	if err := ins.flush(ctx, tx); err != nil {
		return err
	}
	r.rep.Transactions = len(lsns)
	// tx_range: runs of consecutive transactions, each starting where a
	// catalog commit's did. Any such partition keeps the rules of
	// docs/FORMAT.md ("Transactions"); this one is the lost catalog's.
	ins = newBatchInsert("tx_range", "first_lsn, last_lsn, min_time, max_time, min_xid, max_xid", 6, 64, "")
	var g txRange
	for i, lsn := range lsns {
		if g.n > 0 && (r.rangeStarts[lsn] || i == 0) {
			ins.add(int64(g.firstLSN), int64(g.lastLSN), g.minTime, g.maxTime, int64(g.minXid), int64(g.maxXid))
			g = txRange{}
		}
		t := r.txs[lsn]
		g.add(lsn, Micros(t.CommitTime), t.Xid)
	}
	if g.n > 0 {
		ins.add(int64(g.firstLSN), int64(g.lastLSN), g.minTime, g.maxTime, int64(g.minXid), int64(g.maxXid))
	}
	if err := ins.flush(ctx, tx); err != nil {
		return err
	}
	ins = newBatchInsert("tx_truncate", "table_id, commit_lsn", 2, 64, "OR IGNORE")
	for k := range r.truncs {
		ins.add(k[0], k[1])
	}
	if err := ins.flush(ctx, tx); err != nil {
		return err
	}
	if err := r.flushKeys(); err != nil {
		return err
	}
	ins = newBatchInsert("tx_message", "commit_lsn, seq, prefix, content", 4, 64, "OR IGNORE")
	for _, m := range r.messages {
		ins.add(int64(m.CommitLSN), m.Seq, m.Prefix, m.Content)
	}
	if err := ins.flush(ctx, tx); err != nil {
		return err
	}

	for id, a := range lastChange {
		exec(`UPDATE table_state SET last_change_lsn = ?, last_change_time = ? WHERE table_id = ?`, int64(a.lsn), Micros(a.at), id)
	}
	// Counters since each table's newest basebackup, as AddBasebackup
	// counts them; and purged_lsn where the history before the oldest
	// basebackup is gone (blobs start after the table's first LSN).
	exec(`UPDATE table_state SET
		changes_since_base = (SELECT coalesce(sum(changes), 0) FROM blob b WHERE b.table_id = table_state.table_id
			AND b.first_lsn >= (SELECT coalesce(max(lsn), 0) FROM basebackup WHERE table_id = table_state.table_id)),
		blobs_since_base = (SELECT count(*) FROM blob b WHERE b.table_id = table_state.table_id
			AND b.last_lsn >= (SELECT coalesce(max(lsn), 0) FROM basebackup WHERE table_id = table_state.table_id))`)
	exec(`UPDATE table_state SET purged_lsn = (SELECT min(lsn) FROM basebackup WHERE table_id = table_state.table_id)
		WHERE (SELECT min(first_lsn) FROM blob WHERE table_id = table_state.table_id) > (SELECT first_lsn FROM rel WHERE id = table_state.table_id)
		AND EXISTS (SELECT 1 FROM basebackup WHERE table_id = table_state.table_id)`)

	// The position: the newest transaction, and the furthest the segments
	// say was confirmed (an idle source's keepalives, now and then).
	var pos Position
	if len(lsns) > 0 {
		t := r.txs[lsns[len(lsns)-1]]
		pos = Position{EndLSN: t.EndLSN, CommitLSN: t.CommitLSN, CommitTime: t.CommitTime}
	}
	pos.Epoch = max(r.position.Epoch, lastEpoch.ID)
	pos.EndLSN = max(pos.EndLSN, r.position.EndLSN, lastEpoch.StartLSN)
	if pos.Epoch > 0 {
		// When the newest position was recorded: the archive is known
		// complete up to then (later keepalives are not in the files).
		updated := r.position.At
		if updated.Before(pos.CommitTime) {
			updated = pos.CommitTime
		}
		exec(`INSERT INTO position (id, epoch, end_lsn, commit_lsn, commit_time, updated_at) VALUES (1, ?, ?, ?, ?, ?)`,
			pos.Epoch, int64(pos.EndLSN), int64(pos.CommitLSN), Micros(pos.CommitTime), Micros(updated))
	}
	r.rep.Position = pos
	if err != nil {
		return err
	}
	if err := rechain(ctx, tx); err != nil {
		return err
	}
	r.tx = nil
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
