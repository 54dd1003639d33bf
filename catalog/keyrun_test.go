package catalog

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRunPage_RoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var random []keyEntry
	for len(random) < runPageKeys {
		// As dense as a page of a run of 256K pairs spread over 1 GiB of WAL.
		random = append(random, keyEntry{hash: r.Int64N(1 << 38), lsn: 1<<32 + r.Uint64N(1<<30)})
	}
	slices.SortFunc(random, compareKeyEntry)
	random = slices.Compact(random)
	for _, tc := range []struct {
		name  string
		pairs []keyEntry
	}{
		{"one pair", []keyEntry{{hash: 5, lsn: 9}}},
		{"zero hash and LSN", []keyEntry{{hash: 0, lsn: 0}, {hash: 0, lsn: 1}}},
		{"one hash, many LSNs", []keyEntry{{hash: 7, lsn: 100}, {hash: 7, lsn: 101}, {hash: 7, lsn: 1 << 40}}},
		{"LSNs not in hash order", []keyEntry{{hash: 1, lsn: 900}, {hash: 2, lsn: 3}, {hash: 2, lsn: 4}, {hash: 3, lsn: 1}}},
		{"negative and extreme values", []keyEntry{{hash: math.MinInt64, lsn: math.MaxUint64}, {hash: -1, lsn: 0}, {hash: math.MaxInt64, lsn: 0}, {hash: math.MaxInt64, lsn: math.MaxUint64}}},
		{"a full random page", random},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page := appendRunPage(nil, tc.pairs)
			got, err := decodeRunPage(nil, page)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.pairs) {
				t.Fatalf("decoded %v, want %v", got, tc.pairs)
			}
		})
	}
	if n := len(appendRunPage(nil, random)); n > 1004 {
		t.Errorf("a page of %d random pairs is %d bytes, more than SQLite keeps in a B-tree page of a WITHOUT ROWID table", len(random), n)
	}
}

func TestRunPage_RefusesDamage(t *testing.T) {
	good := appendRunPage(nil, []keyEntry{{hash: 10, lsn: 100}, {hash: 10, lsn: 200}, {hash: 20, lsn: 150}})
	for _, tc := range []struct {
		name string
		page []byte
	}{
		{"empty", nil},
		{"base only", []byte{5}},
		{"cut in a pair", good[:len(good)-1]},
		{"repeated pair", []byte{0, 1, 1, 0, 0}}, // (1,1) then (1,1)
		{"hash going down", []byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0x02, 0}}, // MaxInt64-ish then wraps
		{"LSN overflows", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := decodeRunPage(nil, tc.page); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decoded %v, %v; want ErrCorrupt", got, err)
			}
		})
	}
}

func FuzzDecodeRunPage(f *testing.F) {
	f.Add(appendRunPage(nil, []keyEntry{{hash: 1, lsn: 2}}))
	f.Add(appendRunPage(nil, []keyEntry{{hash: 10, lsn: 100}, {hash: 10, lsn: 200}, {hash: 20, lsn: 150}}))
	f.Add([]byte{0, 1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, page []byte) {
		got, err := decodeRunPage(nil, page)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		for i := 1; i < len(got); i++ {
			if compareKeyEntry(got[i-1], got[i]) >= 0 {
				t.Fatalf("decoded pairs out of order: %v then %v", got[i-1], got[i])
			}
		}
		again, err := decodeRunPage(nil, appendRunPage(nil, got))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("re-encoded page decodes to %v, %v; want %v", again, err, got)
		}
	})
}

// keyModel is what the index must answer: every pair ever added.
type keyModel map[int64]map[int64][]uint64 // table, hash: sorted distinct LSNs

func (m keyModel) add(e keyEntry) {
	if m[e.table] == nil {
		m[e.table] = map[int64][]uint64{}
	}
	l := m[e.table][e.hash]
	if i, found := slices.BinarySearch(l, e.lsn); !found {
		m[e.table][e.hash] = slices.Insert(l, i, e.lsn)
	}
}

