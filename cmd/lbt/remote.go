package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dustin/go-humanize"

	"lbt/catalog"
	"lbt/config"
	"lbt/ship"
	"lbt/storage"
)

// openRemote returns the object store of archiveUrl, checked with one
// request: an unreachable endpoint, refused credentials or a missing bucket
// is one line here.
func openRemote(ctx context.Context, cfg config.Config) (*storage.S3, error) {
	s, err := newRemote(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// newRemote returns the object store of archiveUrl without a request.
func newRemote(cfg config.Config) (*storage.S3, error) {
	loc, err := cfg.S3Location()
	if err != nil {
		return nil, usageError{err}
	}
	region := cfg.S3Region
	for _, v := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if region == "" {
			region = os.Getenv(v)
		}
	}
	if region == "" {
		region = "us-east-1"
	}
	s, err := storage.NewS3(storage.S3Config{Bucket: loc.Bucket, Prefix: loc.Prefix, Endpoint: cfg.S3Endpoint,
		Region: region, ForcePathStyle: cfg.S3ForcePathStyle})
	if err != nil {
		return nil, usageError{err}
	}
	return s, nil
}

// readMissingFromBucket makes cat, the live catalog of the backup host,
// read from the bucket the files whose local copies were removed after
// upload (keepLocalCopies off). No request is sent until a file is
// missing locally, so that the host restores from its local files while
// the store is down.
func readMissingFromBucket(cat *catalog.Catalog, cfg config.Config) error {
	if cfg.ArchiveURL == "" {
		return nil
	}
	remote, err := newRemote(cfg)
	if err != nil {
		return err
	}
	cat.ReadMissingFrom(remote)
	return nil
}

// bucketCacheDir, under archiveDir, holds the catalog snapshot fetched from
// the object store by a reader on a machine without the live catalog.
const bucketCacheDir = "bucket"

// readArchive is an archive opened for reading: its catalog, and the object
// store its files are read from when they come from the bucket.
type readArchive struct {
	cat    *catalog.Catalog
	remote *storage.S3 // nil when the files are local
}

func (a *readArchive) Close() error { return a.cat.Close() }

// openReadArchive opens the archive for restore, inspect, status and
// verify. The live catalog in archiveDir is used when it is there (the
// backup host). Otherwise, with archiveUrl set, the newest catalog snapshot
// in the bucket is fetched into archiveDir/bucket (again only when a newer
// one is there) and the files are read from the bucket, range by range as
// the reader needs them. The catalog gets cfg's encryption keys; a command
// that reads the files' contents passes contents, so that a missing or
// wrong identity is one line before it starts.
func openReadArchive(ctx context.Context, cfg config.Config, contents bool) (*readArchive, error) {
	keys, err := cfg.Keys()
	if err != nil {
		return nil, usageError{err}
	}
	_, err = os.Stat(filepath.Join(cfg.ArchiveDir, catalog.CatalogFile))
	if cfg.ArchiveURL == "" || err == nil {
		cat, err := openArchive(ctx, cfg, false, contents)
		if err != nil {
			return nil, err
		}
		return &readArchive{cat: cat}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	remote, err := openRemote(ctx, cfg)
	if err != nil {
		return nil, err
	}
	name, err := ship.NewestSnapshot(ctx, remote)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.ArchiveDir, bucketCacheDir)
	marker := filepath.Join(dir, "SNAPSHOT")
	if have, _ := os.ReadFile(marker); strings.TrimSpace(string(have)) != name {
		os.Remove(marker)
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(filepath.Join(dir, catalog.CatalogFile+suffix))
		}
		if err := ship.Fetch(ctx, remote, keys, name, filepath.Join(dir, catalog.CatalogFile)); err != nil {
			return nil, err
		}
		if err := os.WriteFile(marker, []byte(name+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("open archive: %w", err)
		}
	}
	cat, err := catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		return nil, err
	}
	cat.SetFiles(storage.OS{}, remote)
	if err := useKeys(ctx, cat, keys, contents); err != nil {
		cat.Close()
		return nil, err
	}
	return &readArchive{cat: cat, remote: remote}, nil
}

// reportDownload says how much of the bucket's archive a reader fetched.
func (a *readArchive) reportDownload(ctx context.Context, w io.Writer) {
	if a.remote == nil {
		return
	}
	infos, err := a.remote.List(ctx, "")
	if err != nil {
		return
	}
	var total int64
	for _, i := range infos {
		if !strings.HasPrefix(i.Name, ship.SnapshotPrefix) {
			total += i.Size
		}
	}
	pct := 0.0
	if total > 0 {
		pct = 100 * float64(a.remote.BytesRead()) / float64(total)
	}
	fmt.Fprintf(w, "downloaded %s of the archive's %s in %s (%.1f%%), besides the catalog snapshot\n",
		humanize.IBytes(uint64(a.remote.BytesRead())), humanize.IBytes(uint64(total)), a.remote, pct)
}
