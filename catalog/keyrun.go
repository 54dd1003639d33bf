package catalog

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
)

// The row-key index (format 5) is a set of sorted runs per table, as in a
// log-structured merge tree. Each catalog commit adds one run per table it
// changed: the (key hash, commit LSN) pairs of its changes, sorted and
// without duplicates, cut into pages of runPageKeys pairs. A key_run row
// describes a run; its pages are key_run_page rows keyed by their last
// pair, so that finding a hash in a run is one indexed seek. When a table
// has runFanout runs of one level, they are merged into one run of the next
// level, so a table has at most about runFanout runs per level and a
// lookup makes a seek per run: about 40 at 100M changes.
//
// The index is exact in what it stores: a hash and the commit LSNs of the
// transactions that changed a row whose key has that hash. A lookup
// returns those transactions; the caller filters their changes by the
// key's values, so a hash collision costs reading a blob, never a wrong
// row.

const (
	// runPageKeys is the pairs of a page: at 8-10 bytes a pair, under
	// the 1,004 bytes that a row of a WITHOUT ROWID table keeps in its
	// B-tree page (of 4 KiB), so that reading a page is one page read, not
	// a chain of overflow pages.
	runPageKeys = 96
	runFanout   = 8   // runs of one level merged into one of the next
	runLevel0   = 512 // pairs of a run of level 0 at most

	// keysInMemory is how many pairs a commit sorts at once; a
	// transaction with more row keys (read from a RowKeySource) writes
	// several runs, merged later like any others.
	keysInMemory = 1 << 18
)

// keyEntry is one pair of the index, with its table.
type keyEntry struct {
	table int64
	hash  int64
	lsn   uint64
}

func compareKeyEntry(a, b keyEntry) int {
	if c := cmp.Compare(a.table, b.table); c != 0 {
		return c
	}
	if c := cmp.Compare(a.hash, b.hash); c != 0 {
		return c
	}
	return cmp.Compare(a.lsn, b.lsn)
}

// runLevel is the level of a run of n pairs: 0 up to a page, then one more
// for each runFanout times as many.
func runLevel(n int64) int {
	level := 0
	for size := int64(runLevel0); n > size; size *= runFanout {
		level++
	}
	return level
}

// A run page is the uvarint of the smallest commit LSN in it (base), then
// its pairs in (hash, LSN) order, each as the uvarint of its hash minus the
// previous hash (the first pair: of the hash itself, as uint64), then the
// uvarint of its LSN minus the previous LSN when the hash is the previous
// one, else minus base.

// appendRunPage encodes sorted, distinct pairs (table ignored) as a page.
func appendRunPage(dst []byte, pairs []keyEntry) []byte {
	base := pairs[0].lsn
	for _, p := range pairs[1:] {
		base = min(base, p.lsn)
	}
	dst = binary.AppendUvarint(dst, base)
	for i, p := range pairs {
		if i == 0 {
			dst = binary.AppendUvarint(dst, uint64(p.hash))
			dst = binary.AppendUvarint(dst, p.lsn-base)
			continue
		}
		prev := pairs[i-1]
		dst = binary.AppendUvarint(dst, uint64(p.hash)-uint64(prev.hash))
		if p.hash == prev.hash {
			dst = binary.AppendUvarint(dst, p.lsn-prev.lsn)
		} else {
			dst = binary.AppendUvarint(dst, p.lsn-base)
		}
	}
	return dst
}

// decodeRunPage appends the pairs of a page to dst (table left zero). A
// page whose pairs are not strictly increasing, or that does not decode
// whole, is ErrCorrupt.
func decodeRunPage(dst []keyEntry, page []byte) ([]keyEntry, error) {
	base, n := binary.Uvarint(page)
	if n <= 0 {
		return dst, fmt.Errorf("%w: row-key run page has no base LSN", ErrCorrupt)
	}
	page = page[n:]
	first := true
	var prev keyEntry
	for len(page) > 0 {
		dh, n := binary.Uvarint(page)
		if n <= 0 {
			return dst, fmt.Errorf("%w: row-key run page: bad hash", ErrCorrupt)
		}
		page = page[n:]
		dl, n := binary.Uvarint(page)
		if n <= 0 {
			return dst, fmt.Errorf("%w: row-key run page: bad LSN", ErrCorrupt)
		}
		page = page[n:]
		var e keyEntry
		switch {
		case first:
			e.hash, e.lsn = int64(dh), base+dl
			if e.lsn < base {
				return dst, fmt.Errorf("%w: row-key run page: LSN overflows", ErrCorrupt)
			}
		case dh == 0:
			if dl == 0 || prev.lsn+dl < prev.lsn {
				return dst, fmt.Errorf("%w: row-key run page: pairs out of order", ErrCorrupt)
			}
			e.hash, e.lsn = prev.hash, prev.lsn+dl
		default:
			e.hash, e.lsn = int64(uint64(prev.hash)+dh), base+dl
			if e.hash <= prev.hash || e.lsn < base {
				return dst, fmt.Errorf("%w: row-key run page: pairs out of order", ErrCorrupt)
			}
		}
		dst = append(dst, e)
		prev, first = e, false
	}
	if first {
		return dst, fmt.Errorf("%w: row-key run page is empty", ErrCorrupt)
	}
	return dst, nil
}

