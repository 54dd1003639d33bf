package basebackup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"

	"lbt/catalog"
	"lbt/config"
	"lbt/retention"
	"lbt/schema"
	"lbt/source"
	"lbt/storage"
)

// Reasons recorded with basebackups the scheduler takes, in the order it
// takes them when several tables are due: tables with an open inexact span
// first, since restores after the change wait for this basebackup, then
// tables without a basebackup, since nothing restores them until they have
// one.
const (
	ReasonInexact    = "inexact span" // the table changed in a way the stream does not carry: restores wait for this basebackup
	ReasonNewTable   = "new table"    // in the catalog, never dumped
	ReasonNewEpoch   = "new epoch"    // dumped, but before the current epoch (slot lost and recreated)
	ReasonInitial    = "initial"      // initialBasebackup, at start
	ReasonThreshold  = "threshold"    // more than backupThreshold blobs since the last basebackup
	ReasonInactivity = "inactivity"   // changed since the last basebackup, then quiet for forceBasebackupAfterInactivityInterval
	ReasonSchedule   = "schedule"     // basebackupSchedule passed since the last basebackup
	ReasonRequest    = "request"      // lbt basebackup
)

// urgency orders reasons: lower first.
func urgency(reason string) int {
	switch reason {
	case ReasonInexact:
		return -1
	case ReasonNewTable:
		return 0
	case ReasonNewEpoch:
		return 1
	case ReasonInitial, ReasonPartitionTree:
		return 2
	case ReasonThreshold:
		return 3
	case ReasonInactivity:
		return 4
	}
	return 5
}

// SchedulerOptions configures RunScheduler. NewSchedulerOptions gives the
// defaults.
type SchedulerOptions struct {
	Options // archive, temp dir, source connection, publication, logger

	// Remote, when set, is the object store that holds the files whose
	// local copies were removed after upload: synthetic basebackups and
	// purges read them there (catalog.ReadMissingFrom).
	Remote storage.Store

	// Concurrent is how many basebackups run at once (concurrentBasebackups),
	// each with its own connections.
	Concurrent int
	// Threshold (backupThreshold) requests a basebackup of a table once more
	// than this many blobs of its changes were written since its last
	// basebackup: the catalog's table_state.blobs_since_base. A blob holds
	// the table's changes of one flush (at most a few MiB), so this bounds
	// how much a restore replays on top of a basebackup. 0 is off.
	Threshold int
	// SyntheticMinBytes (syntheticBasebackupSize): a table due by Threshold
	// whose newest basebackup holds at least this much COPY text gets its
	// basebackup built from the archive (Synthesize), reading nothing from
	// the source; should that fail, one is taken from the source. 0 is
	// off.
	SyntheticMinBytes int64
	// InactivityInterval (forceBasebackupAfterInactivityInterval) requests a
	// basebackup of a table whose last change is older than this and that
	// changed since its last basebackup. 0 is off.
	InactivityInterval time.Duration
	// Schedule (basebackupSchedule) requests a basebackup of every table
	// whose newest basebackup is older than this. 0 is off.
	Schedule time.Duration
	// Initial (initialBasebackup) takes a basebackup of every table of the
	// publication when the scheduler starts.
	Initial bool
	// Retention and RetentionBasebackups, when either is set, make the
	// scheduler purge every PurgeInterval; see retention.Options.
	Retention            time.Duration
	RetentionBasebackups int
	PurgeInterval        time.Duration
	// PollInterval is how often the catalog is checked for tables due.
	PollInterval time.Duration
	// RetryBackoff is the wait before a failed basebackup is taken again; it
	// doubles with each failure of the same table, up to an hour.
	RetryBackoff time.Duration
	// Reload, when set, brings new policies while the scheduler runs (lbt
	// backup sends one on SIGHUP); they apply from the next poll on.
	Reload <-chan Policy
	// Metrics, when set, receive the scheduler's figures.
	Metrics *Metrics
}

