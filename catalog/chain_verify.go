package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
)

// ChainReport says what the chain verification found.
type ChainReport struct {
	Links int
	Head  Head // of the newest link; zero without links
	// HeadFound: the head VerifyHead was given is a link of the chain,
	// with the LSN it names.
	HeadFound bool
}

// maxChainProblems bounds the links reported; the first is the one that
// matters, the rest say how far the damage goes.
const maxChainProblems = 20

// verifyChain recomputes the chain from the catalog's rows: each link's
// hash from its content and the link before, and each link's rows against
// its account (or its newest anchor's). With want, it also checks that
// want is a link of the recomputed chain. It returns the problems, the
// first break first.
func (c *Catalog) verifyChain(ctx context.Context, wantHead *Head) (ChainReport, []string, error) {
	var r ChainReport
	var problems []string
	problem := func(format string, args ...any) {
		if len(problems) < maxChainProblems {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	// One read transaction: the daemon may commit while verify runs, and a
	// commit's rows and its link must be seen together or not at all.
	q, err := c.pool.Conn(ctx)
	if err != nil {
		return r, nil, fmt.Errorf("verify chain: %w", err)
	}
	defer q.Close()
	if _, err := q.ExecContext(ctx, "BEGIN"); err != nil {
		return r, nil, fmt.Errorf("verify chain: %w", err)
	}
	defer q.ExecContext(context.Background(), "ROLLBACK")
	g, err := genesis(ctx, q)
	if err != nil {
		return r, nil, err
	}
	// One pass over the links and, beside them, over each class of rows
	// in LSN order: the links' ranges follow each other, so each row
	// belongs to the link whose range the pass is in, or to none.
	links, err := q.QueryContext(ctx, `SELECT `+linkColumns+` FROM chain ORDER BY seq`)
	if err != nil {
		return r, nil, fmt.Errorf("verify chain: %w", err)
	}
	defer links.Close()
	anchors, err := newAnchorCursor(ctx, q)
	if err != nil {
		return r, nil, err
	}
	defer anchors.close()
	streams, err := newRowStreams(ctx, q)
	if err != nil {
		return r, nil, err
	}
	defer streams.close()

	// trueHash follows the recomputed chain (what an auditor's heads are
	// links of); storedPrev the stored hashes, so that one changed link is
	// reported once, where it is.
	trueHash, storedPrev := g, g
	var headLSN, prevLast uint64
	var headSeq, firstBreak, bases int64
	broken := false
	for links.Next() {
		if err := ctx.Err(); err != nil {
			return r, nil, err
		}
		l, err := scanLink(links)
		if err != nil {
			return r, nil, fmt.Errorf("verify chain: %w", err)
		}
		r.Links++
		if l.Seq != int64(r.Links) {
			problem("the hash chain breaks at link %d: link %d is missing (the chain's own rows were changed)", l.Seq, int64(r.Links))
			broken = true
			r.Links = int(l.Seq)
		}
		if h := linkHash(storedPrev, &l); h != l.Hash {
			problem("the hash chain breaks at link %d (%s): its hash is not that of its content and the link before (the chain's own rows were changed)", l.Seq, describeLink(&l))
			broken = true
		}
		trueHash = linkHash(trueHash, &l)
		storedPrev = l.Hash

		want, err := anchors.newest(l.Seq, l.sums)
		if err != nil {
			return r, nil, err
		}
		var got linkSums
		switch l.Kind {
		case linkCommit:
			if l.FirstLSN <= prevLast && prevLast > 0 || l.LastLSN < l.FirstLSN {
				problem("the hash chain breaks at link %d (%s): its range is not after the commit link before's (the chain's own rows were changed)", l.Seq, describeLink(&l))
				broken = true
			}
			prevLast = max(prevLast, l.LastLSN)
			headLSN = max(headLSN, l.LastLSN)
			if got, err = streams.take(l.FirstLSN, l.LastLSN, problem); err != nil {
				return r, nil, err
			}
		default:
			if got, err = linkSumsNow(ctx, q, &l); err != nil {
				return r, nil, fmt.Errorf("verify chain link %d: %w", l.Seq, err)
			}
			if l.Kind == linkBasebackup {
				bases += got.rows
			}
		}
		if !equalSums(got, want) {
			what, err := describeBreak(ctx, q, &l, got, want)
			if err != nil {
				return r, nil, err
			}
			problem("the hash chain breaks at link %d (%s): %s", l.Seq, describeLink(&l), what)
			if firstBreak == 0 {
				firstBreak = l.Seq
			}
		}
		if wantHead != nil && trueHash == wantHead.Hash && !broken && !r.HeadFound {
			if wantHead.LSN == headLSN {
				r.HeadFound, headSeq = true, l.Seq
			} else {
				problem("head %s: the chain's link with that hash (link %d) is at %s, not %s", wantHead, l.Seq, FormatLSN(headLSN), FormatLSN(wantHead.LSN))
			}
		}
	}
	if err := links.Err(); err != nil {
		return r, nil, fmt.Errorf("verify chain: %w", err)
	}
	if r.Links > 0 {
		r.Head = Head{Hash: trueHash, LSN: headLSN}
	}
	// What lies after the last commit link's range.
	if _, err := streams.take(^uint64(0), ^uint64(0), problem); err != nil {
		return r, nil, err
	}
	if err := uncoveredBasebackups(ctx, q, bases, problem); err != nil {
		return r, nil, err
	}
	if r.HeadFound && firstBreak > 0 && firstBreak <= headSeq {
		r.HeadFound = false
		problem("head %s covers link %d, whose history was changed", wantHead, firstBreak)
	} else if wantHead != nil && !r.HeadFound {
		problem("head %s is not a link of this archive's hash chain: the history it covered was changed, or the head is another archive's", wantHead)
	}
	return r, problems, nil
}

// describeBreak says which of a link's rows differ from its account.
func describeBreak(ctx context.Context, q chainDB, l *Link, got, want linkSums) (string, error) {
	var parts []string
	count := func(n int64, what string) string {
		if n < 0 {
			return fmt.Sprintf("%d %s rows missing", -n, what)
		}
		return fmt.Sprintf("%d %s rows more than recorded", n, what)
	}
	switch l.Kind {
	case linkCommit:
		if got.txs != want.txs || got.txSum != want.txSum {
			txs, err := txsIn(ctx, q, l.FirstLSN, l.LastLSN)
			if err != nil {
				return "", err
			}
			s := "a transaction row was changed"
			if got.txs != want.txs {
				s = count(got.txs-want.txs, "transaction")
			}
			switch {
			case want.txs == 1 && l.FirstLSN == l.LastLSN && len(txs) == 0:
				s += fmt.Sprintf(": the transaction at %s is gone", FormatLSN(l.FirstLSN))
			case len(txs) > 0 && len(txs) <= 5:
				s += ": transaction " + strings.Join(txs, ", ")
			}
			parts = append(parts, s)
		}
		if got.blobs != want.blobs || got.blobSum != want.blobSum {
			ids, err := blobsIn(ctx, q, l.FirstLSN, l.LastLSN)
			if err != nil {
				return "", err
			}
			s := "a blob row was changed"
			if got.blobs != want.blobs {
				s = count(got.blobs-want.blobs, "blob")
			}
			if len(ids) > 0 && len(ids) <= 5 {
				s += ": blob " + strings.Join(ids, ", ")
			}
			parts = append(parts, s)
		}
		if got.rows != want.rows || got.rowSum != want.rowSum {
			parts = append(parts, "its transactions' logical messages differ")
		}
	case linkBasebackup:
		parts = append(parts, fmt.Sprintf("the basebackup row of table %d at %s differs from what the chain recorded (%d rows there, %d recorded)",
			l.TableID, FormatLSN(l.FirstLSN), got.rows, want.rows))
	case linkPurge:
		parts = append(parts, "the purge records differ from what the chain recorded")
	}
	return strings.Join(parts, "; "), nil
}

func txsIn(ctx context.Context, q chainDB, first, last uint64) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT commit_lsn, xid FROM tx WHERE commit_lsn BETWEEN ? AND ? ORDER BY commit_lsn LIMIT 6`, int64(first), int64(last))
	if err != nil {
		return nil, fmt.Errorf("verify chain: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var lsn, xid int64
		if err := rows.Scan(&lsn, &xid); err != nil {
			return nil, fmt.Errorf("verify chain: %w", err)
		}
		out = append(out, fmt.Sprintf("%s (xid %d)", FormatLSN(uint64(lsn)), xid))
	}
	return out, rows.Err()
}

func blobsIn(ctx context.Context, q chainDB, first, last uint64) ([]string, error) {
	blobs, err := chainBlobs(ctx, q, `first_lsn BETWEEN ? AND ?`, int64(first), int64(last))
	if err != nil {
		return nil, fmt.Errorf("verify chain: %w", err)
	}
	var out []string
	for _, b := range blobs {
		out = append(out, fmt.Sprintf("%d (table %d, %d bytes in %s)", b.ID, b.TableID, b.Length, SegmentName(b.SegmentID)))
	}
	return out, nil
}

// uncoveredBasebackups names a basebackup row that no link covers, when
// there are more rows than the links covered.
func uncoveredBasebackups(ctx context.Context, q chainDB, covered int64, problem func(string, ...any)) error {
	var n int64
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM basebackup`).Scan(&n); err != nil {
		return fmt.Errorf("verify chain: %w", err)
	}
	if n <= covered {
		return nil
	}
	var path string
	err := q.QueryRowContext(ctx, `SELECT path FROM basebackup b WHERE NOT EXISTS
		(SELECT 1 FROM chain l WHERE l.kind = 'basebackup' AND l.table_id = b.table_id AND l.first_lsn = b.lsn) ORDER BY id LIMIT 1`).Scan(&path)
	if err != nil {
		return fmt.Errorf("verify chain: %w", err)
	}
	problem("the hash chain does not cover basebackup %s (added outside lbt)", path)
	return nil
}