// keyRunSchemaSQL creates the row-key index's tables: in a new catalog,
// and in a version-4 catalog that upgradeFrom4 upgrades.
const keyRunSchemaSQL = `
-- The row-key index: sorted runs of (key hash, commit LSN) pairs per table
-- (docs/FORMAT.md, "Row keys"), each cut into pages keyed by their last pair.
CREATE TABLE key_run (
	run_id   INTEGER PRIMARY KEY,
	table_id INTEGER NOT NULL,
	level    INTEGER NOT NULL,
	min_lsn  INTEGER NOT NULL,
	max_lsn  INTEGER NOT NULL,
	pairs    INTEGER NOT NULL
);
CREATE INDEX key_run_table ON key_run (table_id, level);
CREATE TABLE key_run_page (
	run_id    INTEGER NOT NULL,
	last_hash INTEGER NOT NULL,
	last_lsn  INTEGER NOT NULL,
	pairs     BLOB NOT NULL,
	PRIMARY KEY (run_id, last_hash, last_lsn)
) WITHOUT ROWID;
`

// queryer is what the index needs of a connection or transaction.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// runWriter writes one run of a table, a page at a time: pairs must come
// in strictly increasing (hash, LSN) order.
type runWriter struct {
	ctx     context.Context
	tx      queryer
	table   int64
	id      int64
	n       int64
	minLSN  uint64
	maxLSN  uint64
	pending []keyEntry
	buf     []byte
	insert  *sql.Stmt // of pages, prepared at the first
}

func newRunWriter(ctx context.Context, tx queryer, table int64) (*runWriter, error) {
	var id int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(run_id), 0) + 1 FROM key_run`).Scan(&id); err != nil {
		return nil, fmt.Errorf("catalog row-key run: %w", err)
	}
	return &runWriter{ctx: ctx, tx: tx, table: table, id: id, pending: make([]keyEntry, 0, runPageKeys)}, nil
}

func (w *runWriter) add(e keyEntry) error {
	if w.n == 0 || e.lsn < w.minLSN {
		w.minLSN = e.lsn
	}
	w.maxLSN = max(w.maxLSN, e.lsn)
	w.n++
	w.pending = append(w.pending, e)
	if len(w.pending) == runPageKeys {
		return w.flushPage()
	}
	return nil
}

func (w *runWriter) flushPage() error {
	if len(w.pending) == 0 {
		return nil
	}
	last := w.pending[len(w.pending)-1]
	w.buf = appendRunPage(w.buf[:0], w.pending)
	w.pending = w.pending[:0]
	if w.insert == nil {
		st, err := w.tx.PrepareContext(w.ctx, `INSERT INTO key_run_page (run_id, last_hash, last_lsn, pairs) VALUES (?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("catalog row-key run page: %w", err)
		}
		w.insert = st
	}
	_, err := w.insert.ExecContext(w.ctx, w.id, last.hash, int64(last.lsn), w.buf)
	if err != nil {
		return fmt.Errorf("catalog row-key run page: %w", err)
	}
	return nil
}

// finish writes the last page and the run's row, at level at least level.
// A run of no pairs writes nothing.
func (w *runWriter) finish(level int) error {
	if w.n == 0 {
		return nil
	}
	err := w.flushPage()
	if w.insert != nil {
		w.insert.Close()
		w.insert = nil
	}
	if err != nil {
		return err
	}
	_, err = w.tx.ExecContext(w.ctx, `INSERT INTO key_run (run_id, table_id, level, min_lsn, max_lsn, pairs) VALUES (?, ?, ?, ?, ?, ?)`,
		w.id, w.table, max(level, runLevel(w.n)), int64(w.minLSN), int64(w.maxLSN), w.n)
	if err != nil {
		return fmt.Errorf("catalog row-key run: %w", err)
	}
	return nil
}

