package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pglogrepl"

	"lbt/catalog"
	"lbt/config"
	"lbt/ingest"
)

type repairCmd struct {
	RebuildCatalog bool `required:"" help:"Rebuild the catalog from the archive's segments and basebackup sidecars (required: the only repair there is)."`
	Force          bool `help:"Replace an existing catalog, keeping it as catalog.db.bak-<time> (default: false)."`
}

func (cmd *repairCmd) Help() string {
	return `With --rebuild-catalog, rebuilds a missing or damaged catalog from the archive's files, as restic's rebuild-index does for its index: every segment's metadata blobs and every basebackup's sidecar. The new catalog is written as catalog.db.new and renamed into place only when complete. An existing catalog is refused unless --force, which keeps it as catalog.db.bak-<time>. lbt backup must not run meanwhile. docs/FORMAT.md ("Recovery without a catalog") says what a rebuilt catalog cannot know.`
}

func (cmd *repairCmd) Run(ctx context.Context, g *Globals) error {
	cfg, log, err := g.configure()
	if err != nil {
		return err
	}
	// The daemon's lock: nothing may write the archive while its catalog
	// is replaced.
	unlock, err := ingest.LockArchive(cfg.ArchiveDir)
	if err != nil {
		return err
	}
	defer unlock()
	keys, err := cfg.Keys()
	if err != nil {
		return usageError{err}
	}
	if err := checkAllLocal(ctx, cfg); err != nil {
		return err
	}
	rep, err := catalog.Rebuild(ctx, cfg.ArchiveDir, cmd.Force, keys)
	for _, w := range rep.Warnings {
		log.Warn(w)
	}
	if err != nil {
		if errors.Is(err, catalog.ErrCorrupt) {
			return fmt.Errorf("rebuild the catalog of %s: %w", cfg.ArchiveDir, err)
		}
		return err
	}
	if rep.Backup != "" {
		log.Info("the old catalog is kept", "path", rep.Backup)
	}
	fmt.Fprintf(g.stdout, "rebuilt the catalog of %s: %d segments, %d commits, %d blobs, %d transactions, %d tables, %d basebackups; position %s (epoch %d)\n",
		cfg.ArchiveDir, rep.Segments, rep.Commits, rep.Blobs, rep.Transactions, rep.Tables, rep.Basebackups,
		pglogrepl.LSN(rep.Position.EndLSN), rep.Position.Epoch)
	return nil
}

// checkAllLocal refuses a rebuild from archiveDir while the object store
// holds archive files that archiveDir lacks (their local copies removed
// after upload): the rebuilt catalog would not know them, and the next
// upload would delete them from the store.
func checkAllLocal(ctx context.Context, cfg config.Config) error {
	if cfg.ArchiveURL == "" {
		return nil
	}
	remote, err := openRemote(ctx, cfg)
	if err != nil {
		return err
	}
	missing := 0
	for _, prefix := range []string{"segments/", "base/"} {
		infos, err := remote.List(ctx, prefix)
		if err != nil {
			return err
		}
		for _, i := range infos {
			if _, err := os.Stat(filepath.Join(cfg.ArchiveDir, filepath.FromSlash(i.Name))); errors.Is(err, fs.ErrNotExist) {
				missing++
			}
		}
	}
	if missing > 0 {
		return usageError{fmt.Errorf("%d archive files are in %s but not in %s (their local copies were removed after upload): a catalog rebuilt from %s alone would not know them, and the next upload would delete them from the bucket; copy them into %s first; nothing was changed",
			missing, remote, cfg.ArchiveDir, cfg.ArchiveDir, cfg.ArchiveDir)}
	}
	return nil
}
