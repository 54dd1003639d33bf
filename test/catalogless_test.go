package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/ingest"
	"lbt/restore"
	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

// archiveSums is the sha256 of every file under dir, by relative path.
func archiveSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	eachFile(t, dir, func(path string, data []byte) {
		rel, _ := filepath.Rel(dir, path)
		h := sha256.Sum256(data)
		sums[rel] = hex.EncodeToString(h[:])
	})
	return sums
}

// eachFile calls fn with the path and the contents of every file under dir.
func eachFile(t *testing.T, dir string, fn func(path string, data []byte)) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fn(path, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkSameFiles fails the test for a file of before that is gone or
// changed, or a file that appeared in after.
func checkSameFiles(t *testing.T, before, after map[string]string, what string) {
	t.Helper()
	for p, sum := range before {
		if p == "LOCK" { // holds the pid of the last lbt backup, not archive data
			continue
		}
		if got, ok := after[p]; !ok {
			t.Errorf("%s: %s was deleted", what, p)
		} else if got != sum {
			t.Errorf("%s: %s changed", what, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s appeared", what, p)
		}
	}
}

// removeCatalog deletes an archive's catalog with its write-ahead log, as
// a lost disk or a wrong archiveDir would.
func removeCatalog(t *testing.T, dir string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(dir, catalog.CatalogFile+suffix)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// rebuildLostCatalog removes the catalog of dir and rebuilds it from the
// archive's files, logging what the rebuild warns of.
func rebuildLostCatalog(t *testing.T, dir string) {
	t.Helper()
	removeCatalog(t, dir)
	rep, err := catalog.Rebuild(context.Background(), dir, false, nil)
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	for _, w := range rep.Warnings {
		t.Logf("rebuild: %s", w)
	}
}

// archiveWithHistory archives a few transactions and a basebackup of t
// with lbt backup, and stops it.
func archiveWithHistory(t *testing.T, c *pgtest.Cluster, dsn, dir, slot string) string {
	t.Helper()
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	cfg := writeConfig(t, c, dsn, dir, slot, "trackNewTables: true", "initialBasebackup: true")
	p := lbtrun.Start(t, "backup", "--config", cfg)
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`)
	c.Exec(t, dsn, `UPDATE t SET v = 'changed' WHERE id <= 10`)
	waitFor(t, "a basebackup of t", time.Minute, func() bool { return len(basebackupsOf(t, dir, "t")) > 0 })
	c.Exec(t, dsn, `DELETE FROM t WHERE id > 90`)
	waitArchived(t, c, dsn, dir)
	stopDaemon(t, p)
	return cfg
}

// With catalog.db gone, lbt backup and lbt basebackup refuse to start on
// the archive's files, with one line naming the directory, what it holds
// and the fix, and not one byte of the archive changes.
func TestCatalogless_BackupRefusesAndDeletesNothing(t *testing.T) {
	c, dsn, dir := newSource(t)
	cfg := archiveWithHistory(t, c, dsn, dir, "catless_refuse")
	removeCatalog(t, dir)
	before := archiveSums(t, dir)
	var segs, bases int
	for p := range before {
		segs += btoi(strings.HasPrefix(p, "segments/"))
		bases += btoi(strings.HasSuffix(p, ".copy.lz4"))
	}
	if segs == 0 || bases == 0 {
		t.Fatalf("the archive holds %d segments and %d basebackups; the test needs both", segs, bases)
	}
	for _, args := range [][]string{
		{"backup", "--config", cfg},
		{"basebackup", "--config", cfg, "--table", "t"},
	} {
		code, out := lbtrun.Run(t, args...)
		out = strings.TrimSpace(out)
		if code == 0 {
			t.Errorf("lbt %s exited 0:\n%s", args[0], out)
		}
		for _, want := range []string{dir, "segment files", "basebackups", "no catalog.db", "lbt repair --rebuild-catalog", "empty directory"} {
			if !strings.Contains(out, want) {
				t.Errorf("lbt %s: the message lacks %q:\n%s", args[0], want, out)
			}
		}
		if strings.Contains(out, "created archive") || strings.Count(out, "\n") > 0 {
			t.Errorf("lbt %s: want one line, got:\n%s", args[0], out)
		}
		checkSameFiles(t, before, archiveSums(t, dir), "lbt "+args[0])
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// catalogDump is the content of the catalog's tables that the files must
// rebuild, one string per row, in a fixed order.
func catalogDump(t *testing.T, dir string) map[string][]string {
	t.Helper()
	cat := openArchive(t, dir)
	defer cat.Close()
	queries := map[string]string{
		"meta":           `SELECT key || '=' || value FROM meta WHERE key IN ('format_version', 'system_identifier', 'database', 'server_version', 'created_at') ORDER BY key`,
		"epoch":          `SELECT id || ' ' || start_lsn || ' ' || started_at || ' ' || slot || ' ' || reason FROM epoch ORDER BY id`,
		"position":       `SELECT epoch || ' ' || end_lsn || ' ' || commit_lsn || ' ' || commit_time FROM position`,
		"rel":            `SELECT id || ' ' || oid || ' ' || first_lsn FROM rel ORDER BY id`,
		"schema_version": `SELECT table_id || ' ' || version || ' ' || from_lsn || ' ' || nspname || '.' || relname || ' ' || replident || ' ' || columns || ' ' || primary_key FROM schema_version ORDER BY 1`,
		"segment":        `SELECT id || ' ' || size || ' ' || sealed || ' ' || (retired_at IS NULL) FROM segment ORDER BY id`,
		"blob": `SELECT id || ' ' || table_id || ' ' || segment_id || ' ' || offset || ' ' || length || ' ' || crc || ' ' || schema || ' ' || first_lsn || ' ' || last_lsn || ' ' ||
			changes || ' ' || raw_length || ' ' || txs || ' ' || inserts || ' ' || updates || ' ' || deletes || ' ' || truncates FROM blob ORDER BY id`,
		"tx":          `SELECT commit_lsn || ' ' || end_lsn || ' ' || xid || ' ' || commit_time || ' ' || coalesce(origin, '-') || ' ' || length(tables) FROM tx ORDER BY commit_lsn`,
		"tx_range":    `SELECT first_lsn || ' ' || last_lsn || ' ' || min_time || ' ' || max_time || ' ' || min_xid || ' ' || max_xid FROM tx_range ORDER BY first_lsn`,
		"tx_truncate": `SELECT table_id || ' ' || commit_lsn FROM tx_truncate ORDER BY 1`,
		"tx_message":  `SELECT commit_lsn || ' ' || seq || ' ' || prefix || ' ' || hex(content) FROM tx_message ORDER BY commit_lsn, seq`,
		"basebackup": `SELECT table_id || ' ' || lsn || ' ' || path || ' ' || rows || ' ' || bytes || ' ' || raw_bytes || ' ' || crc || ' ' || definition || ' ' ||
			sequences || ' ' || reason || ' ' || started_at || ' ' || finished_at FROM basebackup ORDER BY table_id, lsn`,
		"table_state": `SELECT table_id || ' ' || last_change_lsn || ' ' || last_change_time FROM table_state ORDER BY table_id`,
		"table_gap": `SELECT id || ' ' || table_id || ' ' || from_lsn || ' ' || from_time || ' ' || seen_lsn || ' ' || coalesce(to_lsn, '-') || ' ' ||
			coalesce(to_time, '-') || ' ' || reason FROM table_gap ORDER BY id`,
		"table_storage": `SELECT table_id || ' ' || relfilenode || ' ' || description FROM table_storage ORDER BY table_id`,
		"rel_life": `SELECT table_id || ' ' || coalesce(created_lsn, '-') || ' ' || coalesce(created_at, '-') || ' ' || created_exact || ' ' ||
			coalesce(dropped_lsn, '-') || ' ' || coalesce(dropped_at, '-') || ' ' || coalesce(alive_lsn, '-') || ' ' || coalesce(alive_at, '-') || ' ' ||
			drop_exact FROM rel_life ORDER BY table_id`,
		"partition_tree": `SELECT id || ' ' || root_oid || ' ' || from_lsn || ' ' || to_lsn || ' ' || from_time || ' ' || to_time || ' ' || via_root || ' ' ||
			nodes FROM partition_tree ORDER BY id`,
	}
	out := map[string][]string{}
	for name, q := range queries {
		rows, err := cat.DB().Query(q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out[name] = append(out[name], s)
		}
		rows.Close()
	}
	// The row-key index's runs are cut where its commits were: compare its
	// pairs.
	err := cat.EachRowKey(context.Background(), func(table, hash int64, lsn uint64) error {
		out["row_key"] = append(out["row_key"], fmt.Sprint(table, hash, lsn))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// tx.tables lists a transaction's tables in the order it first changed
	// them, which the files do not say: compare them as sets.
	for _, tx := range txTables(t, cat) {
		slices.SortFunc(tx.tables, func(a, b catalog.TxTable) int { return int(a.TableID - b.TableID) })
		out["tx.tables"] = append(out["tx.tables"], fmt.Sprint(tx.lsn, tx.tables))
	}
	return out
}

// An archive with a workload loses its catalog; lbt backup refuses and
// deletes nothing; lbt repair --rebuild-catalog rebuilds it from the files,
// row for row as it was; restores at several moments equal the source,
// verify --read-data passes, and lbt backup continues the archive exactly
// once, in the same epoch.
func TestCatalogless_RebuildCatalog(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY, n int)`)
	// Small segments: the history spans several, each describing itself.
	cfg := writeConfig(t, c, dsn, dir, "catless_rebuild", "trackNewTables: true", "initialBasebackup: true", "deltasPerFile: 40")
	p := lbtrun.Start(t, "backup", "--config", cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lbt backup output:\n%s", p.Output())
		}
	})
	tables := map[string]string{"t": "public.t", "u": "public.u"}
	var cps []checkpoint
	checkpointNow := func(name string) {
		// The sync transaction after it puts the checkpoint inside the
		// archive's complete history.
		cps = append(cps, recordCheckpoint(t, c, dsn, name, tables))
		waitArchived(t, c, dsn, dir)
	}
	waitArchived(t, c, dsn, dir)
	waitFor(t, "basebackups of t and u", time.Minute, func() bool {
		return len(basebackupsOf(t, dir, "t")) > 0 && len(basebackupsOf(t, dir, "u")) > 0
	})
	execEach(t, c, dsn,
		`INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`,
		`INSERT INTO u SELECT g, g FROM generate_series(1, 50) g`)
	checkpointNow("inserted")
	execEach(t, c, dsn,
		`BEGIN; SELECT pg_logical_emit_message(true, 'lbt.actor', '{"user":"alice"}'); UPDATE t SET v = 'changed' WHERE id <= 10; COMMIT`,
		`ALTER TABLE t ADD COLUMN w int`,
		`UPDATE t SET w = id * 2 WHERE id <= 20`,
		// Large enough to be written out as it arrives, over several blobs.
		`INSERT INTO u SELECT g, g FROM generate_series(1000, 80000) g`)
	checkpointNow("altered")
	execEach(t, c, dsn,
		`TRUNCATE u`,
		`INSERT INTO u VALUES (1, -1), (2, -2)`,
		`DELETE FROM t WHERE id > 90`)
	checkpointNow("truncated")
	stopDaemon(t, p)
	want := catalogDump(t, dir)

	removeCatalog(t, dir)
	before := archiveSums(t, dir)
	code, out := lbtrun.Run(t, "backup", "--config", cfg)
	if code == 0 || !strings.Contains(out, "lbt repair --rebuild-catalog") {
		t.Fatalf("lbt backup without a catalog: exit %d:\n%s", code, out)
	}
	checkSameFiles(t, before, archiveSums(t, dir), "lbt backup without a catalog")

	code, out = lbtrun.Run(t, "repair", "--rebuild-catalog", "--config", cfg)
	if code != 0 || !strings.Contains(out, "rebuilt the catalog of "+dir) {
		t.Fatalf("lbt repair --rebuild-catalog: exit %d:\n%s", code, out)
	}
	t.Logf("lbt repair:\n%s", out)
	got := catalogDump(t, dir)
	for _, name := range sortedKeys(want) {
		if !slices.Equal(got[name], want[name]) {
			t.Errorf("rebuilt %s differs from the lost catalog's:\n%s", name, diffRows(got[name], want[name]))
		}
	}
	// A second rebuild needs --force, and keeps the catalog it replaces.
	if code, out := lbtrun.Run(t, "repair", "--rebuild-catalog", "--config", cfg); code == 0 || !strings.Contains(out, "--force") {
		t.Errorf("a rebuild over a catalog: exit %d:\n%s", code, out)
	}
	if code, out := lbtrun.Run(t, "repair", "--rebuild-catalog", "--force", "--config", cfg); code != 0 {
		t.Errorf("lbt repair --rebuild-catalog --force: exit %d:\n%s", code, out)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, catalog.CatalogFile+".bak-*")); len(m) == 0 {
		t.Errorf("--force kept no copy of the catalog it replaced")
	}

	for _, cp := range cps {
		for _, logical := range sortedKeys(cp.tables) {
			st := cp.tables[logical]
			o := restoreOptionsAt(t, st.name, cp.at, target, fmt.Sprintf("%s_%s", cp.name, logical))
			what := fmt.Sprintf("%s at %s from the rebuilt catalog", st.name, cp.name)
			if _, err := runRestore(t, dir, o); err != nil {
				t.Errorf("%s: %v", what, err)
				continue
			}
			checkRestored(t, c, target, o.TargetTable, st, what)
		}
	}
	if code, out := lbtrun.Run(t, "verify", "--read-data", "--config", cfg); code != 0 {
		t.Errorf("lbt verify --read-data on the rebuilt catalog: exit %d:\n%s", code, out)
	}

	// lbt backup goes on from the rebuilt catalog: the same epoch, every
	// change once.
	p = lbtrun.Start(t, "backup", "--config", cfg)
	waitArchived(t, c, dsn, dir)
	execEach(t, c, dsn, `INSERT INTO t SELECT g, 'new' FROM generate_series(101, 105) g`, `UPDATE t SET v = 'last' WHERE id = 1`)
	checkpointNow("continued")
	stopDaemon(t, p)
	if n := countArchived(t, dir, `SELECT count(*) FROM epoch`); n != 1 {
		t.Errorf("%d epochs after the rebuild, want 1 (no gap)", n)
	}
	if _, changes := readArchive(t, dir, "t"); len(changes) != 100+10+20+10+5+1 {
		t.Errorf("t has %d archived changes, want %d", len(changes), 100+10+20+10+5+1)
	}
	last := cps[len(cps)-1]
	for _, logical := range sortedKeys(last.tables) {
		st := last.tables[logical]
		o := restore.NewOptions()
		o.Table, o.Until = st.name, last.at
		o.TargetConn, o.TargetTable = connConfig(t, target), "continued_"+logical
		if _, err := runRestore(t, dir, o); err != nil {
			t.Errorf("%s after the rebuild and more changes: %v", st.name, err)
			continue
		}
		checkRestored(t, c, target, o.TargetTable, st, st.name+" after the rebuild and more changes")
	}
}

