package test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/retention"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// The hash chain: lbt verify recomputes it and names the transaction,
// blob or basebackup whose catalog row was changed; a head printed earlier
// stays valid as the archive grows (also across a restart of the daemon)
// and fails once the history it covers is changed.
func TestVerify_ChainNamesChangedRows(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	cfg := writeConfig(t, c, dsn, dir, "chain")
	d := startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	for i := 0; i < 4; i++ {
		c.Exec(t, dsn, fmt.Sprintf(`INSERT INTO t SELECT g, 'v' || g FROM generate_series(%d, %d) g`, i*100, i*100+99))
		waitArchived(t, c, dsn, dir) // one catalog commit each
	}
	takeBasebackups(t, dsn, dir, "t")
	d.stop()

	head1 := printHead(t, cfg)
	// A restart continues the chain: the new head differs, the old one is
	// still a link of it.
	d = startBackup(t, c, dsn, dir)
	c.Exec(t, dsn, `UPDATE t SET v = 'again' WHERE id < 50`)
	waitArchived(t, c, dsn, dir)
	// verify reads one snapshot: commits while it runs are no break.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 30; i++ {
			c.Exec(t, dsn, fmt.Sprintf(`INSERT INTO t VALUES (%d, 'during verify')`, 10000+i))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	for i := 0; i < 3; i++ {
		if code, out := lbtrun.Run(t, "verify", "--config", cfg); code != 0 {
			t.Errorf("verify while the daemon commits: exit %d:\n%s", code, out)
		}
	}
	<-done
	waitArchived(t, c, dsn, dir)
	d.stop()
	head2 := printHead(t, cfg)
	if head2 == head1 {
		t.Fatalf("the head did not move after more transactions: %s", head1)
	}
	if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--head", head1); code != 0 || !strings.Contains(out, "extends head") {
		t.Fatalf("verify --head of an earlier head on the untouched archive: exit %d:\n%s", code, out)
	}
	if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--head", strings.Repeat("ab", 32)+"@0/1"); code != 3 || !strings.Contains(out, "not a link") {
		t.Errorf("verify --head of a head that is no link: exit %d, want 3:\n%s", code, out)
	}
	if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--head", "nonsense"); code != 2 || !strings.Contains(out, "HASH@LSN") {
		t.Errorf("verify --head nonsense: exit %d, want 2:\n%s", code, out)
	}

	// A catalog rebuilt from the files has a chain that verifies, but a new
	// one: heads kept before do not verify against it (docs/FORMAT.md), and
	// the replaced catalog still verifies against them.
	t.Run("rebuild", func(t *testing.T) {
		copyDir := t.TempDir()
		copyTree(t, dir, copyDir)
		cfg := writeConfig(t, c, dsn, copyDir, "chain")
		if code, out := lbtrun.Run(t, "repair", "--rebuild-catalog", "--force", "--config", cfg); code != 0 {
			t.Fatalf("repair --rebuild-catalog: exit %d:\n%s", code, out)
		}
		if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--read-data"); code != 0 {
			t.Fatalf("verify of the rebuilt catalog: exit %d:\n%s", code, out)
		}
		printHead(t, cfg)
		if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--head", head1); code != 3 || !strings.Contains(out, "not a link") {
			t.Errorf("verify --head of a head kept before the rebuild: exit %d, want 3:\n%s", code, out)
		}
		baks, _ := filepath.Glob(filepath.Join(copyDir, catalog.CatalogFile+".bak-*[0-9]Z"))
		if len(baks) != 1 {
			t.Fatalf("replaced catalogs: %v", baks)
		}
		oldDir := t.TempDir()
		copyTree(t, copyDir, oldDir)
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(filepath.Join(oldDir, catalog.CatalogFile+suffix))
			os.Rename(filepath.Join(oldDir, filepath.Base(baks[0])+suffix), filepath.Join(oldDir, catalog.CatalogFile+suffix))
		}
		oldCfg := writeConfig(t, c, dsn, oldDir, "chain")
		if code, out := lbtrun.Run(t, "verify", "--config", oldCfg, "--read-data", "--head", head2); code != 0 {
			t.Errorf("verify --head of the replaced catalog: exit %d:\n%s", code, out)
		}
	})

	// The rows to change: the transaction that inserted ids 200..299, its
	// blob, and the basebackup.
	var lsn, xid, blobID int64
	catalogQueryRow(t, dir, `SELECT tx.commit_lsn, tx.xid, b.id FROM tx JOIN blob b ON b.first_lsn = tx.commit_lsn
		WHERE b.inserts = 100 ORDER BY tx.commit_lsn LIMIT 1 OFFSET 2`, nil, &lsn, &xid, &blobID)
	txName := catalog.FormatLSN(uint64(lsn))
	tests := []struct {
		name   string
		change string
		want   []string
	}{
		{"xid", fmt.Sprintf(`UPDATE tx SET xid = xid + 1 WHERE commit_lsn = %d`, lsn),
			[]string{"hash chain breaks at link", "a transaction row was changed", txName}},
		{"blob length", fmt.Sprintf(`UPDATE blob SET length = length - 1 WHERE id = %d`, blobID),
			[]string{"hash chain breaks at link", "a blob row was changed", fmt.Sprintf("blob %d ", blobID)}},
		{"deleted transaction", fmt.Sprintf(`DELETE FROM tx WHERE commit_lsn = %d`, lsn),
			[]string{"hash chain breaks at link", "1 transaction rows missing", txName}},
		{"basebackup rows", `UPDATE basebackup SET rows = rows - 1`,
			[]string{"hash chain breaks at link", "the basebackup of table"}},
		{"added transaction", fmt.Sprintf(`INSERT INTO tx SELECT commit_lsn + 1000000000, end_lsn + 1000000000, xid, commit_time, origin, tables FROM tx WHERE commit_lsn = %d`, lsn),
			[]string{"does not cover the transaction with xid"}},
		{"chain removed", `DELETE FROM chain`,
			[]string{"does not cover"}},
		{"link changed", `UPDATE chain SET txs = txs + 1 WHERE seq = 2`,
			[]string{"hash chain breaks at link 2", "the chain's own rows were changed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			copyDir := t.TempDir()
			copyTree(t, dir, copyDir)
			cfg := writeConfig(t, c, dsn, copyDir, "chain")
			cat, err := catalog.Open(context.Background(), copyDir)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cat.DB().Exec(tc.change); err != nil {
				t.Fatal(err)
			}
			cat.Close()
			code, out := lbtrun.Run(t, "verify", "--config", cfg)
			if code != 3 {
				t.Fatalf("verify after the change: exit %d, want 3:\n%s", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("verify's report lacks %q:\n%s", w, out)
				}
			}
			if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--head", head1); code != 3 {
				t.Errorf("verify --head of the earlier head after the change: exit %d, want 3:\n%s", code, out)
			}
		})
	}
}

