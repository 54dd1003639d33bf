package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"

	"github.com/hashicorp/go-hclog"

	"lbt/catalog"
)

// maxReplans bounds how often a restore reads the catalog again because a
// purge removed a file that the rows it had read named.
const maxReplans = 3

// archiveFiles are the files of a plan, opened before any is read: a purge
// that removes one once it is open no longer matters to the restore (an
// open file stays readable), and one that removed it since the plan's rows
// were read is seen at once, before anything is written to the target.
type archiveFiles struct {
	src   *catalog.BlobSource
	bases []io.ReadCloser // the basebackup's files, in the order of its Files; none without one
}

func (f *archiveFiles) close() {
	if f == nil {
		return
	}
	f.src.Close()
	for _, b := range f.bases {
		b.Close()
	}
}

// openFiles opens the basebackup's files and the segments of pl.
func openFiles(ctx context.Context, cat *catalog.Catalog, pl *plan) (*archiveFiles, error) {
	f := &archiveFiles{src: catalog.NewBlobSource(ctx, cat.Store(), cat.Keys())}
	for _, c := range pl.bb.Files() {
		base, err := cat.Store().ReadRange(ctx, c.Path, 0, -1)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("basebackup %d: %w", pl.bb.ID, err)
		}
		f.bases = append(f.bases, base)
	}
	var ids []int64
	for _, b := range pl.blobs {
		ids = append(ids, b.SegmentID)
	}
	slices.Sort(ids)
	if err := f.src.Open(slices.Compact(ids)...); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// planAndOpen makes a plan with makePlan and opens its files. The plan's
// rows are read in one read snapshot of the catalog, then the files they
// name are opened; purge removes rows first, then files (docs/FORMAT.md,
// "Readers while purge runs"). So the rows are of one moment, before or
// after a purge commits, never a mix of both; and a file found missing
// means they are stale: they are read again, which either finds the history
// elsewhere (a rewritten segment) or refuses the restore.
func planAndOpen(ctx context.Context, cat *catalog.Catalog, log hclog.Logger, makePlan func(view *catalog.Catalog) (*plan, []string, error)) (*plan, []string, *archiveFiles, error) {
	for attempt := 1; ; attempt++ {
		var pl *plan
		var warnings []string
		var files *archiveFiles
		err := cat.ReadSnapshot(ctx, func(view *catalog.Catalog) error {
			var err error
			if pl, warnings, err = makePlan(view); err != nil {
				return err
			}
			files, err = openFiles(ctx, view, pl)
			return err
		})
		if err == nil {
			return pl, warnings, files, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || pl == nil || attempt == maxReplans {
			return nil, nil, nil, err
		}
		log.Info("an archive file the catalog named was purged meanwhile; reading the catalog again", "error", err)
	}
}

// planTableAndOpen plans the restore of one (not partitioned) table, with
// its partition history checked, and opens the plan's files.
func planTableAndOpen(ctx context.Context, cat *catalog.Catalog, opts *Options) (*plan, []string, *archiveFiles, error) {
	return planAndOpen(ctx, cat, opts.Logger, func(view *catalog.Catalog) (*plan, []string, error) {
		pl, warnings, err := makePlan(ctx, view, opts)
		if err == nil {
			err = checkPartitionHistory(ctx, view, pl)
		}
		return pl, warnings, err
	})
}