// anchorCursor reads chain_anchor in link order beside the links.
type anchorCursor struct {
	rows *sql.Rows
	next *anchor // read, not yet used
}

func newAnchorCursor(ctx context.Context, q chainDB) (*anchorCursor, error) {
	rows, err := q.QueryContext(ctx, `SELECT link, by_seq, txs, tx_sum, blobs, blob_sum, rows, row_sum FROM chain_anchor ORDER BY link, by_seq`)
	if err != nil {
		return nil, fmt.Errorf("verify chain: %w", err)
	}
	return &anchorCursor{rows: rows}, nil
}

// newest returns the sums of link seq's newest anchor, or own without one.
func (a *anchorCursor) newest(seq int64, own linkSums) (linkSums, error) {
	sums := own
	for {
		if a.next == nil {
			if !a.rows.Next() {
				return sums, a.rows.Err()
			}
			var n anchor
			var ts, bs, rs []byte
			if err := a.rows.Scan(&n.link, &n.bySeq, &n.sums.txs, &ts, &n.sums.blobs, &bs, &n.sums.rows, &rs); err != nil {
				return sums, fmt.Errorf("verify chain: %w", err)
			}
			scanSum(&n.sums.txSum, ts)
			scanSum(&n.sums.blobSum, bs)
			scanSum(&n.sums.rowSum, rs)
			a.next = &n
		}
		switch {
		case a.next.link < seq: // of no link: the link's own check fails
			a.next = nil
		case a.next.link == seq:
			sums, a.next = a.next.sums, nil
		default:
			return sums, nil
		}
	}
}

