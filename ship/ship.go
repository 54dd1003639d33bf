// Package ship copies the archive's immutable files from the local archive
// directory to an object store, then a catalog snapshot that points at them,
// and says which position the store covers: what the daemon may confirm to
// PostgreSQL when confirmAfterUpload is on.
//
// The order is the archive's write ordering carried over: every file a
// snapshot points at is in the store before the snapshot, and a file is
// deleted from the store only when no snapshot kept there points at it. A
// crash between any two steps therefore leaves a store whose newest
// snapshot restores: at worst some files that nothing points at yet, which
// the next upload uses or the next clean-up removes.
//
// Object names are the archive's own ("segments/00000001.lbs",
// "base/16384/00000000016B3748.copy.lz4" and its ".meta.json"), under the
// store's prefix, plus the snapshots "catalog/<end LSN, 16 hex digits>-<Unix
// time in nanoseconds, 16 hex digits>.db": in name order, oldest first.
package ship

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"

	"lbt/catalog"
	"lbt/crypt"
	"lbt/storage"
)

// SnapshotPrefix is where catalog snapshots are kept in the store.
const SnapshotPrefix = "catalog/"

// keepSnapshots is how many snapshots stay in the store: the newest, and
// the one before it for a reader that listed the store just before the
// newest arrived.
const keepSnapshots = 2

// StateFile, in the archive directory, tells lbt status how far the upload
// has got (State).
const StateFile = "UPLOAD.json"

// Options configures a Shipper.
type Options struct {
	// Dir is the local archive directory: the files are read from here.
	Dir string
	// Remote is the object store.
	Remote storage.Store
	// TempDir holds catalog snapshots until they are uploaded.
	TempDir string
	// MaxBackoff bounds the wait between retries of a failed upload.
	MaxBackoff time.Duration
	// Interval is the least time between a snapshot and one that Quiet
	// takes (uploadInterval).
	Interval time.Duration
	// KeepLocal keeps the local copy of a file after upload
	// (keepLocalCopies). Without it, a file's local copy is removed once
	// the file and a snapshot that points at it are in the store, and
	// the archive's readers read it from the store (storage.Layered).
	KeepLocal bool
	Logger    hclog.Logger
	Metrics   *Metrics
}

// snapshot is a catalog snapshot waiting for upload: pinned by the
// archiver (Sealed, Quiet), copied to path at once by the copier
// (copyLoop), then uploaded by Run.
//
// Its file belongs to whoever holds the snapshot last: the copier while it
// copies, Run once it has taken the snapshot (taken), and either of them
// removes it when done with a snapshot that was replaced meanwhile. The
// archiver never touches a file: it only ends the pin of a snapshot not
// yet copied.
type snapshot struct {
	pin     *catalog.PinnedSnapshot // until the copier takes it; nil after
	copied  chan struct{}           // closed when the copy is done or abandoned
	copyErr error                   // why there is no copy, set before copied closes
	taken   bool                    // Run has taken it for upload
	path    string
	pos     catalog.Position
	at      time.Time
	keys    *crypt.Keys // the archive's: nil when it is not encrypted
}

// Shipper uploads what the daemon seals. Sealed (in the archiver
// goroutine) takes a snapshot and hands it to Run (a goroutine of its own),
// which uploads the files and then the snapshot, retrying with backoff.
type Shipper struct {
	o   Options
	log hclog.Logger

	covered atomic.Uint64 // end LSN of the newest snapshot in the store

	mu       sync.Mutex
	pending  *snapshot     // newest snapshot not yet uploaded; older ones are dropped
	oldest   time.Time     // commit time in the oldest snapshot not yet uploaded
	wake     chan struct{} // signalled when pending changes, for Run
	copyWake chan struct{} // the same, for the copier
	seq      int
	backlog  backlog

	// Used by Sealed and Quiet only, in the archiver goroutine.
	snapAt  time.Time // when the last snapshot was taken
	version int64     // the catalog's DataVersion before it
	known   bool      // version is set

	// Used by Start, then by Run only.
	fresh     bool            // archiveDir has never uploaded (no StateFile)
	inStore   map[string]bool // names known to be in the store; nil until listed
	snapshots []string        // snapshot names in the store, oldest first
	refs      map[string][]string
}