// A catalog older than the files (a copy put back) is not taken for the
// truth: lbt backup refuses rather than cut the active segment's tail or
// write over newer segments, changes no file, and a forced rebuild gives a
// catalog that restores the latest state.
func TestCatalogless_OlderCatalogRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"newer data in the active segment", nil, "which the server will not send again"},
		{"newer segments", []string{"deltasPerFile: 10"}, "archive file unknown to the catalog"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, dsn, target, dir := newSourceAndTarget(t)
			c.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
			slot := "catless_old_" + strings.ReplaceAll(strings.Fields(tc.name)[1], "-", "_")
			cfg := writeConfig(t, c, dsn, dir, slot, append([]string{"trackNewTables: true", "initialBasebackup: true"}, tc.extra...)...)
			run := func(stmts ...string) {
				t.Helper()
				p := lbtrun.Start(t, "backup", "--config", cfg)
				waitArchived(t, c, dsn, dir)
				execEach(t, c, dsn, stmts...)
				waitArchived(t, c, dsn, dir)
				// The initial basebackup the restore below needs, which the
				// first run must not be stopped before.
				waitFor(t, "a basebackup of t", time.Minute, func() bool { return len(basebackupsOf(t, dir, "t")) > 0 })
				stopDaemon(t, p)
			}
			run(`INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g`)
			old, err := os.ReadFile(filepath.Join(dir, catalog.CatalogFile))
			if err != nil {
				t.Fatal(err)
			}
			run(`UPDATE t SET v = 'newer' WHERE id <= 15`, `DELETE FROM t WHERE id > 18`)
			want := recordCheckpoint(t, c, dsn, "latest", map[string]string{"t": "public.t"}).tables["t"]

			removeCatalog(t, dir)
			if err := os.WriteFile(filepath.Join(dir, catalog.CatalogFile), old, 0o640); err != nil {
				t.Fatal(err)
			}
			before := archiveSums(t, dir)
			code, out := lbtrun.Run(t, "backup", "--config", cfg)
			if code == 0 || !strings.Contains(out, tc.want) || !strings.Contains(out, "lbt repair --rebuild-catalog --force") || !strings.Contains(out, "nothing was deleted") {
				t.Fatalf("lbt backup on an older catalog: exit %d:\n%s", code, out)
			}
			after := archiveSums(t, dir)
			delete(before, catalog.CatalogFile) // opening it may checkpoint its log
			delete(after, catalog.CatalogFile)
			for _, f := range []string{"-wal", "-shm"} {
				delete(before, catalog.CatalogFile+f)
				delete(after, catalog.CatalogFile+f)
			}
			checkSameFiles(t, before, after, "lbt backup on an older catalog")

			if code, out := lbtrun.Run(t, "repair", "--rebuild-catalog", "--force", "--config", cfg); code != 0 {
				t.Fatalf("lbt repair --rebuild-catalog --force: exit %d:\n%s", code, out)
			}
			o := restore.NewOptions()
			o.Table = "public.t"
			o.TargetConn, o.TargetTable = connConfig(t, target), "latest_t"
			o.Verify = true
			if _, err := runRestore(t, dir, o); err != nil {
				t.Fatalf("restore from the rebuilt catalog: %v", err)
			}
			checkRestored(t, c, target, "latest_t", want, "t from the catalog rebuilt over an older one")
		})
	}
}

