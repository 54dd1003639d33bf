package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/ingest"
	"lbt/ship"
	"lbt/source"
	"lbt/storage"
)

type backupCmd struct {
	CheckConfig bool `help:"Print the effective configuration, passwords masked, and exit without connecting (default: false)."`
}

func (cmd *backupCmd) Help() string {
	return `Runs until stopped: reads committed changes from the logical replication slot, writes them to the archive, and confirms to the server only what is durable. The first SIGINT or SIGTERM flushes and stops cleanly.

Use --check-config to see the configuration lbt would run with, after the config file, LBT_* variables and flags are combined.`
}

func (cmd *backupCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	if cmd.CheckConfig {
		_, err := io.WriteString(g.stdout, cfg.Redacted())
		return err
	}
	log := g.logger(cfg)

	pc, err := cfg.ConnConfig()
	if err != nil {
		return usageError{err}
	}
	log.Debug("connecting to the source database", "conn", source.ConnLabel(pc))
	conn, err := source.Connect(ctx, pc)
	if err != nil {
		return cfg.RedactError(err)
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	conn.Close(closeCtx)
	cancel()

	opts := ingest.NewOptions()
	opts.ArchiveDir = cfg.ArchiveDir
	opts.Conn = pc
	opts.Slot = cfg.SlotName
	opts.Publication = cfg.Publication
	opts.TrackNewTables = cfg.TrackNewTables
	opts.DeltasPerFile = cfg.DeltasPerFile
	opts.Fsync = cfg.Fsync
	opts.FlushInterval = cfg.FlushInterval
	opts.StatusInterval = cfg.StatusInterval
	opts.TempDir = cfg.EffectiveTempDir()
	opts.Logger = log
	if opts.Keys, err = cfg.Keys(); err != nil {
		return usageError{err}
	}
	health := ingest.NewHealth()
	opts.Health = health
	opts.Ready = func() {
		// Tell systemd (Type=notify) that lbt is streaming; a no-op elsewhere.
		daemon.SdNotify(false, daemon.SdNotifyReady)
	}

	// Before anything runs: a new catalog beside old files would disown them.
	if err := catalog.CheckOrphanFiles(cfg.ArchiveDir); err != nil {
		return err
	}
	unlock, err := ingest.LockArchive(cfg.ArchiveDir)
	if err != nil {
		return err
	}
	defer unlock()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var schedMetrics *basebackup.Metrics
	var shipMetrics *ship.Metrics
	if cfg.MetricsAddr != "" {
		reg := prometheus.NewRegistry()
		opts.Metrics = ingest.NewMetrics(reg)
		schedMetrics = basebackup.NewMetrics(reg)
		if cfg.ArchiveURL != "" {
			shipMetrics = ship.NewMetrics(reg)
		}
		healthy := func() error { return health.Check(time.Now(), opts.StallAfter) }
		if err := serveHTTP(ctx, log, "metrics", cfg.MetricsAddr, metricsHandler(reg, healthy)); err != nil {
			return err
		}
	}
	if cfg.DebugAddr != "" {
		if err := serveHTTP(ctx, log, "debug", cfg.DebugAddr, debugHandler()); err != nil {
			return err
		}
	}
	if err := startWatchdog(ctx, log, func() error { return health.Check(time.Now(), opts.StallAfter) }); err != nil {
		return err
	}
	errs := make(chan error, 3)
	workers := 0
	var remote storage.Store
	if cfg.ArchiveURL != "" {
		// Refused credentials or a missing bucket stop the daemon at
		// start; a store that does not answer yet does not (Start).
		s3, err := newRemote(cfg)
		if err != nil {
			return err
		}
		remote = s3
		shipper := ship.New(ship.Options{Dir: cfg.ArchiveDir, Remote: remote, KeepLocal: cfg.KeepLocalCopies,
			TempDir: filepath.Join(cfg.EffectiveTempDir(), "upload"), Interval: cfg.UploadInterval,
			Logger: log.Named("upload"), Metrics: shipMetrics})
		// A new host with an empty archiveDir continues the bucket's
		// archive. A store that does not answer yet cannot say whether it
		// holds one: the daemon begins one (Start warns of the store), and
		// the uploader refuses the store later if it does.
		name, pos, err := ship.Adopt(ctx, remote, opts.Keys, cfg.ArchiveDir, cfg.EffectiveTempDir())
		switch {
		case errors.Is(err, storage.ErrUnreachable):
		case err != nil:
			return err
		case name != "":
			log.Info("continuing the archive in the object store", "snapshot", name, "lsn", pglogrepl.LSN(pos.EndLSN))
		}
		if err := shipper.Start(ctx); err != nil {
			return err
		}
		opts.SealInterval = cfg.UploadInterval
		opts.Sealed = shipper.Sealed
		opts.Quiet = shipper.Quiet
		// Set whether or not local copies are kept now: an earlier run
		// may have removed some.
		opts.Remote = remote
		if cfg.ConfirmAfterUpload {
			opts.Covered = shipper.Covered
		}
		log.Info("uploading to the object store", "archive_url", s3.String(), "covered_lsn", pglogrepl.LSN(shipper.Covered()),
			"upload_interval", cfg.UploadInterval, "confirm_after_upload", cfg.ConfirmAfterUpload, "keep_local_copies", cfg.KeepLocalCopies)
		workers++
		go func() { errs <- shipper.Run(ctx) }()
	}
	go func() { errs <- ingest.Run(ctx, opts) }()
	workers++
	// SCHEDULER: the basebackup scheduler runs here beside ingest, in the
	// same ctx.
	sched := basebackup.NewSchedulerOptions()
	sched.ArchiveDir = cfg.ArchiveDir
	sched.TempDir = cfg.EffectiveTempDir()
	sched.Conn = pc
	sched.Publication = cfg.Publication
	sched.Logger = log.Named("basebackup")
	sched.Keys = opts.Keys
	sched.SetPolicy(schedulerPolicy(cfg))
	sched.Remote = remote
	sched.Jobs = cfg.BasebackupJobs
	sched.ChunkBytes = int64(cfg.BasebackupChunkSize)
	sched.Memory = int64(cfg.RestoreMemory)
	sched.SyntheticMinBytes = int64(cfg.SyntheticBasebackupSize)
	sched.Initial = cfg.InitialBasebackup
	policies := make(chan basebackup.Policy)
	sched.Reload = policies
	sched.Metrics = schedMetrics
	go reloadOnHUP(ctx, g, log, cfg, policies)
	workers++
	go func() { errs <- basebackup.RunScheduler(ctx, sched) }()
	var first error
	for i := 0; i < workers; i++ {
		err := <-errs
		if err != nil && first == nil {
			first = err
			stop() // one part failing stops the other cleanly
		}
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	if first != nil {
		return cfg.RedactError(first)
	}
	return nil
}