// Policy is what a running scheduler can change: when basebackups are due,
// how many run at once, and what retention purges.
type Policy struct {
	Concurrent           int
	Threshold            int
	InactivityInterval   time.Duration
	Schedule             time.Duration
	Retention            time.Duration
	RetentionBasebackups int
}

// Policy returns the options' policy.
func (o *SchedulerOptions) Policy() Policy {
	return Policy{Concurrent: o.Concurrent, Threshold: o.Threshold, InactivityInterval: o.InactivityInterval,
		Schedule: o.Schedule, Retention: o.Retention, RetentionBasebackups: o.RetentionBasebackups}
}

// SetPolicy sets the options' policy, as a policy from Reload does.
func (o *SchedulerOptions) SetPolicy(p Policy) {
	o.Concurrent, o.Threshold, o.InactivityInterval = max(p.Concurrent, 1), p.Threshold, p.InactivityInterval
	o.Schedule, o.Retention, o.RetentionBasebackups = p.Schedule, p.Retention, p.RetentionBasebackups
}

// NewSchedulerOptions returns the defaults: those of config keys from
// config.Default, where they are written once.
func NewSchedulerOptions() SchedulerOptions {
	d := config.Default()
	return SchedulerOptions{
		Options:       NewOptions(),
		Concurrent:    d.ConcurrentBasebackups,
		Threshold:     d.BackupThreshold,
		PurgeInterval: time.Hour,
		PollInterval:  10 * time.Second,
		RetryBackoff:  time.Minute,
	}
}

const maxRetryBackoff = time.Hour

func (o *SchedulerOptions) validate() error {
	switch {
	case o.ArchiveDir == "":
		return errors.New("basebackup scheduler: archiveDir is not set")
	case o.Conn == nil:
		return errors.New("basebackup scheduler: no source connection configured")
	case o.Publication == "":
		return errors.New("basebackup scheduler: publication is not set")
	case o.Concurrent <= 0:
		return fmt.Errorf("basebackup scheduler: concurrentBasebackups must be greater than 0, not %d", o.Concurrent)
	case o.PollInterval <= 0 || o.RetryBackoff <= 0:
		return errors.New("basebackup scheduler: poll interval and retry backoff must be positive")
	case (o.Retention > 0 || o.RetentionBasebackups > 0) && o.PurgeInterval <= 0:
		return errors.New("basebackup scheduler: purge interval must be positive when retention is set")
	}
	return nil
}