func (a *anchorCursor) close() { a.rows.Close() }

// rowStream reads one class of the rows commit links cover, in LSN order.
type rowStream struct {
	rows   *sql.Rows
	scan   func(*sql.Rows, *streamRow) error
	cur    *streamRow
	buf    streamRow
	gone   bool
	stray  bool // an uncovered row was reported
	sorted bool // hashed in id order within a link (blobs)
}

type streamRow struct {
	lsn uint64
	id  int64
	key string
	enc []byte
}

func (s *rowStream) peek() (*streamRow, error) {
	if s.cur == nil && !s.gone {
		if !s.rows.Next() {
			s.gone = true
			return nil, s.rows.Err()
		}
		if err := s.scan(s.rows, &s.buf); err != nil {
			return nil, fmt.Errorf("verify chain: %w", err)
		}
		s.cur = &s.buf
	}
	return s.cur, nil
}

// take hashes the rows in [first, last], reporting those before first as
// covered by no link.
func (s *rowStream) take(first, last uint64, problem func(string, ...any)) (int64, [32]byte, error) {
	var c classSum
	var held []streamRow
	for {
		row, err := s.peek()
		if err != nil || row == nil || row.lsn > last {
			if s.sorted {
				sort.Slice(held, func(i, j int) bool { return held[i].id < held[j].id })
				for _, h := range held {
					c.add(h.enc)
				}
			}
			n, sum := c.sum()
			return n, sum, err
		}
		switch {
		case row.lsn < first:
			if !s.stray {
				problem("the hash chain does not cover %s (added outside lbt)", row.key)
				s.stray = true
			}
		case s.sorted:
			held = append(held, streamRow{id: row.id, enc: append([]byte(nil), row.enc...)})
		default:
			c.add(row.enc)
		}
		s.cur = nil
	}
}