// New returns a Shipper; Start must run before Sealed and Run.
func New(o Options) *Shipper {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	return &Shipper{o: o, log: o.Logger, wake: make(chan struct{}, 1), copyWake: make(chan struct{}, 1), refs: make(map[string][]string)}
}

// Start lists the store once: what is there already need not be sent
// again, and the newest snapshot there is what the store covers. Refused
// credentials or a missing bucket fail here, in one line; an unreachable
// store does not stop the daemon: Run lists it when it answers, and until
// then nothing is covered that was not confirmed before.
func (s *Shipper) Start(ctx context.Context) error {
	if err := os.MkdirAll(s.o.TempDir, 0o700); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	// Snapshots left by an earlier run were never uploaded; newer ones
	// will be.
	if old, _ := filepath.Glob(filepath.Join(s.o.TempDir, "snapshot-*.db")); len(old) > 0 {
		for _, p := range old {
			os.Remove(p)
		}
	}
	// Without the catalog that uploaded to the store, the files the store
	// alone holds would be unknown here, and the next clean-up would
	// delete them.
	_, stateErr := os.Stat(filepath.Join(s.o.Dir, StateFile))
	_, catErr := os.Stat(filepath.Join(s.o.Dir, catalog.CatalogFile))
	s.fresh = errors.Is(stateErr, fs.ErrNotExist) || errors.Is(catErr, fs.ErrNotExist)
	err := s.list(ctx)
	if errors.Is(err, storage.ErrUnreachable) {
		s.log.Warn("object store: not reachable at start, archiving locally and retrying: " + err.Error())
		s.writeState(err.Error())
		return nil
	}
	if err != nil {
		return err
	}
	return s.checkNotBehind(ctx)
}

// checkNotBehind refuses a catalog older than the store's newest snapshot
// (a catalog.db put back from a copy, or one that lost commits with fsync
// off): the store holds files it does not know, whose local copies may be
// gone, and the next clean-up would delete them from the store.
func (s *Shipper) checkNotBehind(ctx context.Context) error {
	covered := s.covered.Load()
	if s.fresh || covered == 0 {
		return nil
	}
	cat, err := catalog.OpenReadOnly(ctx, s.o.Dir)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer cat.Close()
	pos, _, err := cat.Position(ctx)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if pos.EndLSN < covered {
		return fmt.Errorf("upload: %w: the catalog of %s ends at %s, before the newest catalog snapshot in %s (%s): it is older than the archive it uploaded; point archiveDir at an empty directory and restore from the bucket, or archiveUrl at another prefix; nothing was changed",
			ErrOtherArchive, s.o.Dir, pglogrepl.LSN(pos.EndLSN), s.o.Remote, pglogrepl.LSN(covered))
	}
	return nil
}

// list learns what the store holds.
func (s *Shipper) list(ctx context.Context) error {
	infos, err := s.o.Remote.List(ctx, "")
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	s.inStore = make(map[string]bool, len(infos))
	for _, i := range infos {
		s.inStore[i.Name] = true
		if strings.HasPrefix(i.Name, SnapshotPrefix) {
			if _, ok := snapshotLSN(i.Name); ok {
				s.snapshots = append(s.snapshots, i.Name)
			}
		}
	}
	// Objects are named by segment id and LSN: an archive begun here
	// must not mix its files with another one's of the same names.
	if s.fresh && len(s.snapshots) > 0 {
		return fmt.Errorf("upload: %w: %s holds the catalog snapshots of an archive that %s did not upload (it has no %s or no %s): point archiveUrl at another prefix, or empty that one",
			ErrOtherArchive, s.o.Remote, s.o.Dir, StateFile, catalog.CatalogFile)
	}
	if n := len(s.snapshots); n > 0 {
		lsn, _ := snapshotLSN(s.snapshots[n-1])
		s.covered.Store(lsn)
	}
	s.writeState("")
	return nil
}

// ErrOtherArchive says that the store already holds another archive.
var ErrOtherArchive = errors.New("the object store holds another archive")

