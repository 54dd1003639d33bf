package ship

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/storage"
)

// goldenArchive copies the golden archive (catalog/testdata/golden) into
// a new directory, its segment sealed as at an upload, and returns the
// directory and the files its catalog names.
func goldenArchive(t *testing.T) (string, []string) {
	t.Helper()
	src := filepath.Join("..", "catalog", "testdata", "golden")
	dir := filepath.Join(t.TempDir(), "archive")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o700)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, catalog.CatalogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE segment SET sealed = 1`); err != nil {
		t.Fatal(err)
	}
	var names []string
	eachRow(t, db, `SELECT path FROM basebackup`, func(r *sql.Rows) error {
		var p string
		err := r.Scan(&p)
		names = append(names, p, catalog.SidecarName(p))
		return err
	})
	eachRow(t, db, `SELECT id FROM segment`, func(r *sql.Rows) error {
		var id int64
		err := r.Scan(&id)
		names = append(names, filepath.ToSlash(catalog.SegmentName(id)))
		return err
	})
	if len(names) < 3 {
		t.Fatalf("the golden archive names %v: want a segment and a basebackup", names)
	}
	return dir, names
}

// eachRow calls scan for each row of query.
func eachRow(t *testing.T, db *sql.DB, query string, scan func(*sql.Rows) error) {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// flakyStore fails the Put with index failAt (counting from 0): before
// the object is stored, or, with stored, after (the store holds it, the
// answer is lost).
type flakyStore struct {
	storage.Store
	puts   int
	failAt int
	stored bool
}

var errInjected = errors.New("injected failure")

func (f *flakyStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	i := f.puts
	f.puts++
	if i != f.failAt {
		return f.Store.Put(ctx, name, r, size)
	}
	if f.stored {
		if err := f.Store.Put(ctx, name, r, size); err != nil {
			return err
		}
	}
	return fmt.Errorf("put %s: %w", name, errInjected)
}

// newShipper returns a started Shipper of the archive in dir with a
// snapshot of it queued.
func newShipper(t *testing.T, dir string, remote storage.Store, keep bool) *Shipper {
	t.Helper()
	s, cat, pos := startShipper(t, dir, remote, keep, catalog.OpenReadOnly)
	defer cat.Close()
	if err := s.Sealed(t.Context(), cat, pos); err != nil {
		t.Fatal(err)
	}
	return s
}

// startShipper returns a started Shipper of the archive in dir, and the
// archive's catalog opened with open (catalog.Open as the daemon does)
// and its position.
func startShipper(t *testing.T, dir string, remote storage.Store, keep bool,
	open func(context.Context, string) (*catalog.Catalog, error)) (*Shipper, *catalog.Catalog, catalog.Position) {
	t.Helper()
	ctx := t.Context()
	s := New(Options{Dir: dir, Remote: remote, TempDir: filepath.Join(t.TempDir(), "upload"), KeepLocal: keep})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cat, err := open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	pos, _, err := cat.Position(ctx)
	if err != nil {
		cat.Close()
		t.Fatal(err)
	}
	return s, cat, pos
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// A local copy is removed only once the store holds the file and a
// snapshot that points at it: a failure at any upload, before or after
// the store took the object, leaves every local copy, and nothing is
// covered; the next attempt uploads the rest and then removes them
// (unless KeepLocal).
func TestShip_RemovesLocalCopiesOnlyAfterTheSnapshot(t *testing.T) {
	for _, keep := range []bool{false, true} {
		for _, stored := range []bool{false, true} {
			for failAt := 0; failAt < 4; failAt++ { // 3 files, then the snapshot
				t.Run(fmt.Sprintf("keep=%v/stored=%v/put%d", keep, stored, failAt), func(t *testing.T) {
					ctx := t.Context()
					dir, names := goldenArchive(t)
					bucket := storage.NewLocal(storage.OS{}, filepath.Join(t.TempDir(), "bucket"))
					remote := &flakyStore{Store: bucket, failAt: failAt, stored: stored}
					s := newShipper(t, dir, remote, keep)
					snap := s.take()
					if err := s.ship(ctx, snap); !errors.Is(err, errInjected) {
						t.Fatalf("ship with put %d failing: %v", failAt, err)
					}
					for _, n := range names {
						if !exists(t, filepath.Join(dir, n)) {
							t.Errorf("%s was removed locally although the upload failed at put %d", n, failAt)
						}
					}
					if s.Covered() != 0 {
						t.Errorf("covered %X after a failed upload", s.Covered())
					}

					if err := s.ship(ctx, snap); err != nil {
						t.Fatalf("second attempt: %v", err)
					}
					if s.Covered() != snap.pos.EndLSN {
						t.Errorf("covered %X, want %X", s.Covered(), snap.pos.EndLSN)
					}
					list, err := bucket.List(ctx, SnapshotPrefix)
					if err != nil || len(list) != 1 {
						t.Fatalf("the bucket holds snapshots %v (%v), want one", list, err)
					}
					for _, n := range names {
						if _, err := bucket.Stat(ctx, n); err != nil {
							t.Errorf("%s is not in the bucket: %v", n, err)
						}
						if local := exists(t, filepath.Join(dir, n)); local != keep {
							t.Errorf("%s local: %v, want %v (keepLocalCopies %v)", n, local, keep, keep)
						}
					}
				})
			}
		}
	}
}

// A copy that a crash left after the snapshot was uploaded goes at the
// next upload, in a new run that learnt what the store holds by listing
// it; and the readers read through the store then.
func TestShip_NextRunRemovesCopiesLeftBehind(t *testing.T) {
	ctx := t.Context()
	dir, names := goldenArchive(t)
	bucket := storage.NewLocal(storage.OS{}, filepath.Join(t.TempDir(), "bucket"))
	s := newShipper(t, dir, bucket, true) // as if it crashed before removing
	if err := s.ship(ctx, s.take()); err != nil {
		t.Fatal(err)
	}
	s = newShipper(t, dir, bucket, false)
	if err := s.ship(ctx, s.take()); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	cat.ReadMissingFrom(bucket)
	for _, n := range names {
		if exists(t, filepath.Join(dir, n)) {
			t.Errorf("%s is still local after the next upload", n)
		}
		if _, err := cat.Store().Stat(ctx, n); err != nil {
			t.Errorf("%s: not readable through the catalog's store: %v", n, err)
		}
	}
	if err := cat.CheckIdentity(ctx); err != nil {
		t.Errorf("the catalog does not read its files from the store: %v", err)
	}
}

// Start refuses a store whose files this archive directory might not
// know: one without the catalog that uploaded them, and a catalog older
// than the store's newest snapshot.
func TestShip_StartRefusesWhatCouldDeleteTheStoresFiles(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string, bucket storage.Store, endLSN uint64)
		want    string // "" for no error
	}{
		{"same archive", func(t *testing.T, dir string, bucket storage.Store, endLSN uint64) {
			putSnapshot(t, bucket, endLSN)
		}, ""},
		{"empty store, new archive directory", func(t *testing.T, dir string, bucket storage.Store, endLSN uint64) {
			os.Remove(filepath.Join(dir, StateFile))
		}, ""},
		{"no upload state", func(t *testing.T, dir string, bucket storage.Store, endLSN uint64) {
			putSnapshot(t, bucket, endLSN)
			os.Remove(filepath.Join(dir, StateFile))
		}, "did not upload"},
		{"no catalog", func(t *testing.T, dir string, bucket storage.Store, endLSN uint64) {
			putSnapshot(t, bucket, endLSN)
			os.Remove(filepath.Join(dir, catalog.CatalogFile))
		}, "did not upload"},
		{"catalog older than the store", func(t *testing.T, dir string, bucket storage.Store, endLSN uint64) {
			putSnapshot(t, bucket, endLSN+1)
		}, "older than the archive it uploaded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			dir, _ := goldenArchive(t)
			if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{}\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cat, err := catalog.OpenReadOnly(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			pos, _, err := cat.Position(ctx)
			cat.Close()
			if err != nil {
				t.Fatal(err)
			}
			bucket := storage.NewLocal(storage.OS{}, filepath.Join(t.TempDir(), "bucket"))
			tt.prepare(t, dir, bucket, pos.EndLSN)
			s := New(Options{Dir: dir, Remote: bucket, TempDir: filepath.Join(t.TempDir(), "upload")})
			err = s.Start(ctx)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Start: %v", err)
			case tt.want != "" && (!errors.Is(err, ErrOtherArchive) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Start: %v, want ErrOtherArchive saying %q", err, tt.want)
			}
		})
	}
}

func putSnapshot(t *testing.T, bucket storage.Store, endLSN uint64) {
	t.Helper()
	name := SnapshotPrefix + fmt.Sprintf("%016X-%016X.db", endLSN, 1)
	if err := bucket.Put(t.Context(), name, strings.NewReader("snapshot"), -1); err != nil {
		t.Fatal(err)
	}
}

// A new host continues the store's archive: its empty archiveDir gets the
// newest snapshot as its catalog, whose empty active segment (never
// uploaded) is retired and whose next segment id is past every segment
// object in the store, unreferenced ones too; the uploader then takes the
// store for its own, and the files read through the store.
func TestAdopt_ContinuesTheStoresArchive(t *testing.T) {
	ctx := t.Context()
	old, names := goldenArchive(t)
	db, err := sql.Open("sqlite", filepath.Join(old, catalog.CatalogFile))
	if err != nil {
		t.Fatal(err)
	}
	// The daemon's new active segment, only a header, as at every seal.
	_, err = db.Exec(`INSERT INTO segment (id, created_at, size) VALUES (2, 0, ?)`, catalog.SegmentHeaderSize)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	bucket := storage.NewLocal(storage.OS{}, filepath.Join(t.TempDir(), "bucket"))
	s := newShipper(t, old, bucket, false)
	if err := s.ship(ctx, s.take()); err != nil {
		t.Fatal(err)
	}
	// Uploaded by the lost host after its last snapshot.
	if err := bucket.Put(ctx, "segments/00000009.lbs", strings.NewReader("unreferenced"), -1); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "new")
	name, pos, err := Adopt(ctx, bucket, nil, dir, t.TempDir())
	if err != nil || name == "" || pos.EndLSN != s.Covered() {
		t.Fatalf("Adopt: %q at %X, %v; want the snapshot at %X", name, pos.EndLSN, err, s.Covered())
	}
	cat, err := catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if _, ok, err := cat.ActiveSegment(ctx); ok || err != nil {
		t.Errorf("the adopted catalog has an active segment (%v): its file is nowhere", err)
	}
	if next, _, err := cat.NextIDs(ctx); err != nil || next != 10 {
		t.Errorf("next segment id %d (%v), want 10: past the store's segments", next, err)
	}
	cat.ReadMissingFrom(bucket)
	for _, n := range names {
		if _, err := cat.Store().Stat(ctx, n); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if err := cat.CheckIdentity(ctx); err != nil {
		t.Errorf("the adopted catalog does not read its files: %v", err)
	}
	if again, _, err := Adopt(ctx, bucket, nil, dir, t.TempDir()); again != "" || err != nil {
		t.Errorf("Adopt of a directory with a catalog: %q, %v; want nothing done", again, err)
	}
	next := New(Options{Dir: dir, Remote: bucket, TempDir: filepath.Join(t.TempDir(), "upload")})
	if err := next.Start(ctx); err != nil {
		t.Errorf("the uploader refuses the adopted archive: %v", err)
	}
	if next.Covered() != pos.EndLSN {
		t.Errorf("covered %X, want %X", next.Covered(), pos.EndLSN)
	}

	empty := storage.NewLocal(storage.OS{}, filepath.Join(t.TempDir(), "empty"))
	if got, _, err := Adopt(ctx, empty, nil, filepath.Join(t.TempDir(), "new2"), t.TempDir()); got != "" || err != nil {
		t.Errorf("Adopt from an empty store: %q, %v; want nothing done", got, err)
	}
}

// Quiet, the idle source's clock, takes a snapshot only when another
// writer of the catalog (a basebackup, a purge) committed since the last
// one, and Interval has passed since it: once after start, then not again
// for an unchanged catalog nor for the daemon's own commits (Sealed sends
// those); Sealed always takes one.
func TestShip_QuietSnapshotsOnlyWhatOthersChanged(t *testing.T) {
	ctx := t.Context()
	dir, _ := goldenArchive(t)
	other, err := sql.Open("sqlite", filepath.Join(dir, catalog.CatalogFile)) // as the scheduler's
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// The daemon's active segment, only a header, as between two seals.
	if _, err := other.Exec(`INSERT INTO segment (id, created_at, size) VALUES (2, 0, ?)`, catalog.SegmentHeaderSize); err != nil {
		t.Fatal(err)
	}
	bucket := storage.NewLocal(storage.OS{}, filepath.Join(t.TempDir(), "bucket"))
	s, cat, pos := startShipper(t, dir, bucket, false, catalog.Open) // the daemon's catalog: one connection
	defer cat.Close()
	otherCommits := 0
	steps := []struct {
		name     string
		do       func(t *testing.T)
		call     func() error
		snapshot bool
	}{
		{"first after start", nil, func() error { return s.Quiet(ctx, cat, pos) }, true},
		{"unchanged", nil, func() error { return s.Quiet(ctx, cat, pos) }, false},
		{"the daemon's own commit", func(t *testing.T) {
			if err := cat.SetMeta(ctx, "test.own", "1"); err != nil {
				t.Fatal(err)
			}
		}, func() error { return s.Quiet(ctx, cat, pos) }, false},
		{"another writer's commit", func(t *testing.T) {
			otherCommits++
			if _, err := other.Exec(`INSERT INTO meta (key, value) VALUES (?, '1')`, fmt.Sprint("test.other.", otherCommits)); err != nil {
				t.Fatal(err)
			}
		}, func() error { return s.Quiet(ctx, cat, pos) }, true},
		{"unchanged again", nil, func() error { return s.Quiet(ctx, cat, pos) }, false},
		{"a seal", nil, func() error { return s.Sealed(ctx, cat, pos) }, true},
		{"another writer's commit within Interval of the seal", func(t *testing.T) {
			s.o.Interval = time.Hour
			otherCommits++
			if _, err := other.Exec(`INSERT INTO meta (key, value) VALUES (?, '1')`, fmt.Sprint("test.other.", otherCommits)); err != nil {
				t.Fatal(err)
			}
		}, func() error { return s.Quiet(ctx, cat, pos) }, false},
		{"the same once Interval has passed", func(t *testing.T) {
			s.o.Interval = 0
		}, func() error { return s.Quiet(ctx, cat, pos) }, true},
	}
	uploaded := 0
	for _, st := range steps {
		if st.do != nil {
			st.do(t)
		}
		if err := st.call(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		snap := s.take()
		if (snap != nil) != st.snapshot {
			t.Fatalf("%s: snapshot taken %v, want %v", st.name, snap != nil, st.snapshot)
		}
		if snap == nil {
			continue
		}
		if err := s.ship(ctx, snap); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		s.done(snap)
		uploaded++
		// The store lacks the active segment's file: its snapshot
		// does not point at it.
		name, err := NewestSnapshot(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "fetched", catalog.CatalogFile)
		if err := Fetch(ctx, bucket, nil, name, path); err != nil {
			t.Fatal(err)
		}
		fetched, err := catalog.OpenReadOnly(ctx, filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		var live int
		err = fetched.DB().QueryRow(`SELECT count(*) FROM segment WHERE id = 2 AND retired_at IS NULL`).Scan(&live)
		fetched.Close()
		if err != nil || live != 0 {
			t.Errorf("%s: the uploaded snapshot has the active segment live (%d, %v)", st.name, live, err)
		}
	}
	if uploaded != 4 {
		t.Errorf("%d snapshots uploaded, want 4", uploaded)
	}
}

// Sealed only pins the catalog, in the archiver; Run copies it out later:
// what the archiver commits in between is not in the uploaded snapshot,
// and a snapshot replaced before it was copied is skipped for the newer.
func TestShip_CopiesThePinnedMoment(t *testing.T) {
	ctx := t.Context()
	dir, _ := goldenArchive(t)
	bucket := storage.NewLocal(storage.OS{}, filepath.Join(t.TempDir(), "bucket"))
	s, cat, pos := startShipper(t, dir, bucket, false, catalog.Open)
	defer cat.Close()
	probe := func(t *testing.T) string { return newestProbe(t, bucket) }

	if err := cat.SetMeta(ctx, "test.probe", "sealed"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sealed(ctx, cat, pos); err != nil {
		t.Fatal(err)
	}
	if err := cat.SetMeta(ctx, "test.probe", "after the seal"); err != nil {
		t.Fatal(err)
	}
	snap := s.take()
	if err := s.ship(ctx, snap); err != nil {
		t.Fatal(err)
	}
	s.done(snap)
	if got := probe(t); got != "sealed" {
		t.Errorf("the uploaded snapshot has probe %q, want the value at the seal", got)
	}

	if err := s.Sealed(ctx, cat, pos); err != nil {
		t.Fatal(err)
	}
	older := s.take()
	if err := cat.SetMeta(ctx, "test.probe", "second seal"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sealed(ctx, cat, pos); err != nil {
		t.Fatal(err)
	}
	if err := s.ship(ctx, older); !errors.Is(err, errStale) {
		t.Errorf("a snapshot replaced before it was copied: %v, want errStale", err)
	}
	newer := s.take()
	if err := s.ship(ctx, newer); err != nil {
		t.Fatal(err)
	}
	if got := probe(t); got != "second seal" {
		t.Errorf("the uploaded snapshot has probe %q, want the newer seal's", got)
	}
}

// Seals that come while Run copies and uploads earlier snapshots never
// stop it, and the store ends with the newest: the archiver leaves a
// snapshot's file to the copier and Run (the review found a seal during
// the copy removing the file being written, so that the copy failed and
// the daemon stopped).
func TestShip_SealsDuringCopiesAndUploads(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	dir, _ := goldenArchive(t)
	bucket := storage.NewLocal(storage.OS{}, filepath.Join(t.TempDir(), "bucket"))
	s, cat, pos := startShipper(t, dir, bucket, false, catalog.Open)
	defer cat.Close()
	// A catalog large enough that each copy takes a while.
	pad := strings.Repeat("x", 4000)
	for i := range 5000 {
		if err := cat.SetMeta(ctx, fmt.Sprintf("test.pad.%d", i), pad); err != nil {
			t.Fatal(err)
		}
	}
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	var last string
	for round := range 40 {
		last = fmt.Sprint("seal ", round)
		if err := cat.SetMeta(ctx, "test.probe", last); err != nil {
			t.Fatal(err)
		}
		if err := s.Sealed(ctx, cat, pos); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(round%7) * 3 * time.Millisecond)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case err := <-ran:
			t.Fatalf("Run ended while seals came: %v", err)
		default:
		}
		s.mu.Lock()
		idle := s.pending == nil
		s.mu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the last snapshot was not uploaded within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := newestProbe(t, bucket); got != last {
		t.Errorf("the newest snapshot in the store has probe %q, want %q", got, last)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(s.o.TempDir, "snapshot-*"))
	if len(left) > 0 {
		t.Errorf("snapshot files left behind: %v", left)
	}
}

// gateStore holds every catalog snapshot's Put until open is closed, as a
// slow or stopped store holds Run in one upload.
type gateStore struct {
	storage.Store
	open chan struct{}
}

func (g *gateStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if strings.HasPrefix(name, SnapshotPrefix) {
		select {
		case <-g.open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Store.Put(ctx, name, r, size)
}

// While Run is held in one long upload, the snapshots the archiver pins
// meanwhile are copied out at once and their pins ended, so that SQLite
// can restart the catalog's write-ahead log: before, each pin stayed until
// Run was free, a new pin was taken before the old one ended, and the log
// grew with every commit for as long as the upload lasted.
func TestShip_PinsEndWhileAnUploadIsHeld(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	dir, _ := goldenArchive(t)
	gate := &gateStore{Store: storage.NewLocal(storage.OS{}, filepath.Join(t.TempDir(), "bucket")), open: make(chan struct{})}
	s, cat, pos := startShipper(t, dir, gate, false, catalog.Open)
	defer cat.Close()
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	if err := s.Sealed(ctx, cat, pos); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 4000)
	for round := range 40 {
		for i := range 200 {
			if err := cat.SetMeta(ctx, fmt.Sprintf("test.pad.%d", i), fmt.Sprint(round, pad)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Sealed(ctx, cat, pos); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // the copier's turn
	}
	// 40 rounds of 200 commits of 4 KB pages: about 32 MiB written in all,
	// against SQLite's checkpoint at about 4 MiB of log.
	st, err := os.Stat(filepath.Join(dir, catalog.CatalogFile+"-wal"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 16<<20 {
		t.Errorf("the catalog's write-ahead log grew to %d MiB while an upload was held", st.Size()>>20)
	}
	close(gate.open)
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// newestProbe fetches the newest catalog snapshot in bucket and returns
// its meta value test.probe.
func newestProbe(t *testing.T, bucket storage.Store) string {
	t.Helper()
	ctx := t.Context()
	name, err := NewestSnapshot(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), catalog.CatalogFile)
	if err := Fetch(ctx, bucket, nil, name, path); err != nil {
		t.Fatal(err)
	}
	r, err := catalog.OpenReadOnly(ctx, filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var v string
	r.DB().QueryRow(`SELECT value FROM meta WHERE key = 'test.probe'`).Scan(&v)
	return v
}