// rowStreams are the three classes of a commit link's rows.
type rowStreams struct{ txs, blobs, msgs *rowStream }

func newRowStreams(ctx context.Context, q chainDB) (*rowStreams, error) {
	var s rowStreams
	var err error
	open := func(query string, sorted bool, scan func(*sql.Rows, *streamRow) error) *rowStream {
		if err != nil {
			return nil
		}
		var rows *sql.Rows
		rows, err = q.QueryContext(ctx, query)
		return &rowStream{rows: rows, scan: scan, sorted: sorted}
	}
	s.txs = open(`SELECT commit_lsn, end_lsn, xid, commit_time, coalesce(origin, ''), tables FROM tx ORDER BY commit_lsn`, false,
		func(rows *sql.Rows, r *streamRow) error {
			var lsn, end, xid, at int64
			var origin string
			var tables []byte
			if err := rows.Scan(&lsn, &end, &xid, &at, &origin, &tables); err != nil {
				return err
			}
			r.lsn, r.key = uint64(lsn), fmt.Sprintf("the transaction with xid %d at %s", xid, FormatLSN(uint64(lsn)))
			var err error
			r.enc, err = encodeTx(r.enc[:0], uint64(lsn), uint64(end), uint32(xid), at, origin, tables)
			return err
		})
	s.blobs = open(`SELECT id, table_id, segment_id, offset, length, crc, schema, first_lsn, last_lsn, changes, raw_length,
		txs, inserts, updates, deletes, truncates, sha256 FROM blob ORDER BY first_lsn, id`, true,
		func(rows *sql.Rows, r *streamRow) error {
			var b Blob
			var crc, first, last int64
			var sum []byte
			if err := rows.Scan(&b.ID, &b.TableID, &b.SegmentID, &b.Offset, &b.Length, &crc, &b.Schema, &first, &last, &b.Changes, &b.RawLength,
				&b.Txs, &b.Inserts, &b.Updates, &b.Deletes, &b.Truncates, &sum); err != nil {
				return err
			}
			b.CRC, b.FirstLSN, b.LastLSN = uint32(crc), uint64(first), uint64(last)
			copy(b.SHA256[:], sum)
			r.lsn, r.id, r.key = b.FirstLSN, b.ID, fmt.Sprintf("blob %d (first transaction at %s)", b.ID, FormatLSN(b.FirstLSN))
			r.enc = encodeBlob(r.enc[:0], b)
			return nil
		})
	s.msgs = open(`SELECT commit_lsn, seq, prefix, content FROM tx_message ORDER BY commit_lsn, seq`, false,
		func(rows *sql.Rows, r *streamRow) error {
			var lsn, seq int64
			var prefix string
			var content []byte
			if err := rows.Scan(&lsn, &seq, &prefix, &content); err != nil {
				return err
			}
			r.lsn, r.key = uint64(lsn), fmt.Sprintf("message %d of the transaction at %s", seq, FormatLSN(uint64(lsn)))
			r.enc = encodeMessage(r.enc[:0], uint64(lsn), seq, prefix, content)
			return nil
		})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("verify chain: %w", err)
	}
	return &s, nil
}

// take computes a commit link's sums over [first, last].
func (s *rowStreams) take(first, last uint64, problem func(string, ...any)) (linkSums, error) {
	var l linkSums
	var err error
	if l.txs, l.txSum, err = s.txs.take(first, last, problem); err != nil {
		return l, err
	}
	if l.blobs, l.blobSum, err = s.blobs.take(first, last, problem); err != nil {
		return l, err
	}
	l.rows, l.rowSum, err = s.msgs.take(first, last, problem)
	return l, err
}

func (s *rowStreams) close() {
	for _, r := range []*rowStream{s.txs, s.blobs, s.msgs} {
		if r != nil && r.rows != nil {
			r.rows.Close()
		}
	}
}