// Covered is the end LSN that the store holds everything before: the
// position of its newest snapshot, 0 when it has none.
func (s *Shipper) Covered() uint64 { return s.covered.Load() }

// Sealed pins a snapshot of cat, whose blobs are all in sealed segments
// (ingest.Options.Sealed), and queues it for upload in place of any older
// one not yet started (snapshot).
func (s *Shipper) Sealed(ctx context.Context, cat *catalog.Catalog, pos catalog.Position) error {
	// Read before the snapshot: a commit between the two is in the
	// snapshot and also seen by the next Quiet, which at worst takes
	// one snapshot too many, never one too few.
	v, err := cat.DataVersion(ctx)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	s.snapAt, s.version, s.known = time.Now(), v, true
	return s.snapshot(ctx, cat, pos)
}

// Quiet takes a snapshot of cat as Sealed does, for a source with no
// changes to seal (ingest.Options.Quiet), but only when another writer of
// the catalog (a basebackup, a purge, retention) committed since the last
// snapshot, and Interval has passed since it: so a basebackup finished on
// an idle source reaches the store within about one uploadInterval, and an
// unchanged catalog is not uploaded again. The first call after start
// takes one, for what an earlier run recorded and did not upload.
func (s *Shipper) Quiet(ctx context.Context, cat *catalog.Catalog, pos catalog.Position) error {
	if time.Since(s.snapAt) < s.o.Interval {
		return nil
	}
	v, err := cat.DataVersion(ctx)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if s.known && v == s.version {
		return nil
	}
	s.snapAt, s.version, s.known = time.Now(), v, true
	return s.snapshot(ctx, cat, pos)
}

// snapshot pins cat, committed up to pos, and queues it in place of any
// older snapshot not yet started. Pinning takes a moment in the archiver;
// Run copies the catalog out in its own goroutine (copyOut), so that the
// stream does not wait for a copy of the whole catalog.
func (s *Shipper) snapshot(ctx context.Context, cat *catalog.Catalog, pos catalog.Position) error {
	pin, err := cat.Pin(ctx)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	path := filepath.Join(s.o.TempDir, fmt.Sprintf("snapshot-%016X-%d.db", pos.EndLSN, s.seq))
	if old := s.pending; old != nil {
		abandon(old, errReplaced)
	} else if s.oldest.IsZero() {
		s.oldest = pos.CommitTime
	}
	s.pending = &snapshot{pin: pin, copied: make(chan struct{}), path: path, pos: pos, at: time.Now(), keys: cat.Keys()}
	for _, c := range []chan struct{}{s.wake, s.copyWake} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	return nil
}

// abandon ends the pin of snap if the copier has not taken it yet, with
// err as the reason it has no copy. It runs under s.mu.
func abandon(snap *snapshot, err error) {
	if snap.pin == nil {
		return // being copied, or copied: the copier or Run owns the file
	}
	snap.pin.Close()
	snap.pin, snap.copyErr = nil, err
	close(snap.copied)
}

// errReplaced marks a snapshot replaced by a newer one before it was
// copied.
var errReplaced = fmt.Errorf("%w: replaced by a newer one before it was copied", errStale)

// errCopy marks a snapshot that could not be copied out: the daemon stops,
// as when a snapshot cannot be taken.
var errCopy = errors.New("catalog snapshot not copied")

// copyLoop copies each new snapshot out as soon as it is pinned, beside
// Run's uploads: a pin held until Run is free (a long upload, a store
// that is down) would keep SQLite from ever restarting the catalog's
// write-ahead log, which would then grow with every commit.
func (s *Shipper) copyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.copyWake:
		}
		s.mu.Lock()
		snap := s.pending
		s.mu.Unlock()
		if snap == nil || !s.copyPinned(ctx, snap) {
			continue
		}
		s.mu.Lock()
		if s.pending != snap && !snap.taken {
			os.Remove(snap.path) // replaced while it was copied, and never taken
		}
		s.mu.Unlock()
	}
}