func (m keyModel) lookup(table int64, hashes []int64, from uint64) []uint64 {
	var out []uint64
	for _, h := range hashes {
		for _, l := range m[table][h] {
			if l >= from {
				out = append(out, l)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (m keyModel) purge(table int64, before uint64) {
	for h, l := range m[table] {
		l = slices.DeleteFunc(l, func(lsn uint64) bool { return lsn < before })
		if len(l) == 0 {
			delete(m[table], h)
		} else {
			m[table][h] = l
		}
	}
}

func (m keyModel) count() int64 {
	var n int64
	for _, t := range m {
		for _, l := range t {
			n += int64(len(l))
		}
	}
	return n
}

// checkIndex compares the catalog's index with the model: every pair, a
// lookup of many hashes (present, absent, hot) from several LSNs, and the
// number of runs per level.
func checkIndex(t *testing.T, c *Catalog, m keyModel, hashes []int64, froms []uint64) {
	t.Helper()
	ctx := context.Background()
	var all []keyEntry
	err := c.EachRowKey(ctx, func(table, hash int64, lsn uint64) error {
		all = append(all, keyEntry{table, hash, lsn})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []keyEntry
	for table, hs := range m {
		for h, l := range hs {
			for _, lsn := range l {
				want = append(want, keyEntry{table, h, lsn})
			}
		}
	}
	slices.SortFunc(want, compareKeyEntry)
	if !slices.Equal(all, want) {
		t.Fatalf("the index holds %d pairs, the model %d (or they differ)", len(all), len(want))
	}
	if n, err := c.RowKeyCount(ctx); err != nil || n != m.count() {
		t.Fatalf("RowKeyCount = %d, %v; want %d", n, err, m.count())
	}
	for table := range m {
		for _, h := range hashes {
			for _, from := range froms {
				got, err := c.keyRunLSNs(ctx, table, []int64{h, h + 1}, from)
				if err != nil {
					t.Fatal(err)
				}
				if w := m.lookup(table, []int64{h, h + 1}, from); !slices.Equal(got, w) {
					t.Fatalf("table %d hashes %d,%d from %d: %v, want %v", table, h, h+1, from, got, w)
				}
			}
		}
		rows, err := c.pool.Query(`SELECT level, count(*) FROM key_run WHERE table_id = ? GROUP BY level`, table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var level, n int
			if err := rows.Scan(&level, &n); err != nil {
				t.Fatal(err)
			}
			if n >= runFanout {
				t.Errorf("table %d has %d runs at level %d, want fewer than %d", table, n, level, runFanout)
			}
		}
		rows.Close()
	}
}

func newTestCatalog(t *testing.T) *Catalog {
	t.Helper()
	c, err := Create(context.Background(), t.TempDir(), Source{SystemID: "1", Database: "app"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestKeyRuns_MergeAndLookup commits enough row keys, in commits of
// different sizes over two tables, for merges into two levels, with a hot
// key whose pairs span pages, and checks every answer against a model after
// each phase: commits, a purge in the middle of a run, and more commits.
func TestKeyRuns_MergeAndLookup(t *testing.T) {
	ctx := context.Background()
	c := newTestCatalog(t)
	r := rand.New(rand.NewPCG(3, 4))
	m := keyModel{}
	const hot = int64(1 << 40)
	hashes := []int64{hot, 0, 1 << 46}
	lsn := uint64(1000)
	commit := func(commits int) {
		for i := 0; i < commits; i++ {
			w, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			keys := r.IntN(600)
			if i%50 == 0 {
				keys = 5000 // a commit of more than a page
			}
			for k := 0; k < keys; k++ {
				lsn += uint64(r.IntN(3)) // several keys in one transaction
				e := keyEntry{table: 1 + int64(r.IntN(2)), hash: r.Int64N(1 << 47), lsn: lsn}
				switch k % 7 {
				case 0:
					e.hash = hot
				case 1:
					e.hash = r.Int64N(50) // few hashes, many LSNs each
				}
				if k%11 == 0 {
					hashes = append(hashes, e.hash)
				}
				w.AddRowKey(e.table, e.hash, e.lsn)
				if k%13 == 0 {
					w.AddRowKey(e.table, e.hash, e.lsn) // the same pair twice
				}
				m.add(e)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	commit(400)
	var levels int
	c.pool.QueryRow(`SELECT max(level) FROM key_run`).Scan(&levels)
	if levels < 2 {
		t.Fatalf("highest run level %d, want merges into 2 levels", levels)
	}
	froms := []uint64{0, lsn / 3, lsn / 2, lsn, lsn + 1}
	checkIndex(t, c, m, hashes[:40], froms)

	before := lsn / 2
	if err := c.purgeKeyRuns(ctx, 1, before); err != nil {
		t.Fatal(err)
	}
	m.purge(1, before)
	var early int
	c.pool.QueryRow(`SELECT count(*) FROM key_run WHERE table_id = 1 AND min_lsn < ?`, before).Scan(&early)
	if early != 0 {
		t.Errorf("after the purge, %d runs of table 1 hold pairs before it", early)
	}
	checkIndex(t, c, m, hashes[:40], froms)

	commit(100)
	checkIndex(t, c, m, hashes[len(hashes)-40:], append(froms, lsn/4*3))
}

// spillKeys is a RowKeySource of n keys of one table.
type spillKeys struct {
	r    *rand.Rand
	n    int
	done int
}

func (s *spillKeys) Next(buf []RowKey) (int, error) {
	k := min(len(buf), s.n-s.done)
	for i := range k {
		buf[i] = RowKey{TableID: 3, Hash: s.r.Int64N(1 << 47)}
	}
	s.done += k
	return k, nil
}

func (s *spillKeys) Close() error { return nil }

// TestKeyRuns_LargeTransaction indexes a transaction of more row keys than
// a commit sorts at once: it is written as several runs, and each key is
// found.
func TestKeyRuns_LargeTransaction(t *testing.T) {
	ctx := context.Background()
	c := newTestCatalog(t)
	n := keysInMemory*2 + 1000
	w, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const at = uint64(77 << 20)
	w.AddRowKeySource(at, &spillKeys{r: rand.New(rand.NewPCG(5, 6)), n: n})
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := c.RowKeyCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]bool{}
	r := rand.New(rand.NewPCG(5, 6))
	var sample []int64
	for i := 0; i < n; i++ {
		h := r.Int64N(1 << 47)
		want[h] = true
		if i%10007 == 0 {
			sample = append(sample, h)
		}
	}
	if got != int64(len(want)) {
		t.Fatalf("the index holds %d pairs, want %d", got, len(want))
	}
	for _, h := range sample {
		lsns, err := c.keyRunLSNs(ctx, 3, []int64{h}, 0)
		if err != nil || !slices.Equal(lsns, []uint64{at}) {
			t.Fatalf("hash %d: %v, %v; want [%d]", h, lsns, err, at)
		}
	}
}

// TestRowKeyTxs_FiltersByTransaction: a pair is answered with its
// transaction, within the time bound, and not at all once the transaction
// row is gone.
func TestRowKeyTxs_FiltersByTransaction(t *testing.T) {
	ctx := context.Background()
	c := newTestCatalog(t)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	w, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 3; i++ {
		w.AddTx(Tx{CommitLSN: i * 100, EndLSN: i*100 + 8, Xid: uint32(i), CommitTime: t0.Add(time.Duration(i) * time.Minute)})
		w.AddRowKey(1, 42, i*100)
	}
	w.AddRowKey(1, 43, 200)
	w.AddRowKey(1, 42, 400) // no tx row
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := c.RowKeyTxs(ctx, 1, []int64{42}, 150, t0.Add(3*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].CommitLSN != 200 || got[0].Xid != 2 || !got[0].CommitTime.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("RowKeyTxs = %+v, want the transaction at 200 only", got)
	}
	if got, err := c.RowKeyTxs(ctx, 2, []int64{42}, 0, time.Time{}); err != nil || len(got) != 0 {
		t.Fatalf("another table: %+v, %v", got, err)
	}
}

// TestUpgradeFrom4 makes a version-4 catalog (a row_key table, no runs)
// and opens it: read-only is refused with one line, writing upgrades it to
// the same pairs.
func TestUpgradeFrom4(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := Create(ctx, dir, Source{SystemID: "1", Database: "app"})
	if err != nil {
		t.Fatal(err)
	}
	m := keyModel{}
	r := rand.New(rand.NewPCG(7, 8))
	db := c.pool
	mustExec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	mustExec(`DROP TABLE key_run_page`)
	mustExec(`DROP TABLE key_run`)
	mustExec(`DROP TABLE purge_file`)
	mustExec(`CREATE TABLE row_key (table_id INTEGER NOT NULL, key_hash INTEGER NOT NULL, commit_lsn INTEGER NOT NULL,
		PRIMARY KEY (table_id, key_hash, commit_lsn)) WITHOUT ROWID`)
	mustExec(`UPDATE meta SET value = '4' WHERE key = 'format_version'`)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		e := keyEntry{table: 1 + int64(r.IntN(3)), hash: r.Int64N(1 << 47), lsn: uint64(r.IntN(1 << 30))}
		if i%3 == 0 {
			e.hash = 99
		}
		m.add(e)
		if _, err := tx.Exec(`INSERT OR IGNORE INTO row_key VALUES (?, ?, ?)`, e.table, e.hash, int64(e.lsn)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	c.Close()

	if _, err := OpenReadOnly(ctx, dir); err == nil || !containsAll(err.Error(), "format version 4", "lbt backup") {
		t.Fatalf("read-only open of a version-4 archive: %v, want a refusal that says how to upgrade", err)
	}
	c, err = Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, err := c.Meta(ctx, "format_version"); err != nil || v != "5" {
		t.Fatalf("format_version %q, %v after the upgrade", v, err)
	}
	var n int
	if err := c.pool.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'row_key'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("row_key still there after the upgrade (%d, %v)", n, err)
	}
	checkIndex(t, c, m, []int64{99, 5}, []uint64{0, 1 << 29})
	if err := c.pool.QueryRow(`SELECT count(*) FROM key_run`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d runs after the upgrade (%v), want one per table", n, err)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