// runReader reads a run's pairs in order, a page at a time, each page by
// its own seek so that no cursor stays open while the merge writes.
type runReader struct {
	ctx      context.Context
	pages    *pageStmts
	id       int64
	lastHash int64
	lastLSN  int64
	started  bool
	done     bool
	page     []keyEntry
	i        int
}

// pageStmts are the two seeks of runReader, prepared once for all the runs
// of a merge: a merge reads a page for every 96 pairs, and parsing the SQL
// again for each cost more than the seek.
type pageStmts struct {
	first, next *sql.Stmt
}

func preparePageStmts(ctx context.Context, tx queryer) (*pageStmts, error) {
	first, err := tx.PrepareContext(ctx, `SELECT last_hash, last_lsn, pairs FROM key_run_page WHERE run_id = ? ORDER BY last_hash, last_lsn LIMIT 1`)
	if err != nil {
		return nil, fmt.Errorf("catalog row-key runs: %w", err)
	}
	next, err := tx.PrepareContext(ctx, `SELECT last_hash, last_lsn, pairs FROM key_run_page WHERE run_id = ? AND (last_hash, last_lsn) > (?, ?) ORDER BY last_hash, last_lsn LIMIT 1`)
	if err != nil {
		first.Close()
		return nil, fmt.Errorf("catalog row-key runs: %w", err)
	}
	return &pageStmts{first: first, next: next}, nil
}

func (p *pageStmts) close() {
	p.first.Close()
	p.next.Close()
}

// next returns the run's next pair, false at its end.
func (r *runReader) next() (keyEntry, bool, error) {
	for r.i == len(r.page) {
		if r.done {
			return keyEntry{}, false, nil
		}
		var row *sql.Row
		if r.started {
			row = r.pages.next.QueryRowContext(r.ctx, r.id, r.lastHash, r.lastLSN)
		} else {
			row = r.pages.first.QueryRowContext(r.ctx, r.id)
		}
		var b []byte
		err := row.Scan(&r.lastHash, &r.lastLSN, &b)
		if err == sql.ErrNoRows {
			r.done = true
			continue
		}
		if err != nil {
			return keyEntry{}, false, fmt.Errorf("catalog row-key run %d: %w", r.id, err)
		}
		r.started = true
		if r.page, err = decodeRunPage(r.page[:0], b); err != nil {
			return keyEntry{}, false, fmt.Errorf("run %d: %w", r.id, err)
		}
		r.i = 0
	}
	e := r.page[r.i]
	r.i++
	return e, true, nil
}