// copyPinned copies snap out if its pin is still there, and says whether
// it did: the copier and Run (for a snapshot it takes before the copier
// does) race for the pin, and the other waits for copied.
func (s *Shipper) copyPinned(ctx context.Context, snap *snapshot) bool {
	s.mu.Lock()
	pin := snap.pin
	snap.pin = nil
	s.mu.Unlock()
	if pin == nil {
		return false
	}
	snap.copyErr = s.copyOut(ctx, pin, snap)
	close(snap.copied)
	return true
}

// copyOut copies the catalog pinned for snap to snap.path and ends the pin.
func (s *Shipper) copyOut(ctx context.Context, pin *catalog.PinnedSnapshot, snap *snapshot) error {
	defer pin.Close()
	// The daemon empties tempDir at start: make the directory each time.
	if err := os.MkdirAll(s.o.TempDir, 0o700); err != nil {
		return fmt.Errorf("upload: %w: %w", errCopy, err)
	}
	os.Remove(snap.path)
	err := pin.WriteTo(ctx, snap.path)
	if err == nil {
		// A Quiet snapshot has the active segment, whose file is not
		// uploaded.
		err = catalog.RetireActiveSegment(ctx, snap.path)
	}
	if err != nil {
		os.Remove(snap.path)
		return fmt.Errorf("upload: %w: %w", errCopy, err)
	}
	return nil
}

// closePending ends the pin of a snapshot that Run leaves behind.
func (s *Shipper) closePending() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pending; p != nil {
		abandon(p, errCopy)
	}
}

// take returns the pending snapshot, leaving it pending until done; from
// now on its file is Run's.
func (s *Shipper) take() *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != nil {
		s.pending.taken = true
	}
	return s.pending
}

// done marks snap uploaded, unless a newer one replaced it meanwhile.
func (s *Shipper) done(snap *snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == snap {
		s.pending = nil
		s.oldest = time.Time{}
	} else if s.pending != nil {
		s.oldest = snap.pos.CommitTime
	}
}