// RunScheduler takes basebackups when they are due, and purges when
// retention is set, until ctx ends; then it waits for the basebackups in
// progress to stop and returns nil. It runs beside the daemon (ingest.Run):
// it waits for the daemon to create the archive and its first epoch, uses
// its own catalog handle and source connections, and never holds the
// catalog's write lock for long, so the stream is never stalled. A failed
// basebackup is logged and taken again later. It returns an error only when
// the archive cannot be opened.
func RunScheduler(ctx context.Context, opts SchedulerOptions) error {
	if err := opts.validate(); err != nil {
		return err
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.TempDir == "" {
		opts.TempDir = config.DefaultTempDir(opts.ArchiveDir)
	}
	s := &scheduler{opts: opts, log: opts.Logger, tables: map[uint32]*tableState{}}
	cat, err := s.waitForArchive(ctx)
	if err != nil || cat == nil {
		return err
	}
	defer cat.Close()
	s.cat = cat

	removed, unknown, err := cleanStray(ctx, cat, opts.TempDir)
	for _, p := range removed {
		s.log.Info("removed what an interrupted basebackup left", "path", p)
	}
	for _, p := range unknown {
		s.log.Warn("basebackup file unknown to the catalog kept (the catalog may be older than the files: lbt repair --rebuild-catalog --force rebuilds it)", "path", p)
	}
	if err != nil {
		s.log.Error("cleaning up after interrupted basebackups", "error", err)
	}
	return s.run(ctx)
}

// scheduler is RunScheduler's state.
type scheduler struct {
	opts    SchedulerOptions
	log     hclog.Logger
	cat     *catalog.Catalog
	tables  map[uint32]*tableState // by source OID
	initial bool                   // the tables of the publication are known for Initial
	running int
}

// tableState is what the scheduler remembers of a table between polls.
type tableState struct {
	running  bool
	gone     bool // dropped on the source, or out of the publication
	initial  bool // Initial wants a basebackup of it
	failures int
	nextTry  time.Time
}

type job struct {
	oid     uint32
	tableID int64 // 0 when not in the catalog yet
	name    string
	reason  string
}

type result struct {
	job  job
	err  error
	took time.Duration
}

// waitForArchive opens the catalog once the daemon has created it and
// started its first epoch: before that, a basebackup's snapshot could fall
// before the slot and its changes after the snapshot would be lost.
func (s *scheduler) waitForArchive(ctx context.Context) (*catalog.Catalog, error) {
	for {
		cat, err := catalog.Open(ctx, s.opts.ArchiveDir)
		if err == nil && s.opts.Remote != nil {
			cat.ReadMissingFrom(s.opts.Remote)
		}
		if err == nil {
			if err := cat.UseKeys(ctx, s.opts.Keys); err != nil {
				cat.Close()
				return nil, fmt.Errorf("basebackup scheduler: %w", err)
			}
			epochs, err := cat.Epochs(ctx)
			if err == nil && len(epochs) > 0 {
				return cat, nil
			}
			cat.Close()
		} else if !errors.Is(err, catalog.ErrNotArchive) && !catalog.IsBusy(err) { // the daemon may be creating it
			return nil, fmt.Errorf("basebackup scheduler: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(min(s.opts.PollInterval, time.Second)):
		}
	}
}

func (s *scheduler) run(ctx context.Context) error {
	// Unbuffered: a reload may change how many run at once, and run
	// always receives.
	done := make(chan result)
	var nextPurge time.Time
	ticker := time.NewTicker(s.opts.PollInterval)
	defer ticker.Stop()
	for {
		if err := s.startDue(ctx, done); err != nil && ctx.Err() == nil {
			s.log.Error("checking which tables need a basebackup", "error", err)
		}
		purging := s.opts.Retention > 0 || s.opts.RetentionBasebackups > 0
		if purging && !time.Now().Before(nextPurge) && ctx.Err() == nil {
			s.purge(ctx)
			nextPurge = time.Now().Add(s.opts.PurgeInterval)
		}
		select {
		case <-ctx.Done():
			for s.running > 0 {
				<-done // interrupted: the next start takes it again
				s.running--
			}
			return nil
		case r := <-done:
			s.finish(ctx, r)
		case p := <-s.opts.Reload:
			s.opts.SetPolicy(p)
			s.log.Info("basebackup and retention policy reloaded", "concurrent", p.Concurrent, "threshold", p.Threshold,
				"inactivity", p.InactivityInterval, "schedule", p.Schedule, "retention", p.Retention, "retention_basebackups", p.RetentionBasebackups)
		case <-ticker.C:
		}
	}
}

// startDue starts basebackups of the tables due, as many as free slots allow.
func (s *scheduler) startDue(ctx context.Context, done chan<- result) error {
	if s.running >= s.opts.Concurrent {
		return nil
	}
	if s.opts.Initial && !s.initial {
		if err := s.loadInitial(ctx); err != nil {
			return err
		}
	}
	jobs, err := s.due(ctx, time.Now())
	if err != nil || len(jobs) == 0 {
		return err
	}
	jobs, err = s.resolve(ctx, jobs)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if s.running >= s.opts.Concurrent {
			break
		}
		st := s.state(j.oid)
		st.running = true
		s.running++
		s.log.Info("taking basebackup", "table", j.name, "table_id", j.tableID, "reason", j.reason)
		s.opts.Metrics.started()
		go func(j job) {
			o := s.opts.Options
			o.Reason = j.reason
			started := time.Now()
			if s.fromArchive(ctx, o, j) {
				done <- result{j, nil, time.Since(started)}
				return
			}
			_, err := take(ctx, s.cat, o, []target{{oid: j.oid, name: j.name}})
			done <- result{j, err, time.Since(started)}
		}(j)
	}
	return nil
}

// fromArchive builds the basebackup of a large table due by the
// threshold from the archive, and reports whether it did. A failure is
// logged, and the caller takes one from the source instead.
func (s *scheduler) fromArchive(ctx context.Context, o Options, j job) bool {
	if j.reason != ReasonThreshold || s.opts.SyntheticMinBytes <= 0 || j.tableID == 0 {
		return false
	}
	if k := s.cat.Keys(); k != nil && !k.Reads() {
		// The daemon of an encrypted archive may hold only the recipients:
		// it cannot read the archive, and takes the basebackup from the
		// source.
		return false
	}
	bases, err := s.cat.Basebackups(ctx, j.tableID)
	if err != nil || len(bases) == 0 || bases[len(bases)-1].RawBytes < s.opts.SyntheticMinBytes {
		return false
	}
	if _, err := Synthesize(ctx, s.cat, o, j.name); err != nil {
		s.log.Warn("basebackup from the archive failed, taking one from the source", "table", j.name, "table_id", j.tableID, "error", err)
		return false
	}
	return true
}

func (s *scheduler) state(oid uint32) *tableState {
	st := s.tables[oid]
	if st == nil {
		st = &tableState{}
		s.tables[oid] = st
	}
	return st
}

// finish records the outcome of a basebackup.
func (s *scheduler) finish(ctx context.Context, r result) {
	s.running--
	s.opts.Metrics.finished(r.took, r.err)
	st := s.state(r.job.oid)
	st.running = false
	switch {
	case ctx.Err() != nil:
		// Stopping: the next start takes it again.
	case r.err == nil:
		st.failures, st.initial = 0, false
	case errors.Is(r.err, ErrNoTable), errors.Is(r.err, ErrNotPublished):
		st.gone = true
		s.log.Warn("no basebackup of this table: "+r.err.Error(), "table", r.job.name, "reason", r.job.reason)
	default:
		st.failures++
		wait := min(s.opts.RetryBackoff<<min(st.failures-1, 20), maxRetryBackoff)
		st.nextTry = time.Now().Add(wait)
		s.log.Error("basebackup failed; taking it again later", "table", r.job.name, "reason", r.job.reason,
			"error", r.err, "failures", st.failures, "retry_in", wait)
	}
}

// loadInitial marks every table of the publication for a basebackup.
func (s *scheduler) loadInitial(ctx context.Context) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	tables, err := source.PublishedTables(ctx, conn, s.opts.Publication)
	if err != nil {
		return err
	}
	for _, t := range tables {
		s.state(t.OID).initial = true
	}
	s.initial = true
	s.log.Info("initial basebackups requested", "tables", len(tables))
	return nil
}

