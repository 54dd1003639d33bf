// Package retention purges what no restore within the retention settings
// can need: a table's basebackups older than the newest one those settings
// keep, and the changes before it. Catalog rows go first, then the files
// they pointed at (docs/FORMAT.md, "What lbt deletes"); segments that still
// hold needed blobs are rewritten without the others.
package retention

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"

	"lbt/catalog"
	"lbt/config"
	"lbt/schema"
	"lbt/storage"
)

// PurgeOptions configures Purge. With neither Retention nor
// KeepBasebackups set nothing is purged.
type Options struct {
	// Retention is how far back point-in-time restore must reach: every
	// time in [Now-Retention, Now] stays restorable. 0 is no limit by time.
	Retention time.Duration
	// KeepBasebackups keeps at least this many of each table's newest
	// basebackups, with the changes after them. 0 is no limit by count.
	// With both set, whichever reaches further back wins.
	KeepBasebackups int
	DryRun          bool
	Now             time.Time // zero: the current time
	Logger          hclog.Logger
}

// NewPurgeOptions returns the defaults: nothing is purged until Retention or
// KeepBasebackups is set.
func NewOptions() Options {
	return Options{Logger: hclog.NewNullLogger()}
}

// PurgeReport says what a purge removed, or with DryRun would remove.
type Report struct {
	DryRun      bool
	Skipped     string    // why nothing was considered, when nothing was
	WindowStart time.Time // the oldest time kept restorable; zero without Retention
	Tables      []TablePurge

	Transactions      int64 // transaction rows removed (not counted in a dry run)
	SegmentsRemoved   int   // segment files whose blobs were all purged
	SegmentsRewritten int   // segment files mostly purged, their live blobs copied into new ones
	SegmentBytes      int64 // segment bytes returned to the file system
	BasebackupBytes   int64 // basebackup bytes returned to the file system
}

// Bytes is the disk space returned in all.
func (r Report) Bytes() int64 { return r.SegmentBytes + r.BasebackupBytes }

// TablePurge is what goes of one table: everything before KeepLSN, the LSN
// of its oldest basebackup that is kept.
type TablePurge struct {
	TableID int64
	Name    string
	KeepLSN uint64
	catalog.PurgeCounts
}

// rewriteRatio: a sealed segment whose live blobs fill less than this
// share of it is rewritten.
const rewriteRatio = 0.5

// rewriteTarget bounds a rewritten segment: the live blobs of several
// mostly empty segments are copied into one until it reaches this size.
const rewriteTarget = 256 << 20

