// Package ingest turns a logical replication slot's pgoutput stream into the
// durable archive: it creates the publication and slot when missing, streams
// every committed transaction into segments and the catalog exactly once, and
// confirms to the server only what is durable.
package ingest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"lbt/catalog"
	"lbt/config"
	"lbt/crypt"
	"lbt/schema"
	"lbt/source"
	archive "lbt/storage"
)

// Options configures the backup daemon. NewOptions gives the defaults.
type Options struct {
	ArchiveDir      string
	Conn            *pgconn.Config // a normal connection to the source database
	Slot            string
	Publication     string
	TrackNewTables  bool
	DeltasPerFile   int   // changes per segment before a new one begins
	SegmentMaxBytes int64 // bytes per segment before a new one begins
	Fsync           bool
	FlushInterval   time.Duration   // longest a committed transaction waits to become durable
	StatusInterval  time.Duration   // standby status updates at least this often
	TempDir         string          // for temporary files; <ArchiveDir>/tmp when empty
	SlotWait        source.SlotWait // when a slow creation of the slot is reported
	// StallAfter: an archiver on one batch for this long has stalled,
	// which Health reports and the log warns of.
	StallAfter time.Duration
	// Health, when set, tells whether the daemon makes progress.
	Health *Health
	// DropCheckInterval is how often the archived tables are looked up on
	// the source to learn of those dropped without lbt seeing the DROP
	// (no DDL capture); 0 is only at start and when a new table takes an
	// archived table's name.
	DropCheckInterval time.Duration
	Logger            hclog.Logger
	// Keys encrypt the archive's files (encryptRecipients); nil or empty
	// for a plaintext archive.
	Keys *crypt.Keys

	// Ready, when set, is called once the stream runs (for sd_notify).
	Ready func()
	// Metrics, when set, receive the daemon's figures.
	Metrics *Metrics
	// FS, when set, holds the archive's files (segments) in place of the
	// host's file system: a crash-simulation test's storage.MemFS. The
	// catalog, LOCK and tmp/ stay on the host.
	FS archive.FS

	// SealInterval, when positive, seals the active segment once it has
	// been open this long and holds anything, at the next moment between
	// transactions, so that an uploader gets it (uploadInterval).
	SealInterval time.Duration
	// Sealed, when set, is called in the archiver goroutine each time a
	// segment is sealed, with the catalog committed up to pos and before
	// the next segment exists: every blob the catalog points at is then
	// in a sealed segment, so a snapshot of the catalog taken here is
	// consistent with the sealed files. An error stops the daemon.
	Sealed func(ctx context.Context, cat *catalog.Catalog, pos catalog.Position) error
	// Quiet, when set, is called in the archiver goroutine, on the seal
	// clock, while the active segment holds nothing and no transaction
	// is open: the catalog, committed up to pos, then points at sealed
	// segments only, as at a seal. It lets an uploader send what others
	// recorded meanwhile (a basebackup) on a source with no changes to
	// seal. An error stops the daemon.
	Quiet func(ctx context.Context, cat *catalog.Catalog, pos catalog.Position) error
	// Covered, when set, bounds the position confirmed to the server: the
	// end LSN that the object store holds everything before
	// (confirmAfterUpload).
	Covered func() uint64
	// Remote, when set, is the object store that holds the files whose
	// local copies were removed after upload: the catalog reads them
	// there (catalog.ReadMissingFrom).
	Remote archive.Store
}

func (o *Options) tempDir() string {
	if o.TempDir != "" {
		return o.TempDir
	}
	return config.DefaultTempDir(o.ArchiveDir)
}

// NewOptions returns the defaults: those of config keys from
// config.Default, where they are written once.
func NewOptions() Options {
	d := config.Default()
	return Options{
		Slot:              d.SlotName,
		Publication:       d.Publication,
		TrackNewTables:    d.TrackNewTables,
		DeltasPerFile:     d.DeltasPerFile,
		SegmentMaxBytes:   256 << 20,
		Fsync:             d.Fsync,
		FlushInterval:     d.FlushInterval,
		SlotWait:          source.DefaultSlotWait,
		StallAfter:        time.Minute,
		StatusInterval:    d.StatusInterval,
		DropCheckInterval: time.Minute,
		Logger:            hclog.NewNullLogger(),
	}
}

