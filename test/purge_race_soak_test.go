//go:build soak

package test

// Restores racing purges, run by make soak: a restore planned while a purge
// commits must still equal the source at its moment, or be refused.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"lbt/catalog"
	"lbt/ingest"
	"lbt/restore"
	"lbt/retention"
)

// While purges move the retention window forward, one after another, and
// the daemon archives, restores to moments on both sides of the window run
// without pause. Each one either equals the source at its moment, row for
// row, or is refused as not restorable; none is silently wrong, whichever
// of the purge's steps it was planned beside.
func TestSoak_RestoresRacingPurgeAreExactOrRefused(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE race (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO race SELECT g, 0 FROM generate_series(1, 2000) g;`)
	startBackup(t, c, dsn, dir, func(o *ingest.Options) { o.DeltasPerFile = 200 })
	waitArchived(t, c, dsn, dir)
	columns := []string{"id", "v"}

	const rounds = 24
	var points []purgePoint
	takeBasebackups(t, dsn, dir, "race")
	for k := 1; k <= rounds; k++ {
		execEach(t, c, dsn,
			fmt.Sprintf(`UPDATE race SET v = %d WHERE id %% 5 = %d`, k, k%5),
			fmt.Sprintf(`DELETE FROM race WHERE id %% 97 = %d`, k),
			fmt.Sprintf(`INSERT INTO race SELECT g, %d FROM generate_series(%d, %d) g`, k, 10000*k, 10000*k+99))
		waitArchived(t, c, dsn, dir)
		cp := purgePoint{lsn: archivePosition(t, dir), rows: map[string][]string{"race": sourceRows(t, dsn, "race", columns)}}
		cp.at = time.Now()
		time.Sleep(20 * time.Millisecond) // what comes next commits strictly later
		points = append(points, cp)
		takeBasebackups(t, dsn, dir, "race")
	}

	// The purger: each purge keeps the moments from one round later on.
	ctx := context.Background()
	purged := make(chan error, 1)
	go func() {
		cat, err := catalog.Open(ctx, dir)
		if err != nil {
			purged <- err
			return
		}
		defer cat.Close()
		for k := 1; k < rounds; k++ {
			opts := retention.NewOptions()
			opts.Now = time.Now()
			opts.Retention = opts.Now.Sub(points[k].at.Add(5 * time.Millisecond))
			opts.Logger = testLogger(t, "purge")
			if _, err := retention.Purge(ctx, cat, opts); err != nil {
				purged <- fmt.Errorf("purge %d: %w", k, err)
				return
			}
			time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		}
		purged <- nil
	}()

	target := c.NewDatabase(t)
	targetConn, err := pgconn.ParseConfig(target)
	if err != nil {
		t.Fatal(err)
	}
	var exact, refused int
	for done := false; !done; {
		select {
		case err := <-purged:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
		cp := points[rand.IntN(len(points))]
		o := restore.NewOptions()
		o.Table, o.LSN = "race", cp.lsn
		o.TargetConn = targetConn
		o.TargetTable = fmt.Sprintf("restored_%d", restoreSeq.Add(1))
		o.Verify = true
		o.Logger = testLogger(t, "restore")
		_, err := runRestore(t, dir, o)
		switch {
		case errors.Is(err, restore.ErrNotRestorable):
			refused++
			continue
		case err != nil:
			t.Fatalf("restore at %X: %v", cp.lsn, err)
		}
		if got := sourceRows(t, target, o.TargetTable, columns); !slices.Equal(got, cp.rows["race"]) {
			t.Fatalf("restore at %X, beside a purge, differs from the source: %s", cp.lsn, diffRows(got, cp.rows["race"]))
		}
		exact++
	}
	t.Logf("%d restores equal to the source, %d refused, beside %d purges", exact, refused, rounds-1)
	if exact == 0 || refused == 0 {
		t.Errorf("%d exact and %d refused restores: the race reached only one side of the window", exact, refused)
	}
	// After the last purge, the newest moment restores and the oldest is refused.
	checkRestores(t, dir, target, "race", points[rounds-1].lsn, points[rounds-1].rows["race"], "after the purges")
	o := restore.NewOptions()
	o.Table, o.LSN, o.TargetConn, o.TargetTable = "race", points[0].lsn, targetConn, "never"
	if _, err := runRestore(t, dir, o); !errors.Is(err, restore.ErrNotRestorable) {
		t.Errorf("restore to the first, purged moment: %v, want it refused as not restorable", err)
	}
}