// writeKeys adds pairs to the index, one run per table, then merges what
// has filled a level. It sorts keys in place.
func writeKeys(ctx context.Context, tx queryer, keys []keyEntry) error {
	if len(keys) == 0 {
		return nil
	}
	slices.SortFunc(keys, compareKeyEntry)
	keys = slices.Compact(keys)
	for len(keys) > 0 {
		n := 1
		for n < len(keys) && keys[n].table == keys[0].table {
			n++
		}
		w, err := newRunWriter(ctx, tx, keys[0].table)
		if err != nil {
			return err
		}
		for _, e := range keys[:n] {
			if err := w.add(e); err != nil {
				return err
			}
		}
		if err := w.finish(0); err != nil {
			return err
		}
		if err := compactKeyRuns(ctx, tx, keys[0].table); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// compactKeyRuns merges a table's runs of the lowest level that holds
// runFanout of them into one, until no level does.
func compactKeyRuns(ctx context.Context, tx queryer, table int64) error {
	for {
		rows, err := tx.QueryContext(ctx, `SELECT level, run_id FROM key_run WHERE table_id = ? ORDER BY level, run_id`, table)
		if err != nil {
			return fmt.Errorf("catalog row-key runs of table %d: %w", table, err)
		}
		byLevel := map[int][]int64{}
		merge := -1
		for rows.Next() {
			var level int
			var id int64
			if err := rows.Scan(&level, &id); err != nil {
				rows.Close()
				return fmt.Errorf("catalog row-key runs of table %d: %w", table, err)
			}
			byLevel[level] = append(byLevel[level], id)
			if merge < 0 && len(byLevel[level]) == runFanout {
				merge = level
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("catalog row-key runs of table %d: %w", table, err)
		}
		if merge < 0 {
			return nil
		}
		if err := mergeKeyRuns(ctx, tx, table, byLevel[merge], merge+1, 0); err != nil {
			return err
		}
	}
}

// runMerger yields the pairs of several runs in order, each once. Memory
// is a page per run.
type runMerger struct {
	pages   *pageStmts
	readers []*runReader
	heads   []keyEntry
	live    []bool
	last    keyEntry
	started bool
}

// newRunMerger prepares its statements on tx: close it when done.
func newRunMerger(ctx context.Context, tx queryer, ids []int64) (*runMerger, error) {
	pages, err := preparePageStmts(ctx, tx)
	if err != nil {
		return nil, err
	}
	m := &runMerger{pages: pages, readers: make([]*runReader, len(ids)), heads: make([]keyEntry, len(ids)), live: make([]bool, len(ids))}
	for i, id := range ids {
		m.readers[i] = &runReader{ctx: ctx, pages: pages, id: id}
		e, ok, err := m.readers[i].next()
		if err != nil {
			pages.close()
			return nil, err
		}
		m.heads[i], m.live[i] = e, ok
	}
	return m, nil
}

// next returns the next pair, false after the last.
func (m *runMerger) next() (keyEntry, bool, error) {
	for {
		least := -1
		for i := range m.heads {
			if m.live[i] && (least < 0 || compareKeyEntry(m.heads[i], m.heads[least]) < 0) {
				least = i
			}
		}
		if least < 0 {
			return keyEntry{}, false, nil
		}
		e := m.heads[least]
		var err error
		if m.heads[least], m.live[least], err = m.readers[least].next(); err != nil {
			return keyEntry{}, false, err
		}
		if m.live[least] && compareKeyEntry(m.heads[least], e) <= 0 {
			return keyEntry{}, false, fmt.Errorf("%w: row-key run %d out of order", ErrCorrupt, m.readers[least].id)
		}
		if m.started && e == m.last {
			continue // in two runs: a rebuild or an upgrade may write a pair twice
		}
		m.last, m.started = e, true
		return e, true, nil
	}
}

func (m *runMerger) close() { m.pages.close() }

// each calls fn for each pair in order.
func (m *runMerger) each(fn func(keyEntry) error) error {
	for {
		e, ok, err := m.next()
		if err != nil || !ok {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// mergeKeyRuns replaces runs of a table by one run at level at least
// level, holding their pairs with commit LSN at or after from.
func mergeKeyRuns(ctx context.Context, tx queryer, table int64, ids []int64, level int, from uint64) error {
	m, err := newRunMerger(ctx, tx, ids)
	if err != nil {
		return err
	}
	defer m.close()
	w, err := newRunWriter(ctx, tx, table)
	if err != nil {
		return err
	}
	err = m.each(func(e keyEntry) error {
		if e.lsn < from {
			return nil
		}
		return w.add(e)
	})
	if err != nil {
		return err
	}
	if err := w.finish(level); err != nil {
		return err
	}
	return deleteKeyRuns(ctx, tx, ids)
}

func deleteKeyRuns(ctx context.Context, tx queryer, ids []int64) error {
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `DELETE FROM key_run_page WHERE run_id = ?`, id); err != nil {
			return fmt.Errorf("catalog delete row-key run %d: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM key_run WHERE run_id = ?`, id); err != nil {
			return fmt.Errorf("catalog delete row-key run %d: %w", id, err)
		}
	}
	return nil
}

// keyRunLSNs returns the commit LSNs at or after from that the table's
// runs hold for any of hashes, sorted and distinct.
func (c *Catalog) keyRunLSNs(ctx context.Context, tableID int64, hashes []int64, from uint64) ([]uint64, error) {
	runs, err := runIDs(ctx, c.db, tableID, from)
	if err != nil {
		return nil, err
	}
	// The first page whose last pair is at or after (h, from) holds the
	// first pair that can match; pairs of h go on into the next pages
	// while a page ends with h.
	first, err := c.db.PrepareContext(ctx, `SELECT last_hash, last_lsn, pairs FROM key_run_page
		WHERE run_id = ? AND (last_hash, last_lsn) >= (?, ?) ORDER BY last_hash, last_lsn LIMIT 1`)
	if err != nil {
		return nil, fmt.Errorf("catalog row-key runs: %w", err)
	}
	defer first.Close()
	next, err := c.db.PrepareContext(ctx, `SELECT last_hash, last_lsn, pairs FROM key_run_page
		WHERE run_id = ? AND (last_hash, last_lsn) > (?, ?) ORDER BY last_hash, last_lsn LIMIT 1`)
	if err != nil {
		return nil, fmt.Errorf("catalog row-key runs: %w", err)
	}
	defer next.Close()
	var lsns []uint64
	var page []keyEntry
	for _, run := range runs {
		for _, h := range hashes {
			lastHash, lastLSN := h, clampLSN(from)
			for st := first; ; st = next {
				var b []byte
				err := st.QueryRowContext(ctx, run, lastHash, lastLSN).Scan(&lastHash, &lastLSN, &b)
				if err == sql.ErrNoRows {
					break
				}
				if err != nil {
					return nil, fmt.Errorf("catalog row-key run %d: %w", run, err)
				}
				if page, err = decodeRunPage(page[:0], b); err != nil {
					return nil, fmt.Errorf("catalog row-key run %d: %w", run, err)
				}
				for _, e := range page {
					if e.hash == h && e.lsn >= from {
						lsns = append(lsns, e.lsn)
					}
				}
				if lastHash != h {
					break
				}
			}
		}
	}
	slices.Sort(lsns)
	return slices.Compact(lsns), nil
}

// inSnapshot runs fn on a view of the catalog at one moment (ReadSnapshot),
// or on c if it is one: a question that reads the runs of a table with
// several statements must not see a merge or a purge half, when a run it
// listed is gone and the run that took its pairs is not listed.
func (c *Catalog) inSnapshot(ctx context.Context, fn func(v *Catalog) error) error {
	if c.view {
		return fn(c)
	}
	return c.ReadSnapshot(ctx, fn)
}

// RowKeyCount is how many distinct (table, hash, commit LSN) pairs the
// row-key index holds. It reads the whole index.
func (c *Catalog) RowKeyCount(ctx context.Context) (int64, error) {
	var n int64
	err := c.EachRowKey(ctx, func(int64, int64, uint64) error { n++; return nil })
	return n, err
}

// EachRowKey calls fn for each pair of the row-key index, by table, hash
// and commit LSN, once each, as `repair --rebuild-catalog` must rebuild
// them.
func (c *Catalog) EachRowKey(ctx context.Context, fn func(tableID, hash int64, commitLSN uint64) error) error {
	if !c.view {
		return c.ReadSnapshot(ctx, func(v *Catalog) error { return v.EachRowKey(ctx, fn) })
	}
	tables, err := queryRows(ctx, c.db, "row keys", scanInt64, `SELECT DISTINCT table_id FROM key_run ORDER BY table_id`)
	if err != nil {
		return err
	}
	for _, t := range tables {
		ids, err := runIDs(ctx, c.db, t, 0)
		if err != nil {
			return err
		}
		m, err := newRunMerger(ctx, c.db, ids)
		if err != nil {
			return err
		}
		err = m.each(func(e keyEntry) error { return fn(t, e.hash, e.lsn) })
		m.close()
		if err != nil {
			return err
		}
	}
	return nil
}

// runIDs returns the ids of the table's runs that hold pairs at or after
// from.
func runIDs(ctx context.Context, q queryer, table int64, from uint64) ([]int64, error) {
	return queryRows(ctx, q, fmt.Sprintf("row-key runs of table %d", table), scanInt64,
		`SELECT run_id FROM key_run WHERE table_id = ? AND max_lsn >= ? ORDER BY run_id`, table, clampLSN(from))
}

// upgradeFrom4 makes a version-4 catalog version 5 in one transaction: the
// row_key table, read in its primary-key order, is already each table's
// pairs sorted, and becomes one run per table; purge_file is created empty
// (a version-4 purge removed its files before it returned, or left files
// nothing references, as version 4 documents), and no version-4
// basebackup reuses a chunk.
func (c *Catalog) upgradeFrom4(ctx context.Context) error {
	return c.writeOnce(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, keyRunSchemaSQL); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, purgeFileSchemaSQL); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT table_id, key_hash, commit_lsn FROM row_key ORDER BY table_id, key_hash, commit_lsn`)
		if err != nil {
			return err
		}
		defer rows.Close()
		var w *runWriter
		for rows.Next() {
			var e keyEntry
			var lsn int64
			if err := rows.Scan(&e.table, &e.hash, &lsn); err != nil {
				return err
			}
			e.lsn = uint64(lsn)
			if w != nil && w.table != e.table {
				if err := w.finish(0); err != nil {
					return err
				}
				w = nil
			}
			if w == nil {
				if w, err = newRunWriter(ctx, tx, e.table); err != nil {
					return err
				}
			}
			if err := w.add(e); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		if w != nil {
			if err := w.finish(0); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DROP TABLE row_key`); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'format_version'`, strconv.Itoa(FormatVersion))
		return err
	})
}
