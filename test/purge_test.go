package test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lbt/catalog"
	"lbt/ingest"
	"lbt/retention"
	"lbt/test/lbtrun"
)

// purgePoint is the source as it was at one moment: what a restore to that
// moment must give.
type purgePoint struct {
	at   time.Time
	lsn  uint64
	rows map[string][]string
}

// Purge returns disk space (segments removed and rewritten, old
// basebackups removed), records what it removed, and every tested time
// inside the retention window still restores exactly, also for a table
// dropped since. A dry run changes nothing. Purge runs while the daemon
// writes.
func TestPurge_KeepsWindowRestorableAndReturnsSpace(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `
		CREATE TABLE p1 (id int PRIMARY KEY, v text);
		CREATE TABLE p2 (id int PRIMARY KEY, n int);
		CREATE TABLE pdrop (id int PRIMARY KEY, v text);
		CREATE TABLE keep (id int PRIMARY KEY, n int);
		CREATE TABLE side (id int PRIMARY KEY, n int);
		INSERT INTO keep VALUES (1, 0);
		INSERT INTO side VALUES (1, 0);`)
	// Small segments, so that tables share them and many get sealed.
	// No look for dropped tables after the first: one that finds pdrop gone
	// refuses, without DDL capture, every moment between its last change
	// and the look, purgePoint 2 among them, and a slow run (over a
	// minute, the default interval) had one.
	d := startBackup(t, c, dsn, dir, func(o *ingest.Options) { o.DeltasPerFile, o.DropCheckInterval = 300, time.Hour })
	waitArchived(t, c, dsn, dir)

	tables := []string{"p1", "p2", "pdrop"}
	columns := map[string][]string{"p1": {"id", "v"}, "p2": {"id", "n"}, "pdrop": {"id", "v"}, "side": {"id", "n"}}
	phase := func(k int) {
		t.Helper()
		for i := 0; i < 8; i++ {
			base := k*10000 + i*200
			execEach(t, c, dsn,
				fmt.Sprintf(`INSERT INTO p1 SELECT g, md5(g::text) || md5((g+1)::text) || md5((g+2)::text) || md5((g+3)::text)
					FROM generate_series(%d, %d) g`, base, base+199),
				fmt.Sprintf(`UPDATE p1 SET v = 'phase %d' WHERE id %% 7 = %d`, k, i%7),
				fmt.Sprintf(`INSERT INTO p2 SELECT g, g FROM generate_series(%d, %d) g`, base, base+49),
				fmt.Sprintf(`DELETE FROM p2 WHERE id %% 13 = %d`, i))
			if i == 0 {
				// keep never gets a basebackup: its few bytes stay in some
				// segments, which purge must then rewrite rather than remove.
				c.Exec(t, dsn, fmt.Sprintf(`UPDATE keep SET n = %d`, base))
			}
			if k < 3 {
				execEach(t, c, dsn, fmt.Sprintf(`INSERT INTO pdrop SELECT g, 'd' || g FROM generate_series(%d, %d) g`, base, base+29),
					fmt.Sprintf(`UPDATE pdrop SET v = 'phase %d' WHERE id %% 5 = %d`, k, i%5))
			}
			waitArchived(t, c, dsn, dir) // a flush, so blobs stay small and segments fill
		}
	}
	capture := func(names ...string) purgePoint {
		t.Helper()
		waitArchived(t, c, dsn, dir)
		cp := purgePoint{lsn: archivePosition(t, dir), rows: map[string][]string{}}
		for _, name := range names {
			cp.rows[name] = sourceRows(t, dsn, name, columns[name])
		}
		cp.at = time.Now()
		time.Sleep(20 * time.Millisecond) // what comes next commits strictly later
		return cp
	}

	phase(0)
	takeBasebackups(t, dsn, dir, append(tables, "side")...) // B0
	phase(1)
	cp1 := capture(tables...)
	takeBasebackups(t, dsn, dir, tables...) // B1
	phase(2)
	cp2 := capture(tables...)
	c.Exec(t, dsn, `DROP TABLE pdrop`)
	takeBasebackups(t, dsn, dir, "p1", "p2") // B2
	phase(3)
	cp3 := capture("p1", "p2")
	takeBasebackups(t, dsn, dir, "p1", "p2") // B3
	phase(4)
	cp4 := capture("p1", "p2")

	// The window starts just after purgePoint 2: B1 (before it) must stay
	// with every change after it; B0 and the changes before B1 may go.
	now := time.Now()
	opts := retention.NewOptions()
	opts.Retention = now.Sub(cp2.at.Add(5 * time.Millisecond))
	opts.Now = now
	opts.Logger = testLogger(t, "purge")
	keepBefore := readArchiveOf(t, dir, "keep")
	catalogCounts := func() string {
		var blobs, txs, ranges, rowKeys, bases int
		catalogQueryRow(t, dir, `SELECT (SELECT count(*) FROM blob), (SELECT count(*) FROM tx), (SELECT count(*) FROM tx_range),
			(SELECT count(*) FROM basebackup)`, nil, &blobs, &txs, &ranges, &bases)
		rowKeys = rowKeyCount(t, dir)
		return fmt.Sprintf("blobs=%d tx=%d tx_range=%d row_key=%d basebackup=%d", blobs, txs, ranges, rowKeys, bases)
	}

	// Dry run: a report, and nothing changes.
	before, countsBefore := diskBytes(t, dir), catalogCounts()
	dry := opts
	dry.DryRun = true
	rep := runPurge(t, dir, dry)
	if len(rep.Tables) != 3 || rep.Bytes() == 0 {
		t.Fatalf("dry run reports %d tables and %d bytes, want 3 tables and some bytes: %+v", len(rep.Tables), rep.Bytes(), rep)
	}
	if after, counts := diskBytes(t, dir), catalogCounts(); after != before || counts != countsBefore {
		t.Fatalf("dry run changed the archive: %d -> %d bytes, %s -> %s", before, after, countsBefore, counts)
	}

	// The real purge, while the daemon archives new changes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := conn.Exec(context.Background(), `UPDATE side SET n = n + 1`); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	rep = runPurge(t, dir, opts)
	close(stop)
	wg.Wait()
	after := diskBytes(t, dir)
	c.Exec(t, dsn, `UPDATE p2 SET n = n + 1 WHERE id % 10 = 3`)
	cp5 := capture("p1", "p2", "side")
	t.Logf("purge: %d tables, %d transactions, %d segments removed, %d rewritten, %d bytes reported; disk %d -> %d bytes",
		len(rep.Tables), rep.Transactions, rep.SegmentsRemoved, rep.SegmentsRewritten, rep.Bytes(), before, after)
	if after >= before || rep.SegmentsRemoved == 0 || rep.SegmentsRewritten == 0 || rep.BasebackupBytes == 0 {
		t.Errorf("purge returned too little: disk %d -> %d bytes, report %+v", before, after, rep)
	}
	for _, tp := range rep.Tables {
		if tp.Basebackups != 1 {
			t.Errorf("%s: purged %d basebackups, want 1 (B0)", tp.Name, tp.Basebackups)
		}
	}
	var logged int
	catalogQueryRow(t, dir, `SELECT count(*) FROM purge_log`, nil, &logged)
	if logged != 3 {
		t.Errorf("purge_log has %d rows, want 3", logged)
	}
	var left int
	catalogQueryRow(t, dir, `SELECT count(*) FROM segment WHERE retired_at IS NULL AND sealed = 1 AND NOT EXISTS (SELECT 1 FROM blob WHERE segment_id = segment.id)`, nil, &left)
	if left != 0 {
		t.Errorf("%d sealed segments without blobs are left", left)
	}

	// Every purgePoint inside the window restores exactly; the dropped
	// table too; the table without basebackups kept all its changes.
	target := c.NewDatabase(t)
	for _, cp := range []purgePoint{cp2, cp3, cp4, cp5} {
		for name, want := range cp.rows {
			checkRestores(t, dir, target, name, cp.lsn, want, fmt.Sprintf("after purge, at %s", cp.at.Format("15:04:05.000")))
		}
	}
	if got := readArchiveOf(t, dir, "keep"); !slices.Equal(got, keepBefore) {
		t.Errorf("keep has %d changes after purge, %d before", len(got), len(keepBefore))
	}
	if bases := basebackupsOf(t, dir, "p1"); len(bases) != 3 {
		t.Errorf("p1 has %d basebackups after purge, want 3 (B1, B2, B3)", len(bases))
	}
	// Outside the window: not asserted (purgePoint 1 is before B1).
	_ = cp1

	// A second purge finds nothing more to do, and lbt purge --dry-run says so.
	rep = runPurge(t, dir, opts)
	if len(rep.Tables) != 0 || rep.SegmentsRemoved != 0 {
		t.Errorf("second purge: %+v, want nothing", rep)
	}
	cfg := writeConfig(t, c, dsn, dir, "lbt_purge_cli", "retention: 7d")
	code, out := lbtrun.Run(t, "purge", "--dry-run", "--config", cfg)
	if code != 0 || !strings.Contains(out, "no table has history that retention lets go") {
		t.Errorf("lbt purge --dry-run: exit %d, output:\n%s", code, out)
	}
	cfg = writeConfig(t, c, dsn, dir, "lbt_purge_cli")
	code, out = lbtrun.Run(t, "purge", "--config", cfg)
	if code != 0 || !strings.Contains(out, "nothing is purged") {
		t.Errorf("lbt purge without retention: exit %d, output:\n%s", code, out)
	}

	// The segments purge rewrote describe the blobs it copied: a catalog
	// rebuilt from the files restores the window as exactly.
	d.stop()
	rebuildLostCatalog(t, dir)
	for _, cp := range []purgePoint{cp2, cp3, cp4, cp5} {
		for name, want := range cp.rows {
			checkRestores(t, dir, target, name, cp.lsn, want, fmt.Sprintf("rebuilt after purge, at %s", cp.at.Format("15:04:05.000")))
		}
	}
	if got := readArchiveOf(t, dir, "keep"); !slices.Equal(got, keepBefore) {
		t.Errorf("keep has %d changes in the rebuilt catalog, %d before", len(got), len(keepBefore))
	}
}