// Purge removes the basebackups and changes that the retention settings no
// longer keep, and returns their disk space. Per table it keeps the oldest
// basebackup that a restore to the start of the window needs (the newest
// one that holds nothing committed after the window start) and everything
// after it; KeepBasebackups keeps the newest N basebackups as well. What
// lies before goes: older basebackups, blobs whose last transaction
// committed before the kept basebackup's LSN, and the index rows of those
// transactions. Segments left without blobs are removed; sealed segments
// left less than half full are rewritten. The segment the daemon appends to
// is never touched.
//
// Order: catalog rows are removed (and the removal recorded in purge_log,
// the files to delete in purge_file) first, then the bytes: sidecars, then
// basebackup files no kept basebackup reuses, then segments; rewritten blobs are written and synced before the
// catalog points at them. A crash at any point leaves a consistent archive,
// and the next purge finishes the work. Purge is safe while the daemon
// writes: the daemon only adds rows, and only appends to its unsealed
// segment. One purge runs at a time per archive.
func Purge(ctx context.Context, cat *catalog.Catalog, opts Options) (Report, error) {
	rep := Report{DryRun: opts.DryRun}
	if opts.Retention <= 0 && opts.KeepBasebackups <= 0 {
		rep.Skipped = "retention and retentionBasebackups are not set: nothing is purged"
		return rep, nil
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	rule := retention{keep: opts.KeepBasebackups}
	if opts.Retention > 0 {
		rule.window = true
		rule.windowStart = now.Add(-opts.Retention)
		rep.WindowStart = rule.windowStart
		lsn, ok, err := cat.LastCommitBefore(ctx, rule.windowStart)
		if err != nil {
			return rep, fmt.Errorf("purge: %w", err)
		}
		if ok {
			rule.windowLSN = lsn + 1 // just after the last transaction a restore to the window start applies
		}
	}
	if !opts.DryRun {
		unlock, err := lockPurge(cat.Dir())
		if err != nil {
			return rep, err
		}
		defer unlock()
		// Under the lock no other purge is building one: these were left
		// by a crash in the middle of a rewrite.
		left, _ := filepath.Glob(filepath.Join(config.DefaultTempDir(cat.Dir()), rewritePattern))
		for _, f := range left {
			os.Remove(f)
		}
	}

	if !opts.DryRun {
		// Files an interrupted purge still had to delete go first: no
		// segment may be reclaimed while a purged basebackup's sidecar
		// is still there.
		if err := removePurgeFiles(ctx, cat, &rep); err != nil {
			return rep, fmt.Errorf("purge: %w", err)
		}
	}
	tables, err := cat.Tables(ctx)
	if err != nil {
		return rep, fmt.Errorf("purge: %w", err)
	}
	cutoffs := map[int64]uint64{}
	messagesBefore := uint64(math.MaxUint64) // messages belong to no table: they go when every table is past them
	var maxCutoff uint64
	for _, t := range tables {
		bases, err := cat.Basebackups(ctx, t.ID)
		if err != nil {
			return rep, fmt.Errorf("purge: %w", err)
		}
		if len(bases) == 0 {
			continue // nothing restorable yet, nothing to purge
		}
		i := rule.keepFrom(bases)
		if i < 0 {
			messagesBefore = 0
			continue
		}
		cutoff := bases[i].LSN
		cutoffs[t.ID] = cutoff
		messagesBefore = min(messagesBefore, cutoff)
		maxCutoff = max(maxCutoff, cutoff)
		counts, err := cat.CountPurge(ctx, t.ID, cutoff)
		if err != nil {
			return rep, fmt.Errorf("purge: %w", err)
		}
		if counts.Empty() {
			continue
		}
		rep.Tables = append(rep.Tables, TablePurge{TableID: t.ID, Name: tableName(ctx, cat, t.ID), KeepLSN: cutoff, PurgeCounts: counts})
	}
	if len(cutoffs) == 0 {
		messagesBefore = 0
	}

	if opts.DryRun {
		segs, err := cat.SealedSegments(ctx)
		if err != nil {
			return rep, fmt.Errorf("purge: %w", err)
		}
		plan := planSegments(segs, cutoffs)
		rep.SegmentsRemoved, rep.SegmentsRewritten, rep.SegmentBytes = len(plan.remove), plan.rewritten(), plan.freed
		for _, t := range rep.Tables {
			rep.BasebackupBytes += t.BasebackupBytes
		}
		return rep, nil
	}

	log := opts.Logger
	for _, t := range rep.Tables {
		if _, err := cat.PurgeTable(ctx, t.TableID, t.KeepLSN, t.PurgeCounts); err != nil {
			return rep, fmt.Errorf("purge %s: %w", t.Name, err)
		}
		if err := removePurgeFiles(ctx, cat, &rep); err != nil {
			return rep, fmt.Errorf("purge %s: %w", t.Name, err)
		}
		log.Info("purged table history", "table", t.Name, "before_lsn", pglogrepl.LSN(t.KeepLSN), "basebackups", t.Basebackups,
			"blobs", t.Blobs, "transactions", t.Transactions)
	}
	if maxCutoff > 0 {
		if rep.Transactions, err = cat.PurgeTransactions(ctx, maxCutoff, messagesBefore); err != nil {
			return rep, fmt.Errorf("purge: %w", err)
		}
	}
	if err := reclaimSegments(ctx, cat, log, &rep); err != nil {
		return rep, fmt.Errorf("purge: %w", err)
	}
	return rep, nil
}

// removePurgeFiles deletes the files whose catalog rows purges removed
// (catalog.PurgeFiles: sidecars first), each durably before its row in
// purge_file goes. A basebackup file that a kept basebackup reuses is never
// listed there.
func removePurgeFiles(ctx context.Context, cat *catalog.Catalog, rep *Report) error {
	paths, err := cat.PurgeFiles(ctx)
	if err != nil {
		return err
	}
	for _, p := range paths {
		n, err := storage.Remove(ctx, cat.Store(), p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".copy.lz4") {
			rep.BasebackupBytes += n
		}
		if err := cat.ForgetPurgeFile(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// retention is the rule that decides which basebackups a table keeps.
type retention struct {
	window      bool
	windowStart time.Time
	windowLSN   uint64 // the window start in the stream: just after the last commit at or before windowStart; 0 when none
	keep        int
}

// keepFrom returns the index in bases (oldest first) of the oldest
// basebackup to keep; everything before it may go. -1 keeps everything.
//
// For the window, that is the newest basebackup with its LSN at or before
// windowLSN: it holds only transactions a restore to windowStart applies,
// and every later target is reached from it with the deltas after it. It
// must also have been complete by windowStart, so that a restore that picks
// basebackups by time finds it too. Without such a basebackup nothing goes:
// no time in the window is restorable from anything older.
func (r retention) keepFrom(bases []catalog.Basebackup) int {
	if !r.window && r.keep <= 0 {
		return -1
	}
	from := len(bases)
	if r.window {
		i := len(bases) - 1
		for ; i >= 0; i-- {
			if bases[i].LSN <= r.windowLSN && !bases[i].FinishedAt.After(r.windowStart) {
				break
			}
		}
		if i < 0 {
			return -1
		}
		from = i
	}
	if r.keep > 0 {
		if len(bases) < r.keep {
			return -1
		}
		from = min(from, len(bases)-r.keep)
	}
	return from
}

// segmentPlan is what to do with sealed segments once some blobs are gone.
type segmentPlan struct {
	remove  []int64                  // no live blob left
	rewrite [][]catalog.SegmentBlobs // groups of segments whose live blobs go into one new segment, live blobs only
	freed   int64                    // bytes returned
}

func (p segmentPlan) rewritten() int {
	n := 0
	for _, g := range p.rewrite {
		n += len(g)
	}
	return n
}

// planSegments decides, for sealed segments, which to remove and which to
// rewrite, once the blobs of each table in cutoffs with a last LSN below its
// cutoff are gone.
func planSegments(segs []catalog.SegmentBlobs, cutoffs map[int64]uint64) segmentPlan {
	var p segmentPlan
	var group []catalog.SegmentBlobs
	var groupBytes int64
	for _, s := range segs {
		live := catalog.SegmentBlobs{ID: s.ID, Size: s.Size}
		var liveBytes int64
		for _, b := range s.Blobs {
			if c, ok := cutoffs[b.TableID]; ok && b.LastLSN < c {
				continue
			}
			live.Blobs = append(live.Blobs, b)
			liveBytes += b.Length
		}
		switch {
		case len(live.Blobs) == 0:
			p.remove = append(p.remove, s.ID)
			p.freed += s.Size
		case float64(liveBytes) < rewriteRatio*float64(s.Size-catalog.SegmentHeaderSize):
			if len(group) > 0 && groupBytes+liveBytes > rewriteTarget {
				p.rewrite = append(p.rewrite, group)
				p.freed -= catalog.SegmentHeaderSize
				group, groupBytes = nil, 0
			}
			group = append(group, live)
			groupBytes += liveBytes
			p.freed += s.Size - liveBytes
		}
	}
	if len(group) > 0 {
		p.rewrite = append(p.rewrite, group)
		p.freed -= catalog.SegmentHeaderSize
	}
	return p
}

// reclaimSegments removes the segments left without blobs and rewrites those
// left mostly empty, then removes files of retired segments that a crash
// left behind.
func reclaimSegments(ctx context.Context, cat *catalog.Catalog, log hclog.Logger, rep *Report) error {
	segs, err := cat.SealedSegments(ctx)
	if err != nil {
		return err
	}
	plan := planSegments(segs, nil)
	if len(plan.remove) > 0 {
		// A catalog rebuilt from the files takes the archive's source and
		// epochs from the metadata blobs that every segment with blobs
		// holds: the newest segment to go stays while no other segment
		// holds a blob (the daemon's may be a bare header). The rebuilt
		// catalog then has its purged history back, before every kept
		// basebackup, which no restore reads.
		others, err := cat.HasBlobsOutside(ctx, plan.remove)
		if err != nil {
			return err
		}
		if !others {
			plan.remove = plan.remove[:len(plan.remove)-1]
		}
	}
	if len(plan.remove) > 0 {
		retired, err := cat.RetireSegments(ctx, plan.remove)
		if err != nil {
			return err
		}
		for _, id := range retired {
			n, err := storage.Remove(ctx, cat.Store(), catalog.SegmentName(id))
			if err != nil {
				return err
			}
			rep.SegmentBytes += n
			rep.SegmentsRemoved++
		}
	}
	if k := cat.Keys(); k != nil && !k.Reads() && len(plan.rewrite) > 0 {
		// The daemon of an encrypted archive may hold only the recipients:
		// it cannot read the live blobs to copy them. Emptied segments
		// still go; a purge with decryptIdentityFile rewrites the rest.
		log.Info("mostly purged segments are not rewritten without decryptIdentityFile", "segments", len(plan.rewrite))
		plan.rewrite = nil
	}
	for _, g := range plan.rewrite {
		id, freed, err := rewriteSegments(ctx, cat, g)
		if err != nil {
			return err
		}
		rep.SegmentBytes += freed
		rep.SegmentsRewritten += len(g)
		log.Info("rewrote mostly purged segments", "segments", len(g), "into", id, "bytes_freed", freed)
	}
	retired, err := cat.RetiredSegments(ctx)
	if err != nil {
		return err
	}
	for _, id := range retired {
		n, err := storage.Remove(ctx, cat.Store(), catalog.SegmentName(id))
		if err != nil {
			return err
		}
		if n > 0 {
			log.Info("removed file of a retired segment left by an interrupted purge", "segment", id)
			rep.SegmentBytes += n
		}
	}
	return nil
}

// rewriteSegments copies the live blobs of a group of segments into a new
// segment, makes it durable, points the catalog at the copies and retires
// the old segments in one transaction, then removes the old files. It
// returns the new segment's id and the bytes freed.
func rewriteSegments(ctx context.Context, cat *catalog.Catalog, group []catalog.SegmentBlobs) (int64, int64, error) {
	id, err := cat.ReserveSegment(ctx)
	if err != nil {
		return 0, 0, err
	}
	// Built in tmp/ and stored whole once complete and fsynced: the
	// Store's Put (a rename for the local directory) makes it appear
	// entire or not at all.
	tmpDir := config.DefaultTempDir(cat.Dir())
	if err := os.MkdirAll(tmpDir, catalog.DirMode); err != nil {
		return 0, 0, fmt.Errorf("rewrite segments into %d: %w", id, err)
	}
	tmp, err := os.CreateTemp(tmpDir, rewritePattern)
	if err != nil {
		return 0, 0, fmt.Errorf("rewrite segments into %d: %w", id, err)
	}
	defer os.Remove(tmp.Name()) // gone already once stored
	w, err := catalog.StartSegment(tmp, id, cat.Keys())
	if err != nil {
		tmp.Close()
		return 0, 0, err
	}
	abandon := func(err error) (int64, int64, error) {
		w.Close()
		// The reserved row is empty: the next purge retires it.
		return 0, 0, fmt.Errorf("rewrite segments into %d: %w", id, err)
	}
	var moves []catalog.BlobMove
	var inputs []int64
	var frame []byte
	desc := catalog.NewRewriteDescriber()
	for _, s := range group {
		f, err := storage.OpenReaderAt(ctx, cat.Store(), catalog.SegmentName(s.ID))
		if err != nil {
			return abandon(err)
		}
		sr, err := catalog.OpenSegmentReader(f, s.ID, cat.Keys())
		if err != nil {
			f.Close()
			return abandon(fmt.Errorf("segment %d: %w", s.ID, err))
		}
		for _, b := range s.Blobs {
			// Read and check each blob: a rewrite must not copy damage
			// into a file that looks new.
			h, fr, recs, err := sr.ReadBlob(b.Offset, b.Length, frame, nil)
			frame = fr
			if err == nil && (h.CRC != b.CRC || h.TableID != b.TableID) {
				err = fmt.Errorf("%w: blob %d header does not match the catalog", catalog.ErrCorrupt, b.ID)
			}
			if err != nil {
				f.Close()
				return abandon(fmt.Errorf("segment %d: %w", s.ID, err))
			}
			// Sealed anew under the new segment's key, to today's
			// recipients: the same length as before.
			off, length, err := w.Append(fr)
			if err == nil && length != b.Length {
				err = fmt.Errorf("%w: blob %d is %d bytes in segment %d and would be %d in its copy", catalog.ErrCorrupt, b.ID, b.Length, s.ID, length)
			}
			if err == nil {
				err = desc.Add(b, off, recs)
			}
			if err != nil {
				f.Close()
				return abandon(err)
			}
			moves = append(moves, catalog.BlobMove{Blob: b, Offset: off})
		}
		f.Close()
		inputs = append(inputs, s.ID)
	}
	// The copies' metadata blob, as ingest writes one after each commit's
	// blobs: a catalog rebuilt from the files finds them described.
	m, err := desc.Metadata(ctx, cat)
	if err != nil {
		return abandon(err)
	}
	enc, err := catalog.AppendMetadata(nil, &m)
	if err != nil {
		return abandon(err)
	}
	var be catalog.BlobEncoder
	mf, _, err := be.Encode(catalog.MetaTableID, 0, 0, enc)
	if err != nil {
		return abandon(err)
	}
	if _, _, err := w.Append(mf); err != nil {
		return abandon(err)
	}
	if err := w.Sync(); err != nil {
		return abandon(err)
	}
	size := w.Size()
	if err := w.Close(); err != nil {
		return 0, 0, err
	}
	if err := storage.PutFile(ctx, cat.Store(), catalog.SegmentName(id), tmp.Name()); err != nil {
		return 0, 0, fmt.Errorf("rewrite segments into %d: %w", id, err)
	}
	if err := cat.MoveBlobs(ctx, id, size, moves, inputs); err != nil {
		// Stored but not referenced: the reserved row is empty, and the
		// next purge retires it and removes the file.
		return 0, 0, fmt.Errorf("rewrite segments into %d: %w", id, err)
	}
	freed := -size
	for _, in := range inputs {
		n, err := storage.Remove(ctx, cat.Store(), catalog.SegmentName(in))
		if err != nil {
			return id, freed, err
		}
		freed += n
	}
	return id, freed, nil
}

// rewritePattern names the segments a purge builds in tmp/.
const rewritePattern = "rewrite-*.lbs"

// lockPurge makes sure one purge at a time works on an archive: two would
// rewrite the same segments.
func lockPurge(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, "PURGE.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, catalog.FileMode)
	if err != nil {
		return nil, fmt.Errorf("purge: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("purge: %w: another purge is running on archive %s (the daemon's scheduler or lbt purge): try again when it is done", catalog.ErrLocked, dir)
		}
		return nil, fmt.Errorf("purge: lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// tableName is a table's newest SQL name, for reports.
func tableName(ctx context.Context, cat *catalog.Catalog, id int64) string {
	versions, err := cat.SchemaVersions(ctx, id)
	if err != nil || len(versions) == 0 {
		return fmt.Sprintf("table %d", id)
	}
	v := versions[len(versions)-1]
	return schema.Table{Schema: v.Schema, Name: v.Name}.QualifiedName()
}
