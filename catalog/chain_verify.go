package catalog

import (
	"context"
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
func (c *Catalog) verifyChain(ctx context.Context, want *Head) (ChainReport, []string, error) {
	var r ChainReport
	var problems []string
	problem := func(format string, args ...any) {
		if len(problems) < maxChainProblems {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	// One read transaction: the daemon may commit while verify runs, and a
	// commit's rows and its link must be seen together or not at all.
	q, err := c.db.Conn(ctx)
	if err != nil {
		return r, nil, fmt.Errorf("verify chain: %w", err)
	}
	defer q.Close()
	if _, err := q.ExecContext(ctx, "BEGIN"); err != nil {
		return r, nil, fmt.Errorf("verify chain: %w", err)
	}
	defer q.ExecContext(context.Background(), "ROLLBACK")
	rows, err := q.QueryContext(ctx, `SELECT `+linkColumns+` FROM chain ORDER BY seq`)
	if err != nil {
		return r, nil, fmt.Errorf("verify chain: %w", err)
	}
	var links []Link
	for rows.Next() {
		l, err := scanLink(rows)
		if err != nil {
			rows.Close()
			return r, nil, fmt.Errorf("verify chain: %w", err)
		}
		links = append(links, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return r, nil, fmt.Errorf("verify chain: %w", err)
	}
	r.Links = len(links)
	g, err := genesis(ctx, q)
	if err != nil {
		return r, nil, err
	}

	// The hashes. true follows the recomputed chain (what an auditor's
	// heads are links of); stored follows the stored hashes, so that one
	// changed link is reported once, where it is.
	trueHash, storedPrev := g, g
	var headLSN uint64
	var headSeq int64
	broken := false
	for i := range links {
		l := &links[i]
		if l.Seq != int64(i+1) {
			problem("the hash chain breaks at link %d: link %d is missing (the chain's own rows were changed)", l.Seq, int64(i+1))
			broken = true
		}
		if l.Kind == linkCommit {
			headLSN = max(headLSN, l.LastLSN)
		}
		if h := linkHash(storedPrev, l); h != l.Hash {
			problem("the hash chain breaks at link %d (%s): its hash is not that of its content and the link before (the chain's own rows were changed)", l.Seq, describeLink(l))
			broken = true
		}
		trueHash = linkHash(trueHash, l)
		storedPrev = l.Hash
		if want != nil && trueHash == want.Hash && !broken {
			if want.LSN == headLSN {
				r.HeadFound, headSeq = true, l.Seq
			} else {
				problem("head %s: the chain's link with that hash (link %d) is at %s, not %s", want, l.Seq, FormatLSN(headLSN), FormatLSN(want.LSN))
			}
		}
	}
	if len(links) > 0 {
		r.Head = Head{Hash: trueHash, LSN: headLSN}
	}

	// The rows.
	anchors, err := readAnchors(ctx, q, `1`)
	if err != nil {
		return r, nil, fmt.Errorf("verify chain: %w", err)
	}
	newest := map[int64]linkSums{}
	for _, a := range anchors { // in link, by_seq order: the last one wins
		newest[a.link] = a.sums
	}
	var covered linkSums
	var bases, firstBreak int64
	for i := range links {
		if err := ctx.Err(); err != nil {
			return r, nil, err
		}
		l := &links[i]
		got, err := linkSumsNow(ctx, q, l)
		if err != nil {
			return r, nil, fmt.Errorf("verify chain link %d: %w", l.Seq, err)
		}
		switch l.Kind {
		case linkCommit:
			covered.txs += got.txs
			covered.blobs += got.blobs
			covered.rows += got.rows
		case linkBasebackup:
			bases += got.rows
		}
		wantSums, ok := newest[l.Seq]
		if !ok {
			wantSums = l.sums
		}
		if !equalSums(got, wantSums) {
			what, err := describeBreak(ctx, q, l, got, wantSums)
			if err != nil {
				return r, nil, err
			}
			problem("the hash chain breaks at link %d (%s): %s", l.Seq, describeLink(l), what)
			if firstBreak == 0 {
				firstBreak = l.Seq
			}
		}
	}
	more, err := uncoveredRows(ctx, q, links, covered, bases)
	if err != nil {
		return r, nil, err
	}
	for _, m := range more {
		problem("%s", m)
	}
	if r.HeadFound && firstBreak > 0 && firstBreak <= headSeq {
		r.HeadFound = false
		problem("head %s covers link %d, whose history was changed", want, firstBreak)
	} else if want != nil && !r.HeadFound {
		problem("head %s is not a link of this archive's hash chain: the history it covered was changed, or the head is another archive's", want)
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

// uncoveredRows names rows that no link covers: added outside lbt. The
// counts tell whether there are any; only then are the rows scanned.
func uncoveredRows(ctx context.Context, q chainDB, links []Link, covered linkSums, bases int64) ([]string, error) {
	var txs, blobs, msgs, nbases int64
	err := q.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM tx), (SELECT count(*) FROM blob), (SELECT count(*) FROM tx_message), (SELECT count(*) FROM basebackup)`).
		Scan(&txs, &blobs, &msgs, &nbases)
	if err != nil {
		return nil, fmt.Errorf("verify chain: %w", err)
	}
	var out []string
	type span struct{ first, last uint64 }
	var spans []span
	for _, l := range links {
		if l.Kind == linkCommit {
			spans = append(spans, span{l.FirstLSN, l.LastLSN})
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].first < spans[j].first })
	in := func(lsn uint64) bool {
		i := sort.Search(len(spans), func(i int) bool { return spans[i].last >= lsn })
		return i < len(spans) && spans[i].first <= lsn
	}
	find := func(query, what string) error {
		rows, err := q.QueryContext(ctx, query)
		if err != nil {
			return fmt.Errorf("verify chain: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id, lsn int64
			if err := rows.Scan(&id, &lsn); err != nil {
				return fmt.Errorf("verify chain: %w", err)
			}
			if !in(uint64(lsn)) {
				out = append(out, fmt.Sprintf("the hash chain does not cover %s", fmt.Sprintf(what, id, FormatLSN(uint64(lsn)))))
				return nil
			}
		}
		return rows.Err()
	}
	if txs > covered.txs {
		if err := find(`SELECT xid, commit_lsn FROM tx ORDER BY commit_lsn`, "the transaction with xid %d at %s (added outside lbt)"); err != nil {
			return nil, err
		}
	}
	if blobs > covered.blobs {
		if err := find(`SELECT id, first_lsn FROM blob ORDER BY id`, "blob %d (first transaction at %s, added outside lbt)"); err != nil {
			return nil, err
		}
	}
	if msgs > covered.rows {
		if err := find(`SELECT seq, commit_lsn FROM tx_message ORDER BY commit_lsn, seq`, "message %d of the transaction at %s (added outside lbt)"); err != nil {
			return nil, err
		}
	}
	if nbases > bases {
		var path string
		err := q.QueryRowContext(ctx, `SELECT path FROM basebackup b WHERE NOT EXISTS
			(SELECT 1 FROM chain l WHERE l.kind = 'basebackup' AND l.table_id = b.table_id AND l.first_lsn = b.lsn) ORDER BY id LIMIT 1`).Scan(&path)
		if err != nil {
			return nil, fmt.Errorf("verify chain: %w", err)
		}
		out = append(out, fmt.Sprintf("the hash chain does not cover basebackup %s (added outside lbt)", path))
	}
	return out, nil
}