// Run uploads queued snapshots until ctx ends. A failed upload is retried
// with backoff, or sooner with a newer snapshot; it is logged once per run
// of failures, at warning level, and the store's recovery at info.
func (s *Shipper) Run(ctx context.Context) error {
	copier, stopCopier := context.WithCancel(ctx)
	copying := make(chan struct{})
	go func() {
		defer close(copying)
		s.copyLoop(copier)
	}()
	defer func() {
		stopCopier()
		<-copying
		s.closePending()
	}()
	backoff := time.Second
	failing := s.inStore == nil // Start warned of it
	var last *snapshot
	for {
		snap := s.take()
		if last != nil && last != snap {
			os.Remove(last.path) // replaced after a failed upload
		}
		last = snap
		if snap != nil {
			err := s.ship(ctx, snap)
			switch {
			case err == nil:
				if failing {
					s.log.Info("object store: uploads resumed", "lsn", pglogrepl.LSN(snap.pos.EndLSN))
				}
				failing, backoff = false, time.Second
				s.done(snap)
				s.writeState("")
				continue
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, ErrOtherArchive), errors.Is(err, errCopy):
				return err
			case errors.Is(err, errStale):
				// A file it points at is gone (purged meanwhile): the
				// next snapshot will not point at it.
				s.log.Debug("object store: snapshot skipped", "reason", err)
				s.drop(snap)
			default:
				if !failing {
					s.log.Warn("object store: upload failed, retrying: "+err.Error(), "lsn", pglogrepl.LSN(snap.pos.EndLSN))
				}
				failing = true
				s.writeState(err.Error())
				if m := s.o.Metrics; m != nil {
					m.errors.Inc()
				}
				select {
				case <-ctx.Done():
					return nil
				case <-s.wake:
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, s.o.MaxBackoff)
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
	}
}

func (s *Shipper) drop(snap *snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == snap {
		s.pending = nil
	}
	os.Remove(snap.path)
}

// errStale marks a snapshot that cannot be uploaded because a file it
// points at is no longer on the local disk.
var errStale = errors.New("stale snapshot")

// ship uploads the files snap points at that the store lacks, then snap,
// then removes what no kept snapshot points at.
func (s *Shipper) ship(ctx context.Context, snap *snapshot) error {
	s.copyPinned(ctx, snap)
	select {
	case <-snap.copied:
	case <-ctx.Done():
		return ctx.Err()
	}
	if snap.copyErr != nil {
		return snap.copyErr
	}
	if s.inStore == nil {
		if err := s.list(ctx); err != nil {
			return err
		}
	}
	files, err := catalog.SnapshotFiles(ctx, snap.path)
	if err != nil {
		return err
	}
	var todo []catalog.SnapshotFile
	var bytes int64
	for _, f := range files {
		if s.inStore[f.Name] {
			continue
		}
		st, err := os.Stat(s.localPath(f.Name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if !f.Needed {
					continue
				}
				return fmt.Errorf("%w: %s is gone", errStale, f.Name)
			}
			return fmt.Errorf("upload %s: %w", f.Name, err)
		}
		todo = append(todo, f)
		bytes += st.Size()
	}
	s.setBacklog(len(todo)+1, bytes)
	for i, f := range todo {
		if err := storage.PutFile(ctx, s.o.Remote, f.Name, s.localPath(f.Name)); err != nil {
			if errors.Is(err, fs.ErrNotExist) && !f.Needed {
				continue
			}
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: %s is gone", errStale, f.Name)
			}
			return err
		}
		s.inStore[f.Name] = true
		if st, err := os.Stat(s.localPath(f.Name)); err == nil {
			bytes -= st.Size()
			if m := s.o.Metrics; m != nil {
				m.uploaded.Add(float64(st.Size()))
			}
		}
		s.setBacklog(len(todo)-i, bytes)
	}

	name := SnapshotPrefix + fmt.Sprintf("%016X-%016X.db", snap.pos.EndLSN, snap.at.UnixNano())
	// The snapshot holds row keys, actors and DDL text: in an encrypted
	// archive it leaves the machine as an age file, as every file does.
	upload := snap.path
	if snap.keys != nil {
		upload = snap.path + ".age"
		defer os.Remove(upload)
		if err := sealFile(snap.keys, snap.path, upload); err != nil {
			return fmt.Errorf("upload %s: %w", name, err)
		}
	}
	if err := storage.PutFile(ctx, s.o.Remote, name, upload); err != nil {
		return err
	}
	os.Remove(snap.path)
	s.inStore[name] = true
	s.snapshots = append(s.snapshots, name)
	s.refs[name] = names(files)
	s.covered.Store(snap.pos.EndLSN)
	s.setBacklog(0, 0)
	if m := s.o.Metrics; m != nil {
		m.coveredLSN.Set(float64(snap.pos.EndLSN))
		m.snapshots.Inc()
	}
	if !s.o.KeepLocal {
		s.removeLocal(files)
	}
	s.clean(ctx)
	return nil
}

// removeLocal removes the local copies of files, which are all in the
// store, as is a snapshot that points at them: only now, so that a crash
// at any step before leaves every file in one place or the other, and a
// snapshot that finds it. A copy left by a crash here goes at the next
// upload, which points at it again; a removal undone by a crash (the
// directory is not fsynced) is only space. A reader that has a removed
// file open reads on; the others read it from the store.
func (s *Shipper) removeLocal(files []catalog.SnapshotFile) {
	var n int
	var bytes int64
	for _, f := range files {
		if !s.inStore[f.Name] {
			continue
		}
		p := s.localPath(f.Name)
		st, err := os.Stat(p)
		if err != nil {
			continue // removed already, by an earlier upload or a purge
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Debug("local copy not removed, left for later", "file", f.Name, "error", err)
			continue
		}
		n++
		bytes += st.Size()
	}
	if n > 0 {
		s.log.Debug("local copies removed after upload", "files", n, "bytes", bytes)
	}
}