// due returns the tables that need a basebackup now, most urgent first,
// leaving out those running, gone or waiting after a failure.
func (s *scheduler) due(ctx context.Context, now time.Time) ([]job, error) {
	epochs, err := s.cat.Epochs(ctx)
	if err != nil || len(epochs) == 0 {
		return nil, err
	}
	epochStart := epochs[len(epochs)-1].StartLSN
	treeChanged, err := treeChanges(ctx, s.cat) // partitions.go
	if err != nil {
		return nil, err
	}
	// One row per source table: the newest catalog table of each OID.
	needs, err := s.cat.BasebackupNeeds(ctx, epochStart)
	if err != nil {
		return nil, err
	}
	var jobs []job
	seen := map[uint32]bool{}
	for _, n := range needs {
		j := job{oid: n.OID, tableID: n.TableID, name: n.Name}
		seen[j.oid] = true
		st := s.tables[j.oid]
		switch {
		case n.Inexact:
			j.reason = ReasonInexact
		case !n.InEpoch && n.Basebackups == 0:
			j.reason = ReasonNewTable
		case !n.InEpoch:
			j.reason = ReasonNewEpoch
		case treeChanged[j.oid]:
			j.reason = ReasonPartitionTree
		case st != nil && st.initial:
			j.reason = ReasonInitial
		case s.opts.Threshold > 0 && n.BlobsSinceBase > int64(s.opts.Threshold):
			j.reason = ReasonThreshold
		case s.opts.InactivityInterval > 0 && n.ChangesSinceBase > 0 && !n.LastChange.IsZero() &&
			now.Sub(n.LastChange) >= s.opts.InactivityInterval:
			j.reason = ReasonInactivity
		case s.opts.Schedule > 0 && now.Sub(n.NewestInEpochAt) >= s.opts.Schedule:
			j.reason = ReasonSchedule
		default:
			continue
		}
		jobs = append(jobs, j)
	}
	// Tables of the publication that the stream has not shown yet.
	for oid, st := range s.tables {
		if st.initial && !seen[oid] {
			jobs = append(jobs, job{oid: oid, name: fmt.Sprintf("table with OID %d", oid), reason: ReasonInitial})
		}
	}

	out := jobs[:0]
	for _, j := range jobs {
		st := s.tables[j.oid]
		if st != nil && (st.running || st.gone || now.Before(st.nextTry)) {
			continue
		}
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool {
		if ra, rb := urgency(out[a].reason), urgency(out[b].reason); ra != rb {
			return ra < rb
		}
		return out[a].oid < out[b].oid
	})
	return out, nil
}

