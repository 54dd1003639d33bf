package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/config"
	"lbt/restore"
	"lbt/schema"
	"lbt/source"
)

type basebackupCmd struct {
	Table       []string `short:"t" xor:"what" placeholder:"TABLE" help:"Table to back up, as a SQL name (schema.table, parts quoted as in SQL); repeat for several (default: none)."`
	All         bool     `xor:"what" help:"Back up every table of the publication (default: false)."`
	FromArchive bool     `name:"from-archive" help:"Build the basebackups from the archive alone: each table's newest basebackup with the changes after it, reading nothing from the source (default: false)."`
	Jobs        int      `short:"j" placeholder:"N" help:"Connections copying one table's chunks at once, under the one snapshot; with --from-archive, files rewritten at once (default: basebackupJobs, the number of cores up to 4)."`
}

func (cmd *basebackupCmd) Help() string {
	return `Dumps the tables now, all under one snapshot whose place in the change stream is exactly known, and records the basebackups in the archive. Works while lbt backup runs: it uses its own connections. The archive must exist (lbt backup creates it), and the tables must be in the publication, or their later changes would be missing.`
}

func (cmd *basebackupCmd) Validate() error {
	if len(cmd.Table) == 0 && !cmd.All {
		return errors.New("give --table or --all")
	}
	if cmd.Jobs < 0 {
		return fmt.Errorf("--jobs must be at least 1, not %d", cmd.Jobs)
	}
	if cmd.FromArchive && cmd.All {
		return errors.New("--from-archive builds the tables named with --table, not --all")
	}
	return nil
}

func (cmd *basebackupCmd) Run(ctx context.Context, g *Globals) error {
	cfg, log, err := g.configure()
	if err != nil {
		return err
	}
	if cmd.FromArchive {
		return cmd.fromArchive(ctx, g, &cfg, log)
	}
	pc, err := cfg.ConnConfig()
	if err != nil {
		return usageError{err}
	}
	cat, err := openArchive(ctx, cfg, true, false)
	if err != nil {
		return err
	}
	defer cat.Close()

	tables := cmd.Table
	var leaves []string // partitions of a partitioned table named
	if cmd.All {
		if tables, err = publishedTables(ctx, pc, cfg.Publication); err != nil {
			return err
		}
	} else if tables, leaves, err = expandPartitioned(ctx, pc, cfg.Publication, tables); err != nil {
		return err
	}
	if !cfg.TrackNewTables {
		// The running daemon archives only the tables it already tracks;
		// a dump of another table would have no deltas after it.
		if tables, err = trackedOnly(ctx, cat, pc, tables, cmd.All, log); err != nil {
			return err
		}
		// A partition the daemon does not archive is left out, as --all does.
		if leaves, err = trackedOnly(ctx, cat, pc, leaves, true, log); err != nil {
			return err
		}
	}
	tables = append(tables, leaves...)
	if len(tables) == 0 && !cmd.All {
		return usageError{errors.New("nothing to back up: the partitions of the tables named are not archived (see the warnings)")}
	}
	opts := basebackup.NewOptions()
	opts.ArchiveDir = cfg.ArchiveDir
	opts.TempDir = cfg.EffectiveTempDir()
	opts.Conn = pc
	opts.Publication = cfg.Publication
	opts.Logger = log
	opts.Reason = basebackup.ReasonRequest
	opts.Jobs = cfg.BasebackupJobs
	if cmd.Jobs > 0 {
		opts.Jobs = cmd.Jobs
	}
	opts.ChunkBytes = int64(cfg.BasebackupChunkSize)
	bases, err := basebackup.Take(ctx, cat, opts, tables)
	for _, b := range bases {
		fmt.Fprintf(g.stdout, "%s\tlsn %s\t%d rows\t%d bytes\t%s\n", b.Definition.Table.QualifiedName(), pglogrepl.LSN(b.LSN), b.Rows, b.Bytes, b.Path)
	}
	return err
}

// publishedTables lists the SQL names of the tables of a publication.
func publishedTables(ctx context.Context, pc *pgconn.Config, publication string) ([]string, error) {
	conn, err := source.Connect(ctx, pc)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	tables, err := source.PublishedTables(ctx, conn, publication)
	if err != nil {
		return nil, err
	}
	if len(tables) == 0 {
		return nil, usageError{fmt.Errorf("publication %s has no tables (or does not exist): nothing to back up", publication)}
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Name
	}
	return names, nil
}

// trackedOnly keeps the tables the daemon archives: those in the catalog
// and those it found in the publication when it started, which it records.
// Naming another table is an error; with --all the others are skipped
// with a warning.
func trackedOnly(ctx context.Context, cat *catalog.Catalog, pc *pgconn.Config, tables []string, all bool, log hclog.Logger) ([]string, error) {
	tracked := map[uint32]bool{}
	for _, oid := range cat.PublishedOIDs(ctx) {
		tracked[oid] = true
	}
	conn, err := source.Connect(ctx, pc)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var keep []string
	for _, name := range tables {
		nsp, rel, err := schema.ParseName(name)
		if err != nil {
			return nil, usageError{err}
		}
		ids, err := cat.FindTable(ctx, nsp, rel)
		if err != nil {
			return nil, err
		}
		oid, _, _ := source.TableOID(ctx, conn, nsp, rel)
		if len(ids) > 0 || tracked[oid] || oid == 0 { // an unknown table gets dump's own error
			keep = append(keep, name)
			continue
		}
		msg := fmt.Sprintf("table %s is not archived: trackNewTables is false and it was not in the publication when lbt backup started; set trackNewTables: true, or restart lbt backup to pick it up", name)
		if !all {
			return nil, usageError{errors.New(msg)}
		}
		log.Warn(msg)
	}
	return keep, nil
}

// fromArchive builds each table's basebackup from the archive, without
// connecting to the source.
func (cmd *basebackupCmd) fromArchive(ctx context.Context, g *Globals, cfg *config.Config, log hclog.Logger) error {
	// It reads the archive's contents and writes files: an encrypted one
	// needs the identity and the recipients.
	cat, err := openArchive(ctx, *cfg, true, true)
	if err != nil {
		return err
	}
	defer cat.Close()
	opts := basebackup.NewOptions()
	opts.ArchiveDir = cfg.ArchiveDir
	opts.TempDir = cfg.EffectiveTempDir()
	opts.Logger = log
	opts.Reason = basebackup.ReasonRequest
	opts.ChunkBytes = int64(cfg.BasebackupChunkSize)
	opts.Memory = int64(cfg.RestoreMemory)
	opts.Jobs = cfg.BasebackupJobs
	if cmd.Jobs > 0 {
		opts.Jobs = cmd.Jobs
	}
	for _, t := range cmd.Table {
		b, err := basebackup.Synthesize(ctx, cat, opts, t)
		if errors.Is(err, restore.ErrNotSynthesizable) || errors.Is(err, restore.ErrNotRestorable) {
			return usageError{err}
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "%s\tlsn %s\t%d rows\t%d bytes\t%s\n", b.Definition.Table.QualifiedName(), pglogrepl.LSN(b.LSN), b.Rows, b.Bytes, b.Path)
	}
	return nil
}
