package ship

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/jackc/pglogrepl"

	"lbt/catalog"
	"lbt/crypt"
	"lbt/storage"
)

// Adopt makes dir, an archive directory without a catalog, continue the
// archive in remote: a new backup host taking over from a lost one. It
// fetches the newest snapshot, prepares it to go on (catalog.ContinueFrom)
// and makes it dir's catalog; the daemon then resumes the stream at the
// snapshot's position, and the slot, which confirmAfterUpload kept at or
// before it, sends the rest again: each transaction is archived once. It
// returns the snapshot's name and position, or "" when there is nothing
// to adopt (dir has a catalog, or remote holds no snapshot).
//
// UPLOAD.json is written before the catalog takes its name, so that a crash
// leaves either no catalog (the next start adopts again) or one that the
// uploader knows for the store's.
func Adopt(ctx context.Context, remote storage.Store, keys *crypt.Keys, dir, tempDir string) (string, catalog.Position, error) {
	var pos catalog.Position
	if _, err := os.Stat(filepath.Join(dir, catalog.CatalogFile)); !errors.Is(err, fs.ErrNotExist) {
		return "", pos, err
	}
	name, err := NewestSnapshot(ctx, remote)
	if errors.Is(err, catalog.ErrNotArchive) {
		return "", pos, nil
	}
	if err != nil {
		return "", pos, fmt.Errorf("continue the archive in %s: %w", remote, err)
	}
	fail := func(err error) (string, catalog.Position, error) {
		return "", pos, fmt.Errorf("continue the archive in %s from %s: %w", remote, name, err)
	}
	work := filepath.Join(tempDir, "adopt")
	if err := os.RemoveAll(work); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(work)
	if err := Fetch(ctx, remote, keys, name, filepath.Join(work, catalog.CatalogFile)); err != nil {
		return fail(err)
	}
	used, err := segmentIDs(ctx, remote)
	if err != nil {
		return fail(err)
	}
	cat, err := catalog.Open(ctx, work)
	if err != nil {
		return fail(err)
	}
	err = cat.ContinueFrom(ctx, used)
	if err == nil {
		pos, _, err = cat.Position(ctx)
	}
	if cerr := cat.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(dir, storage.DirMode); err != nil {
		return fail(err)
	}
	if err := writeStateSynced(dir, State{CoveredLSN: pglogrepl.LSN(pos.EndLSN).String(), UpdatedAt: time.Now().UTC()}); err != nil {
		return fail(err)
	}
	// Closed last, the catalog has no write-ahead log left; one that
	// stayed goes with it.
	for _, suffix := range []string{"-wal", ""} {
		src := filepath.Join(work, catalog.CatalogFile+suffix)
		if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) && suffix != "" {
			continue
		}
		if err := os.Rename(src, filepath.Join(dir, catalog.CatalogFile+suffix)); err != nil {
			return fail(err)
		}
	}
	if err := (storage.OS{}).SyncDir(dir); err != nil {
		return fail(err)
	}
	return name, pos, nil
}

// segmentIDs lists the ids of the segment objects in remote.
func segmentIDs(ctx context.Context, remote storage.Store) ([]int64, error) {
	infos, err := remote.List(ctx, "segments/")
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, i := range infos {
		if id, ok := catalog.ParseSegmentName(path.Base(i.Name)); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// writeStateSynced writes StateFile in dir, whole and durable.
func writeStateSynced(dir string, st State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, StateFile)
	f, err := os.OpenFile(p+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, storage.FileMode)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p+".tmp", p)
	}
	if err == nil {
		err = (storage.OS{}).SyncDir(dir)
	}
	return err
}