func (o *Options) validate() error {
	switch {
	case o.ArchiveDir == "":
		return fatalf("archiveDir is not set")
	case o.Conn == nil:
		return fatalf("no source connection configured")
	case !slotNameRE.MatchString(o.Slot):
		return fatalf("slot name %q is invalid: use 1-63 characters of a-z, 0-9 and _", o.Slot)
	case o.Publication == "":
		return fatalf("publication is not set")
	case o.DeltasPerFile <= 0 || o.SegmentMaxBytes <= 0 || o.FlushInterval <= 0 || o.StatusInterval <= 0 || o.StallAfter <= 0:
		return fatalf("deltasPerFile, flush and status intervals and the stall limit must be positive")
	}
	return nil
}

// Run streams the slot into the archive until ctx is cancelled, then makes
// everything received durable, confirms it and returns nil. A lost
// connection is retried with backoff; an error the operator must fix is
// returned. The caller holds the archive's lock (LockArchive) for as long
// as Run and anything else that writes the archive as its daemon run.
func Run(ctx context.Context, opts Options) error {
	if err := opts.validate(); err != nil {
		return err
	}
	log := opts.Logger

	d := &daemon{opts: &opts, log: log}
	defer d.close()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watchSlot(watchCtx, &opts, 30*time.Second)
	backoff := time.Second
	firstStart := time.Now()
	for attempt := 0; ; attempt++ {
		started := time.Now()
		err := d.session(ctx)
		if ctx.Err() != nil {
			// Stopping: a failure of the final flush still counts.
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		}
		if err == nil {
			err = errors.New("replication stream ended")
		}
		if diskFull(err) {
			// Everything durable is confirmed and nothing is lost: the server
			// keeps the rest. Retrying cannot make room.
			return fatalf("archive %s: disk full: free space (or run lbt purge), then start lbt again: %w", opts.ArchiveDir, err)
		}
		switch {
		case IsFatal(err):
			return err
		case !d.streamed && !(transient(err) && time.Since(firstStart) < 2*time.Minute):
			// Never streamed: the setup is wrong, not the network. Exit so
			// that the operator (or the supervisor) sees it. A slot still
			// held by a previous walsender, or a server starting up, is
			// waited for a while.
			return err
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		log.Error("replication interrupted; retrying", "error", err, "retry_in", backoff)
		if opts.Metrics != nil {
			opts.Metrics.retries.Inc()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// LockArchive makes sure one daemon at a time runs on an archive: the
// stream and the basebackup scheduler alike. It creates the directory.
func LockArchive(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, catalog.DirMode); err != nil {
		return nil, fatalf("archive directory: %w", err)
	}
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, catalog.FileMode)
	if err != nil {
		return nil, fatalf("lock archive: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(f)
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fatalf("lock archive: %w", err)
		}
		return nil, fatalf("%w: %s is in use by another lbt backup (pid %s): stop it first, or use another archiveDir", catalog.ErrLocked, dir, strings.TrimSpace(string(pid)))
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

// replReadBuffer is the read buffer of the replication connection.
const replReadBuffer = 256 << 10

// daemon holds what outlives one replication session.
type daemon struct {
	opts     *Options
	log      hclog.Logger
	cat      *catalog.Catalog
	streamed bool // a session got as far as streaming
}

func (d *daemon) close() {
	if d.cat != nil {
		d.cat.Close()
	}
}

// session connects, checks, streams until an error or ctx ends, and closes.
func (d *daemon) session(ctx context.Context) error {
	o := d.opts
	conn, err := source.Connect(ctx, o.Conn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	info, err := checkSource(ctx, conn)
	if err != nil {
		return err
	}
	rc := o.Conn.Copy()
	rc.RuntimeParams["replication"] = "database"
	schema.SetTextParams(rc.RuntimeParams) // pgoutput writes values with them
	// pgproto3 reads the socket 8 KiB at a time; a backlog arrives faster
	// than that, and each read is a system call. Reads over a Unix socket
	// are also paced (paced.go).
	var paced *pacedReader
	rc.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		paced = &pacedReader{r: r, pause: readPause(w)}
		return pgproto3.NewFrontend(bufio.NewReaderSize(paced, replReadBuffer), w)
	}
	repl, err := pgconn.ConnectConfig(ctx, rc)
	if err != nil {
		return fmt.Errorf("open replication connection to %s: %w", source.ConnLabel(o.Conn), err)
	}
	defer repl.Close(context.Background())
	sys, err := pglogrepl.IdentifySystem(ctx, repl)
	if err != nil {
		return fmt.Errorf("identify system: %w", err)
	}
	info.systemID, info.timeline = sys.SystemID, sys.Timeline
	origin := catalog.Source{SystemID: sys.SystemID, Database: info.database, ServerVersion: strconv.Itoa(info.serverVersion)}
	if err := d.openCatalog(ctx, origin); err != nil {
		return err
	}
	if pos, _, err := d.cat.Position(ctx); err != nil {
		return err
	} else if uint64(sys.XLogPos) < pos.EndLSN {
		// Commits at LSNs the archive already holds would be skipped as
		// duplicates: refuse rather than silently lose them.
		return fatalf("source WAL is at %s, behind the archive's %s: the source was restored or failed over to an older state; archive it into a new archiveDir",
			sys.XLogPos, pglogrepl.LSN(pos.EndLSN))
	}
	// Only now, with the archive known to belong to this source and to
	// be behind it, is anything created there.
	if created, err := ensurePublication(ctx, conn, o.Publication); err != nil {
		return err
	} else if created {
		d.log.Info("created publication FOR ALL TABLES", "publication", o.Publication)
	}
	tables, err := source.PublishedTables(ctx, conn, o.Publication)
	if err != nil {
		return err
	}
	published := make(map[uint32]bool, len(tables))
	for _, t := range tables {
		published[t.OID] = true
		if p := replicaIdentityProblem(t.Name, t.ReplicaIdentity, t.HasKey); p != "" {
			d.log.Warn(p, "table", t.Name)
		}
	}
	if !o.TrackNewTables {
		oids := make([]uint32, 0, len(published))
		for oid := range published {
			oids = append(oids, oid)
		}
		if err := d.cat.SetPublishedOIDs(ctx, oids); err != nil {
			return err
		}
	}

	slot, err := checkSlot(ctx, conn, o.Slot, info.database)
	if err != nil {
		return err
	}
	// Before anything is written: a catalog older than the files (a copy
	// put back) must not cut or overwrite what it does not know. Without
	// the slot, the server sends nothing again.
	resend := uint64(math.MaxUint64)
	if slot.Exists {
		resend = uint64(slot.ConfirmedFlush)
	}
	if err := d.cat.CheckFiles(ctx, resend); err != nil {
		return fatalError{err}
	}
	epoch, err := d.ensureSlot(ctx, repl, slot)
	if err != nil {
		return err
	}
	pos, _, err := d.cat.Position(ctx)
	if err != nil {
		return err
	}
	start := max(pos.EndLSN, uint64(slot.ConfirmedFlush))
	if !slot.Exists {
		start = max(pos.EndLSN, epoch.StartLSN)
	}

	// What the server has confirmed already is the least ever sent, so
	// that the flush field is never zero while the object store catches
	// up (a zero flush would be taken for the write position).
	confirmed := uint64(slot.ConfirmedFlush)
	if !slot.Exists {
		confirmed = epoch.StartLSN
	}
	var durable atomic.Uint64
	durable.Store(start)
	a, err := newArchiver(ctx, d.log, o, d.cat, source.NewLookup(conn, o.Slot), published, epoch.ID, &durable)
	if err != nil {
		return err
	}
	defer a.close()

	err = pglogrepl.StartReplication(ctx, repl, o.Slot, pglogrepl.LSN(start), pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication, PluginArgs: pluginArgs(info.serverVersion, o.Publication)})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" {
			return fmt.Errorf("start replication: slot %q is in use by another process (a previous lbt may still be exiting): %w", o.Slot, err)
		}
		if transient(err) {
			return fmt.Errorf("start replication on slot %q: %w", o.Slot, err)
		}
		return fatalf("start replication on slot %q: %w", o.Slot, err)
	}
	d.log.Info("streaming", "slot", o.Slot, "publication", o.Publication, "lsn", pglogrepl.LSN(start),
		"proto_version", protoVersion(info.serverVersion), "tables", len(tables))
	d.streamed = true
	if o.Ready != nil {
		o.Ready()
	}
	return stream(ctx, d.log, o, repl, paced, a, &durable, confirmed)
}

func (d *daemon) openCatalog(ctx context.Context, source catalog.Source) error {
	if d.cat != nil {
		return d.cat.CheckSource(ctx, source)
	}
	cat, err := catalog.Open(ctx, d.opts.ArchiveDir)
	if errors.Is(err, catalog.ErrNotArchive) {
		cat, err = catalog.Create(ctx, d.opts.ArchiveDir, source)
		if err == nil {
			d.log.Info("created archive", "dir", d.opts.ArchiveDir)
		}
	}
	if err != nil {
		return fatalError{err}
	}
	if err := cat.CheckSource(ctx, source); err != nil {
		cat.Close()
		return fatalError{err}
	}
	if err := cat.UseKeys(ctx, d.opts.Keys); err != nil {
		cat.Close()
		return fatalError{err}
	}
	if err := cat.SetSynchronous(ctx, d.opts.Fsync); err != nil {
		cat.Close()
		return err
	}
	if fsys := d.opts.FS; fsys != nil {
		cat.SetFiles(fsys, archive.NewLocal(fsys, d.opts.ArchiveDir))
	}
	if d.opts.Remote != nil {
		cat.ReadMissingFrom(d.opts.Remote)
	}
	d.cat = cat
	return nil
}

// ensureSlot creates the slot when missing and returns the epoch the stream
// feeds. A missing slot for an existing archive, or a slot that something
// else advanced past the archive, starts a new epoch: changes in between
// are lost, and the archive says so instead of hiding a gap.
func (d *daemon) ensureSlot(ctx context.Context, repl *pgconn.PgConn, slot source.Slot) (catalog.Epoch, error) {
	o := d.opts
	epochs, err := d.cat.Epochs(ctx)
	if err != nil {
		return catalog.Epoch{}, err
	}
	pos, hasPos, err := d.cat.Position(ctx)
	if err != nil {
		return catalog.Epoch{}, err
	}
	var reason string
	startLSN := uint64(slot.ConfirmedFlush)
	if !slot.Exists {
		res, err := source.CreateSlot(ctx, d.log, repl, o.Conn, o.Slot,
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"}, o.SlotWait)
		if err != nil {
			if transient(err) {
				return catalog.Epoch{}, fmt.Errorf("create replication slot %q: %w", o.Slot, err)
			}
			return catalog.Epoch{}, fatalf("create replication slot %q: %w", o.Slot, err)
		}
		lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
		if err != nil {
			return catalog.Epoch{}, fmt.Errorf("create replication slot %q: %w", o.Slot, err)
		}
		startLSN = uint64(lsn)
		d.log.Info("created replication slot", "slot", o.Slot, "lsn", lsn)
		if len(epochs) > 0 {
			reason = fmt.Sprintf("replication slot %s was missing and was created again at %s: changes committed after %s and before it were not archived",
				o.Slot, lsn, pglogrepl.LSN(pos.EndLSN))
		}
	} else if hasPos && startLSN > pos.EndLSN && len(epochs) > 0 {
		reason = fmt.Sprintf("replication slot %s was advanced to %s by something other than this archive (at %s): changes in between were not archived",
			o.Slot, pglogrepl.LSN(startLSN), pglogrepl.LSN(pos.EndLSN))
	}
	if len(epochs) > 0 && reason == "" {
		return epochs[len(epochs)-1], nil
	}
	if len(epochs) == 0 {
		reason = "new archive"
	} else {
		d.log.Warn("archive history has a gap; a new epoch begins and tables need new basebackups", "reason", reason)
	}
	w, err := d.cat.Begin(ctx)
	if err != nil {
		return catalog.Epoch{}, err
	}
	id, err := w.AddEpoch(startLSN, o.Slot, reason)
	if err != nil {
		w.Rollback()
		return catalog.Epoch{}, err
	}
	p := pos
	p.Epoch, p.EndLSN = id, max(pos.EndLSN, startLSN)
	if err := w.SetPosition(p); err != nil {
		w.Rollback()
		return catalog.Epoch{}, err
	}
	if err := w.Commit(); err != nil {
		return catalog.Epoch{}, err
	}
	return catalog.Epoch{ID: id, StartLSN: startLSN, Slot: o.Slot, Reason: reason}, nil
}

// diskFull reports a full file system, as the OS or SQLite says it.
func diskFull(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "database or disk is full") || strings.Contains(msg, "SQLITE_FULL")
}

// transient reports a server condition that passes by itself: a slot still
// held by an exiting walsender, a server shutting down, starting up or out
// of connections, a broken connection.
func transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "55006", "57P01", "57P02", "57P03", "53300":
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08")
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// isTimeout reports a read deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