// clean deletes the snapshots older than the kept ones, then the files
// that no kept snapshot points at: catalog first, then objects, as a local
// purge does. It knows the files of the snapshots it uploaded itself; until
// a daemon has uploaded keepSnapshots of them it removes nothing else.
// Failures are left for the next time.
func (s *Shipper) clean(ctx context.Context) {
	if len(s.snapshots) <= keepSnapshots {
		return
	}
	kept := s.snapshots[len(s.snapshots)-keepSnapshots:]
	for _, k := range kept {
		if _, ok := s.refs[k]; !ok {
			// A kept snapshot of an earlier run: its files are not
			// known without reading it; remove old snapshots only.
			s.deleteOldSnapshots(ctx, kept)
			return
		}
	}
	live := make(map[string]bool)
	for _, k := range kept {
		live[k] = true
		for _, n := range s.refs[k] {
			live[n] = true
		}
	}
	if !s.deleteOldSnapshots(ctx, kept) {
		return
	}
	for name := range s.inStore {
		if live[name] || strings.HasPrefix(name, SnapshotPrefix) {
			continue
		}
		if err := s.o.Remote.Delete(ctx, name); err != nil {
			s.log.Debug("object store: delete failed, left for later", "object", name, "error", err)
			continue
		}
		delete(s.inStore, name)
		if m := s.o.Metrics; m != nil {
			m.deleted.Inc()
		}
	}
}

// deleteOldSnapshots deletes every snapshot but kept and says whether all
// went.
func (s *Shipper) deleteOldSnapshots(ctx context.Context, kept []string) bool {
	ok := true
	var left []string
	for _, n := range s.snapshots[:len(s.snapshots)-len(kept)] {
		if err := s.o.Remote.Delete(ctx, n); err != nil {
			s.log.Debug("object store: delete failed, left for later", "object", n, "error", err)
			left = append(left, n)
			ok = false
			continue
		}
		delete(s.inStore, n)
		delete(s.refs, n)
	}
	s.snapshots = append(left, kept...)
	return ok
}

func (s *Shipper) localPath(name string) string {
	return filepath.Join(s.o.Dir, filepath.FromSlash(name))
}

func names(files []catalog.SnapshotFile) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Name
	}
	return out
}

// snapshotLSN is the end LSN in a snapshot's name.
func snapshotLSN(name string) (uint64, bool) {
	base := strings.TrimPrefix(name, SnapshotPrefix)
	lsn, _, ok := strings.Cut(base, "-")
	if !ok || len(lsn) != 16 || !strings.HasSuffix(base, ".db") {
		return 0, false
	}
	v, err := strconv.ParseUint(lsn, 16, 64)
	return v, err == nil
}

// NewestSnapshot is the name of the newest catalog snapshot in remote.
func NewestSnapshot(ctx context.Context, remote storage.Store) (string, error) {
	infos, err := remote.List(ctx, SnapshotPrefix)
	if err != nil {
		return "", err
	}
	for i := len(infos) - 1; i >= 0; i-- {
		if _, ok := snapshotLSN(infos[i].Name); ok {
			return infos[i].Name, nil
		}
	}
	return "", fmt.Errorf("%w: %s holds no catalog snapshot (%s*.db): has lbt backup with this archiveUrl uploaded anything yet?", catalog.ErrNotArchive, remote, SnapshotPrefix)
}

// backlog is what the store lacks of the archive, as State reports it.
type backlog struct {
	files int
	bytes int64
}

func (s *Shipper) setBacklog(files int, bytes int64) {
	s.mu.Lock()
	oldest := s.oldest
	s.mu.Unlock()
	if m := s.o.Metrics; m != nil {
		m.backlogFiles.Set(float64(files))
		m.backlogBytes.Set(float64(bytes))
		if oldest.IsZero() {
			m.oldest.Set(0)
		} else {
			m.oldest.Set(float64(oldest.UnixMicro()) / 1e6)
		}
	}
	s.mu.Lock()
	s.backlog = backlog{files, bytes}
	s.mu.Unlock()
}