// With retentionBasebackups only, lbt purge keeps the newest N basebackups
// of each table and what follows them.
func TestPurge_KeepBasebackupsCommand(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE k (id int PRIMARY KEY, v int); INSERT INTO k SELECT g, 0 FROM generate_series(1, 500) g`)
	startBackup(t, c, dsn, dir, func(o *ingest.Options) { o.DeltasPerFile = 100 })
	waitArchived(t, c, dsn, dir)
	var lsns []uint64
	for i := 0; i < 4; i++ {
		lsns = append(lsns, takeBasebackups(t, dsn, dir, "k")[0].LSN)
		for j := 0; j < 3; j++ {
			c.Exec(t, dsn, fmt.Sprintf(`UPDATE k SET v = v + 1 WHERE id %% 4 = %d`, j))
			waitArchived(t, c, dsn, dir)
		}
	}
	cfg := writeConfig(t, c, dsn, dir, "lbt_purge_keep", "retentionBasebackups: 2")
	code, out := lbtrun.Run(t, "purge", "--dry-run", "--config", cfg)
	if code != 0 || !strings.Contains(out, "would purge public.k") || !strings.Contains(out, "2 basebackups") {
		t.Fatalf("lbt purge --dry-run: exit %d, output:\n%s", code, out)
	}
	code, out = lbtrun.Run(t, "purge", "--config", cfg)
	if code != 0 || !strings.Contains(out, "purged public.k") {
		t.Fatalf("lbt purge: exit %d, output:\n%s", code, out)
	}
	bases := basebackupsOf(t, dir, "k")
	if len(bases) != 2 || bases[0].LSN != lsns[2] {
		t.Errorf("after purge: %d basebackups, want the newest 2", len(bases))
	}
	var lastBefore int
	catalogQueryRow(t, dir, `SELECT count(*) FROM blob WHERE last_lsn < ?`, []any{int64(lsns[2])}, &lastBefore)
	if lastBefore != 0 {
		t.Errorf("%d blobs wholly before the oldest kept basebackup remain", lastBefore)
	}
	waitArchived(t, c, dsn, dir)
	checkRestores(t, dir, c.NewDatabase(t), "k", archivePosition(t, dir), sourceRows(t, dsn, "k", []string{"id", "v"}), "after purge")
}

func runPurge(t *testing.T, dir string, opts retention.Options) retention.Report {
	t.Helper()
	ctx := context.Background()
	open := catalog.Open
	if opts.DryRun {
		open = catalog.OpenReadOnly
	}
	cat, err := open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	rep, err := retention.Purge(ctx, cat, opts)
	if err != nil {
		t.Fatalf("purge: %v", err)
	}
	return rep
}

// readArchiveOf returns a table's archived changes as strings.
func readArchiveOf(t *testing.T, dir, table string) []string {
	t.Helper()
	_, changes := readArchive(t, dir, table)
	var out []string
	for _, ch := range changes {
		out = append(out, fmt.Sprintf("%X %s %s->%s", ch.CommitLSN, ch.Op, show(ch.Old), show(ch.New)))
	}
	return out
}

// rowKeyCount is how many pairs the archive's row-key index holds.
func rowKeyCount(t *testing.T, dir string) int {
	t.Helper()
	cat := openArchive(t, dir)
	defer cat.Close()
	n, err := cat.RowKeyCount(context.Background())
	if err != nil {
		t.Fatalf("row keys: %v", err)
	}
	return int(n)
}
