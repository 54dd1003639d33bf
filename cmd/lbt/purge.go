package main

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"

	"lbt/retention"
)

type purgeCmd struct {
	DryRun bool `help:"List what would be removed, and remove nothing (default: false)."`
}

func (cmd *purgeCmd) Help() string {
	return `Removes the basebackups and changes that retention and retentionBasebackups no longer keep. Every time within the retention window stays restorable: per table, the newest basebackup from before the window start is kept with all changes after it; retentionBasebackups keeps that many of the newest basebackups as well. Segment files left empty are removed, those left less than half full are rewritten.

The catalog rows go first, then the files, so that an interrupted purge leaves a consistent archive. Safe while lbt backup runs.`
}

func (cmd *purgeCmd) Run(ctx context.Context, g *Globals) error {
	cfg, log, err := g.configure()
	if err != nil {
		return err
	}
	opts := retention.NewOptions()
	opts.Retention = cfg.Retention
	opts.KeepBasebackups = cfg.RetentionBasebackups
	opts.DryRun = cmd.DryRun
	opts.Logger = log
	if opts.Retention <= 0 && opts.KeepBasebackups <= 0 {
		fmt.Fprintln(g.stdout, "retention and retentionBasebackups are not set: nothing is purged")
		return nil
	}
	cat, err := openArchive(ctx, cfg, !cmd.DryRun, false)
	if err != nil {
		return err
	}
	defer cat.Close()
	rep, err := retention.Purge(ctx, cat, opts)
	printPurge(g, rep)
	return err
}

func printPurge(g *Globals, rep retention.Report) {
	if rep.Skipped != "" {
		fmt.Fprintln(g.stdout, rep.Skipped)
		return
	}
	verb := "purged"
	if rep.DryRun {
		verb = "would purge"
	}
	if !rep.WindowStart.IsZero() {
		fmt.Fprintf(g.stdout, "keeping every time since %s restorable\n", rep.WindowStart.UTC().Format("2006-01-02 15:04:05Z07:00"))
	}
	if len(rep.Tables) == 0 {
		fmt.Fprintln(g.stdout, "no table has history that retention lets go")
	}
	for _, t := range rep.Tables {
		fmt.Fprintf(g.stdout, "%s %s: before %s: %d basebackups (%d bytes), %d blobs (%d bytes), %d transactions\n",
			verb, t.Name, pglogrepl.LSN(t.KeepLSN), t.Basebackups, t.BasebackupBytes, t.Blobs, t.BlobBytes, t.Transactions)
	}
	if rep.DryRun {
		fmt.Fprintf(g.stdout, "would remove %d segment files and rewrite %d: %d bytes of disk space returned\n",
			rep.SegmentsRemoved, rep.SegmentsRewritten, rep.Bytes())
		return
	}
	fmt.Fprintf(g.stdout, "removed %d segment files and rewrote %d, %d transactions: %d bytes of disk space returned\n",
		rep.SegmentsRemoved, rep.SegmentsRewritten, rep.Transactions, rep.Bytes())
}