// A rebuilt catalog keeps what makes restores refuse rather than go wrong:
// an inexact span closed by a basebackup, one still open, a table dropped
// and its name taken by a new table, and the looks at a partition tree.
// After lbt loses its catalog and rebuilds it from the files, those rows
// equal the lost catalog's, restores inside the spans are still refused
// with the span named, and the others equal the source at each moment:
// the old table under its name before the drop, the new one after, the
// partitioned table as its tree was.
func TestCatalogless_RebuildKeepsSpansLivesAndTrees(t *testing.T) {
	c, dsn, target, dir := newSourceAndTarget(t)
	c.Exec(t, dsn, `
		CREATE TABLE retyped (id int PRIMARY KEY, amount int);
		INSERT INTO retyped SELECT g, g FROM generate_series(1, 5) g;
		CREATE TABLE readded (id int PRIMARY KEY, w int, v text);
		INSERT INTO readded SELECT g, g, 'old v' || g FROM generate_series(1, 5) g;
		CREATE TABLE zz (id int PRIMARY KEY, v text);
		INSERT INTO zz VALUES (1, 'one'), (2, 'two'), (3, 'three');
		CREATE TABLE pm (id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
		CREATE TABLE pm_1 PARTITION OF pm FOR VALUES IN (1);
		CREATE TABLE pm_2 PARTITION OF pm FOR VALUES IN (2);
		INSERT INTO pm SELECT g, 1 + g % 2 FROM generate_series(1, 10) g`)
	const dropCheck = 100 * time.Millisecond
	d := startBackup(t, c, dsn, dir, func(o *ingest.Options) { o.DropCheckInterval = dropCheck })
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "retyped", "readded", "zz", "pm_1", "pm_2")
	waitLooked(t, c, dsn, dir)

	tables := map[string]string{"retyped": "retyped", "readded": "readded", "zz": "zz", "pm": "pm"}
	var cps []checkpoint
	cp := func(name string) { cps = append(cps, recordCheckpoint(t, c, dsn, name, tables)) }
	cp("before")
	c.Exec(t, dsn, `UPDATE retyped SET amount = 10 WHERE id = 1; UPDATE readded SET w = 10 WHERE id = 1; INSERT INTO pm VALUES (11, 2), (12, 1)`)
	// Archived before the DDL, so that the spans start after it whichever
	// of the stream and the daemon's look at the source sees the change.
	waitArchived(t, c, dsn, dir)
	c.Exec(t, dsn, `ALTER TABLE retyped ALTER amount TYPE bigint USING amount * 100`)
	c.Exec(t, dsn, `ALTER TABLE readded DROP COLUMN v, ADD COLUMN v text`)
	c.Exec(t, dsn, `INSERT INTO retyped VALUES (6, 6); INSERT INTO readded VALUES (6, 6, 'new v6')`)
	cp("in-span")
	// The spans are recorded before the basebackup that closes one.
	waitArchived(t, c, dsn, dir)
	takeBasebackups(t, dsn, dir, "retyped")
	c.Exec(t, dsn, `UPDATE retyped SET amount = amount + 1 WHERE id = 2; DELETE FROM pm WHERE id = 3`)
	cp("after-basebackup")
	waitLooked(t, c, dsn, dir)
	time.Sleep(3 * dropCheck)

	c.Exec(t, dsn, `DROP TABLE zz`)
	c.Exec(t, dsn, `CREATE TABLE zz (id int PRIMARY KEY, v text, note text)`)
	c.Exec(t, dsn, `INSERT INTO zz VALUES (10, 'ten', 'new table')`)
	waitArchived(t, c, dsn, dir)
	time.Sleep(3 * dropCheck)
	cp("latest")
	waitArchived(t, c, dsn, dir)
	waitLooked(t, c, dsn, dir)
	d.stop()

	want := catalogDump(t, dir)
	// The scenario made the rows this test is about.
	var open, closed int
	for _, g := range want["table_gap"] {
		if strings.Contains(g, " - - ") {
			open++
		} else {
			closed++
		}
	}
	if open == 0 || closed == 0 {
		t.Fatalf("the archive has %d open and %d closed spans, want both:\n%s", open, closed, strings.Join(want["table_gap"], "\n"))
	}
	if !slices.ContainsFunc(want["rel_life"], func(s string) bool { return !strings.Contains(strings.Fields(s)[4], "-") }) {
		t.Fatalf("no table is known dropped:\n%s", strings.Join(want["rel_life"], "\n"))
	}
	if len(want["partition_tree"]) == 0 || len(want["table_storage"]) == 0 {
		t.Fatalf("no partition tree runs (%d) or table storage (%d)", len(want["partition_tree"]), len(want["table_storage"]))
	}

	rebuildLostCatalog(t, dir)
	got := catalogDump(t, dir)
	for _, name := range sortedKeys(want) {
		if !slices.Equal(got[name], want[name]) {
			t.Errorf("rebuilt %s differs from the lost catalog's:\n%s", name, diffRows(got[name], want[name]))
		}
	}

	// The closed span: refused inside, exact on either side.
	checkSpanRestores(t, c, dir, target, "retyped", cps, func(cp string) bool { return cp == "in-span" },
		"public.retyped") // the type change, or the rewrite as the look at the source saw it first
	// The open span: refused from the change on.
	for _, cp := range cps {
		o := restoreOptionsAt(t, "readded", cp.at, target, "r_readded_"+strings.ReplaceAll(cp.name, "-", "_"))
		_, err := runRestore(t, dir, o)
		what := fmt.Sprintf("readded at %s from the rebuilt catalog", cp.name)
		if cp.name == "before" {
			if err != nil {
				t.Errorf("%s: %v", what, err)
			} else {
				checkRestored(t, c, target, o.TargetTable, cp.tables["readded"], what)
			}
			continue
		}
		if !errors.Is(err, restore.ErrNotRestorable) || !strings.Contains(err.Error(), "public.readded") ||
			!strings.Contains(err.Error(), "cannot be restored exactly") {
			t.Errorf("%s: want the open span's refusal, got %v", what, err)
		}
	}
	// The name: the old table up to its drop, the new one after it; and
	// the partitioned table as its tree was, at each moment.
	checkSpanRestores(t, c, dir, target, "zz", cps, func(string) bool { return false }, "")
	for _, cp := range cps {
		// Without --verify: the restore of a partitioned table reports no
		// checksum of the rows it sent; the rows are compared below.
		o := restore.NewOptions()
		o.Table, o.Until, o.TargetConn = "pm", cp.at, connConfig(t, target)
		o.TargetTable = "r_pm_" + strings.ReplaceAll(cp.name, "-", "_")
		what := fmt.Sprintf("pm at %s from the rebuilt catalog", cp.name)
		if _, err := runRestore(t, dir, o); err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		checkRestored(t, c, target, o.TargetTable, cp.tables["pm"], what)
	}
}