// A purge removes history that earlier links cover and re-anchors them:
// the chain stays valid, with the heads printed before the purge; a row
// deleted afterwards, outside purge, still breaks it.
func TestPurge_KeepsChainValid(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE p (id int PRIMARY KEY, v text); CREATE TABLE q (id int PRIMARY KEY, n int)`)
	cfg := writeConfig(t, c, dsn, dir, "chainpurge")
	d := startBackup(t, c, dsn, dir, func(o *ingestOptions) { o.DeltasPerFile = 300 })
	waitArchived(t, c, dsn, dir)
	phase := func(k int) {
		for i := 0; i < 4; i++ {
			base := k*1000 + i*100
			execEach(t, c, dsn,
				fmt.Sprintf(`INSERT INTO p SELECT g, md5(g::text) FROM generate_series(%d, %d) g`, base, base+99),
				fmt.Sprintf(`INSERT INTO q SELECT g, g FROM generate_series(%d, %d) g`, base, base+19),
				fmt.Sprintf(`UPDATE p SET v = 'phase %d' WHERE id %% 7 = %d`, k, i))
			waitArchived(t, c, dsn, dir)
		}
	}
	phase(0)
	takeBasebackups(t, dsn, dir, "p", "q")
	phase(1)
	takeBasebackups(t, dsn, dir, "p", "q") // what the window needs; the first ones go
	waitArchived(t, c, dsn, dir)
	cut := time.Now()
	time.Sleep(20 * time.Millisecond)
	takeBasebackups(t, dsn, dir, "p", "q")
	phase(2)
	d.stop()
	before := printHead(t, cfg)

	opts := retention.NewOptions()
	opts.Now = time.Now()
	opts.Retention = opts.Now.Sub(cut)
	opts.Logger = testLogger(t, "purge")
	rep := runPurge(t, dir, opts)
	t.Logf("purge: %+v", rep)
	var purges, anchors, txs int
	catalogQueryRow(t, dir, `SELECT (SELECT count(*) FROM purge_log), (SELECT count(*) FROM chain_anchor), (SELECT count(*) FROM tx)`, nil, &purges, &anchors, &txs)
	var baseAnchors int
	catalogQueryRow(t, dir, `SELECT count(*) FROM chain_anchor a JOIN chain l ON l.seq = a.link WHERE l.kind = 'basebackup'`, nil, &baseAnchors)
	if purges == 0 || anchors == 0 || baseAnchors == 0 || rep.Transactions == 0 {
		t.Fatalf("the purge removed too little (%d purge records, %d anchors, %d of basebackups, %d transactions): the test is void", purges, anchors, baseAnchors, rep.Transactions)
	}
	if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--read-data", "--head", before); code != 0 {
		t.Fatalf("verify --head after a purge: exit %d:\n%s", code, out)
	}
	after := printHead(t, cfg)
	if after == before {
		t.Errorf("the purge added no link")
	}

	// A transaction row that purge kept, deleted outside it.
	cat, err := catalog.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.DB().Exec(`DELETE FROM tx WHERE commit_lsn = (SELECT max(commit_lsn) FROM tx)`); err != nil {
		t.Fatal(err)
	}
	cat.Close()
	if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--head", after); code != 3 || !strings.Contains(out, "transaction rows missing") {
		t.Errorf("verify after deleting a transaction row outside purge: exit %d, want 3:\n%s", code, out)
	}
	// Nor does the next purge re-anchor, and so launder, the change.
	opts.Now = time.Now()
	cat, err = catalog.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if _, err := retention.Purge(context.Background(), cat, opts); err != nil {
		t.Logf("purge after the change: %v", err)
	}
	if code, out := lbtrun.Run(t, "verify", "--config", cfg); code != 3 {
		t.Errorf("verify after a purge that followed the change: exit %d, want 3:\n%s", code, out)
	}
}

func printHead(t *testing.T, cfg string) string {
	t.Helper()
	code, out := lbtrun.Run(t, "verify", "--config", cfg, "--print-head")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	head := lines[len(lines)-1]
	if code != 0 {
		t.Fatalf("verify --print-head: exit %d:\n%s", code, out)
	}
	if _, err := catalog.ParseHead(head); err != nil {
		t.Fatalf("verify --print-head printed %q: %v", head, err)
	}
	return head
}

// copyTree copies the archive in src (no daemon running) to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// verify --restore-test restores each table's latest state into a scratch
// schema and verifies it; a blob whose bytes changed (which verify without
// --read-data does not read) fails it with the verify status, and the
// scratch schema is gone either way.
func TestVerify_RestoreTest(t *testing.T) {
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	c.Exec(t, dsn, `CREATE TABLE r (id int PRIMARY KEY, v text); CREATE TABLE "Odd name" (k text PRIMARY KEY, n numeric);
		CREATE TABLE nobase (id int PRIMARY KEY)`)
	dir := t.TempDir()
	cfg := writeConfig(t, c, dsn, dir, "restoretest")
	d := startBackup(t, c, dsn, dir)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO r SELECT g, md5(g::text) FROM generate_series(1, 500) g; INSERT INTO "Odd name" VALUES ('a', 1.5), ('b', NULL);
		INSERT INTO nobase VALUES (1)`)
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "r", `"Odd name"`)
	c.Exec(t, dsn, `UPDATE r SET v = 'changed' WHERE id % 3 = 0; DELETE FROM r WHERE id % 5 = 0; INSERT INTO "Odd name" VALUES ('c', 3)`)
	waitArchived(t, c, dsn, dir)
	d.stop()

	scratch := c.NewDatabase(t)
	code, out := lbtrun.Run(t, "verify", "--config", cfg, "--restore-test", "--target-dsn", scratch)
	if code != 0 {
		t.Fatalf("verify --restore-test on a good archive: exit %d:\n%s", code, out)
	}
	for _, want := range []string{"public.r restored and verified: 400 rows", `public."Odd name" restored and verified: 3 rows`, "public.nobase skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify --restore-test lacks %q:\n%s", want, out)
		}
	}
	if n := c.QueryString(t, scratch, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'lbt_restore_test_%'`); n != "0" {
		t.Errorf("%s scratch schemas left on the target", n)
	}
	if code, out := lbtrun.Run(t, "verify", "--config", cfg, "--restore-test"); code != 2 || !strings.Contains(out, "--target-dsn") {
		t.Errorf("verify --restore-test without --target-dsn: exit %d, want 2:\n%s", code, out)
	}

	// A byte of r's newest blob changes.
	var seg, off, length int64
	catalogQueryRow(t, dir, `SELECT b.segment_id, b.offset, b.length FROM blob b JOIN schema_version s ON s.table_id = b.table_id
		WHERE s.relname = 'r' ORDER BY b.id DESC LIMIT 1`, nil, &seg, &off, &length)
	f, err := os.OpenFile(filepath.Join(dir, catalog.SegmentName(seg)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, off+length-2)
	b[0] ^= 0x20
	f.WriteAt(b, off+length-2)
	f.Close()
	if code, out := lbtrun.Run(t, "verify", "--config", cfg); code != 0 {
		t.Fatalf("verify without reading data should not see the change (the test relies on it): exit %d:\n%s", code, out)
	}
	code, out = lbtrun.Run(t, "verify", "--config", cfg, "--restore-test", "--target-dsn", scratch)
	if code != 3 || !strings.Contains(out, "problem: restore test: public.r") {
		t.Errorf("verify --restore-test with a changed blob: exit %d, want 3 naming public.r:\n%s", code, out)
	}
	if n := c.QueryString(t, scratch, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'lbt_restore_test_%'`); n != "0" {
		t.Errorf("%s scratch schemas left on the target after a failure", n)
	}
}