// State is what StateFile holds.
type State struct {
	// CoveredLSN is the end LSN of the newest snapshot in the store.
	CoveredLSN string `json:"covered_lsn"`
	// BacklogFiles and BacklogBytes are the files (and the snapshot) not
	// yet in the store, as of the last attempt.
	BacklogFiles int   `json:"backlog_files"`
	BacklogBytes int64 `json:"backlog_bytes"`
	// OldestUnshipped is the commit time of the newest transaction of the
	// oldest snapshot not yet uploaded: what a lost host would lose, to
	// within one uploadInterval. Empty when nothing waits.
	OldestUnshipped *time.Time `json:"oldest_unshipped_commit,omitempty"`
	// LastError is the error of the last failed attempt while uploads
	// fail; empty once one succeeds.
	LastError string    `json:"last_error,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// writeState writes StateFile, whole (a rename), for lbt status.
func (s *Shipper) writeState(lastErr string) {
	s.mu.Lock()
	st := State{
		CoveredLSN:   pglogrepl.LSN(s.covered.Load()).String(),
		BacklogFiles: s.backlog.files,
		BacklogBytes: s.backlog.bytes,
		LastError:    lastErr,
		UpdatedAt:    time.Now().UTC(),
	}
	if s.pending != nil {
		if st.BacklogFiles == 0 {
			st.BacklogFiles = 1
		}
		if !s.oldest.IsZero() {
			t := s.oldest.UTC()
			st.OldestUnshipped = &t
		}
	}
	s.mu.Unlock()
	if err := writeStateSynced(s.o.Dir, st); err != nil {
		s.log.Debug("upload state not written", "error", err)
	}
}

// ReadState reads the StateFile of the archive in dir; ok is false when
// there is none (no upload has run there).
func ReadState(dir string) (st State, ok bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("upload state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, false, fmt.Errorf("upload state %s: %w", filepath.Join(dir, StateFile), err)
	}
	return st, true, nil
}

// Metrics are the uploader's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	backlogFiles prometheus.Gauge
	backlogBytes prometheus.Gauge
	oldest       prometheus.Gauge
	coveredLSN   prometheus.Gauge
	uploaded     prometheus.Counter
	snapshots    prometheus.Counter
	deleted      prometheus.Counter
	errors       prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		backlogFiles: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lbt_upload_backlog_files",
			Help: "Archive files (and the catalog snapshot) not yet in the object store."}),
		backlogBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lbt_upload_backlog_bytes",
			Help: "Bytes of archive files not yet in the object store."}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lbt_upload_oldest_unshipped_commit_timestamp_seconds",
			Help: "Commit time in the oldest catalog snapshot not yet uploaded, as a Unix timestamp; 0 when none waits."}),
		coveredLSN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lbt_upload_covered_lsn",
			Help: "End LSN of the newest catalog snapshot in the object store."}),
		uploaded: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbt_upload_bytes_total",
			Help: "Bytes of archive files uploaded since start (snapshots excluded)."}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbt_upload_snapshots_total",
			Help: "Catalog snapshots uploaded since start."}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbt_upload_deleted_objects_total",
			Help: "Objects deleted from the object store because no kept snapshot points at them."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbt_upload_errors_total",
			Help: "Failed upload attempts since start."}),
	}
	reg.MustRegister(m.backlogFiles, m.backlogBytes, m.oldest, m.coveredLSN, m.uploaded, m.snapshots, m.deleted, m.errors)
	return m
}

// sealFile writes the age file of src, encrypted to keys' recipients, to
// dst, fsynced.
func sealFile(keys *crypt.Keys, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	w, err := keys.Writer(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, in); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return out.Sync()
}

// Fetch downloads the catalog snapshot name of remote to path, whole and
// fsynced before it takes that name. An encrypted snapshot is decrypted
// with keys' identities; keys that are configured refuse a plaintext one
// (the catalog's UseKeys then says why).
func Fetch(ctx context.Context, remote storage.Store, keys *crypt.Keys, name, path string) error {
	obj, err := remote.ReadRange(ctx, name, 0, -1)
	if err != nil {
		return err
	}
	defer obj.Close()
	br := bufio.NewReader(obj)
	head, _ := br.Peek(64)
	var rc io.Reader = br
	switch {
	case crypt.IsAge(head) && !keys.Reads():
		return fmt.Errorf("fetch %s: %w", name, crypt.MissingIdentity())
	case crypt.IsAge(head) || keys.Configured():
		if rc, err = keys.Reader(br); err != nil {
			return fmt.Errorf("fetch %s: %w", name, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	_, err = io.Copy(f, rc)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	return nil
}