// resolve checks on the source that the tables due still exist and gives
// them their current names (a rename reaches the catalog only with the
// table's next change). Dropped tables are remembered as gone: their
// archive stays, and needs no new basebackup.
func (s *scheduler) resolve(ctx context.Context, jobs []job) ([]job, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	oids := make([]uint32, len(jobs))
	for i, j := range jobs {
		oids[i] = j.oid
	}
	rels, err := source.Relations(ctx, conn, oids)
	if err != nil {
		return nil, err
	}
	names := map[uint32]string{}
	for oid, r := range rels {
		if r.Kind == 'r' || r.Kind == 'p' {
			names[oid] = schema.Table{Schema: r.Schema, Name: r.Name}.QualifiedName()
		}
	}
	out := jobs[:0]
	for _, j := range jobs {
		name, ok := names[j.oid]
		if !ok {
			s.state(j.oid).gone = true
			s.log.Info("table no longer exists on the source; its archive is kept, and no basebackup is taken", "table", j.name,
				"table_id", j.tableID, "reason", j.reason)
			continue
		}
		j.name = name
		out = append(out, j)
	}
	return out, nil
}

func (s *scheduler) connect(ctx context.Context) (*pgx.Conn, error) {
	return source.Connect(ctx, s.opts.Conn)
}

// purge runs Purge with the retention settings and logs what it did.
func (s *scheduler) purge(ctx context.Context) {
	o := retention.NewOptions()
	o.Retention, o.KeepBasebackups, o.Logger = s.opts.Retention, s.opts.RetentionBasebackups, s.log
	rep, err := retention.Purge(ctx, s.cat, o)
	s.opts.Metrics.purged(rep.Bytes(), err)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("purge failed; trying again at the next interval", "error", err, "retry_in", s.opts.PurgeInterval)
		}
		return
	}
	if len(rep.Tables) > 0 || rep.Bytes() > 0 {
		s.log.Info("purge complete", "tables", len(rep.Tables), "transactions", rep.Transactions,
			"segments_removed", rep.SegmentsRemoved, "segments_rewritten", rep.SegmentsRewritten, "bytes_freed", rep.Bytes())
	}
}
