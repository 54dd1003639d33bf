package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sort"
	"strings"
)

// The hash chain over the archive's history (docs/FORMAT.md, "Format 4:
// the hash chain"). Each catalog commit that adds transactions or blobs,
// each basebackup and each purge step appends one link to the chain
// table, in the same SQLite transaction as its rows. A link holds, per
// class of rows it covers, their count and the SHA-256 of their canonical
// encodings, and its hash covers those and the previous link's hash. An
// auditor who keeps a link's hash outside the archive can later prove that
// the archive still holds that history unchanged (VerifyChain).
//
// A link names its rows by a rule, not by a list, so that the rows can be
// found again: a commit link covers the transactions and messages whose
// commit LSN, and the blobs whose first LSN, lie in its [first_lsn,
// last_lsn] (ingest adds each commit's transactions after the previous
// commit's, and a blob with the transaction it begins with); a basebackup
// link the basebackup rows of its table and LSN; a purge link the
// purge_log rows and anchors that name it.
//
// Purge removes rows that earlier links cover. It does not touch those
// links (their hashes, which auditors keep, stay valid): it re-anchors
// them, recording in chain_anchor each one's counts and sums over the rows
// that remain, in the purge's own link. A row removed other than by purge
// leaves its link's rows different from both the link's and its newest
// anchor's account: the break that VerifyChain reports.

// Link kinds.
const (
	linkCommit     = "commit"
	linkBasebackup = "basebackup"
	linkPurge      = "purge"
)

// linkSums is what a link (or an anchor) records of its rows, by class:
// transactions, blobs, and the others (messages of a commit; basebackup
// rows; purge records).
type linkSums struct {
	txs, blobs, rows       int64
	txSum, blobSum, rowSum [32]byte // of an empty class: zero
}

// Link is one link of the chain.
type Link struct {
	Seq               int64
	Kind              string
	FirstLSN, LastLSN uint64
	TableID           int64
	Hash              [32]byte
	sums              linkSums
}

// Head is a link as an auditor keeps it: its hash and the newest commit
// LSN that the chain covers up to it.
type Head struct {
	Hash [32]byte
	LSN  uint64
}

func (h Head) String() string { return hex.EncodeToString(h.Hash[:]) + "@" + FormatLSN(h.LSN) }

// ParseHead reads the HASH@LSN form that String writes.
func ParseHead(s string) (Head, error) {
	bad := fmt.Errorf("chain head %q: use the HASH@LSN line that lbt verify --print-head printed", s)
	hs, ls, ok := strings.Cut(strings.TrimSpace(s), "@")
	if !ok || len(hs) != 64 {
		return Head{}, bad
	}
	var h Head
	if _, err := hex.Decode(h.Hash[:], []byte(hs)); err != nil {
		return Head{}, bad
	}
	var hi, lo uint32
	if _, err := fmt.Sscanf(ls, "%X/%X", &hi, &lo); err != nil {
		return Head{}, bad
	}
	h.LSN = uint64(hi)<<32 | uint64(lo)
	return h, nil
}

type chainDB interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// linkHash is the hash of a link that follows prev.
func linkHash(prev [32]byte, l *Link) [32]byte {
	b := make([]byte, 0, 256)
	b = append(b, "lbt chain link 1\x00"...)
	b = append(b, prev[:]...)
	b = binary.AppendUvarint(b, uint64(l.Seq))
	b = appendString(b, l.Kind)
	b = binary.AppendUvarint(b, l.FirstLSN)
	b = binary.AppendUvarint(b, l.LastLSN)
	b = binary.AppendUvarint(b, uint64(l.TableID))
	b = appendSums(b, l.sums)
	return sha256.Sum256(b)
}

func appendSums(b []byte, s linkSums) []byte {
	b = binary.AppendUvarint(b, uint64(s.txs))
	b = append(b, s.txSum[:]...)
	b = binary.AppendUvarint(b, uint64(s.blobs))
	b = append(b, s.blobSum[:]...)
	b = binary.AppendUvarint(b, uint64(s.rows))
	return append(b, s.rowSum[:]...)
}

// genesis is the hash the first link follows: it binds the chain to the
// archive's source and creation (the meta rows a rebuild recovers).
func genesis(ctx context.Context, q chainDB) ([32]byte, error) {
	b := []byte("lbt chain genesis\x00")
	for _, k := range []string{"system_identifier", "database", "created_at"} {
		var v string
		if err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, k).Scan(&v); err != nil {
			return [32]byte{}, fmt.Errorf("chain genesis: meta %s: %w", k, err)
		}
		b = appendString(b, v)
	}
	return sha256.Sum256(b), nil
}

// appendLink computes l's hash after the chain's current head and inserts
// it, giving it the next seq. The caller's transaction holds the write
// lock, so that no other link comes in between.
func appendLink(ctx context.Context, q chainDB, l *Link) error {
	var prev [32]byte
	var seq int64
	var h []byte
	err := q.QueryRowContext(ctx, `SELECT seq, hash FROM chain ORDER BY seq DESC LIMIT 1`).Scan(&seq, &h)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if prev, err = genesis(ctx, q); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("chain head: %w", err)
	default:
		copy(prev[:], h)
	}
	if l.Seq == 0 {
		l.Seq = seq + 1
	}
	l.Hash = linkHash(prev, l)
	s := l.sums
	_, err = q.ExecContext(ctx, `INSERT INTO chain (seq, kind, first_lsn, last_lsn, table_id, txs, tx_sum, blobs, blob_sum, rows, row_sum, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		l.Seq, l.Kind, int64(l.FirstLSN), int64(l.LastLSN), l.TableID,
		s.txs, sumValue(s.txs, s.txSum), s.blobs, sumValue(s.blobs, s.blobSum), s.rows, sumValue(s.rows, s.rowSum), l.Hash[:])
	if err != nil {
		return fmt.Errorf("chain append %s link: %w", l.Kind, err)
	}
	return nil
}

// nextSeq is the seq the next link will get.
func nextSeq(ctx context.Context, q chainDB) (int64, error) {
	var seq int64
	if err := q.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) + 1 FROM chain`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("chain head: %w", err)
	}
	return seq, nil
}

// sumValue stores an empty class's sum as NULL.
func sumValue(n int64, sum [32]byte) any {
	if n == 0 {
		return nil
	}
	return sum[:]
}

func scanSum(dst *[32]byte, b []byte) { copy(dst[:], b) }

// classSum hashes a class's rows, each one's canonical encoding in turn.
type classSum struct {
	h   hash.Hash
	n   int64
	buf []byte
}

func (c *classSum) add(enc []byte) {
	if c.h == nil {
		c.h = sha256.New()
	}
	c.h.Write(enc)
	c.n++
}

func (c *classSum) sum() (int64, [32]byte) {
	var s [32]byte
	if c.n > 0 {
		c.h.Sum(s[:0])
	}
	return c.n, s
}

// The canonical encodings of the rows the chain covers. Everything that
// says what the history is goes in; where the bytes lie (a blob's segment
// and offset, which a purge's rewrite changes) and derived indexes
// (key_run, tx_truncate, tx_range, table_state) do not.

func encodeTx(b []byte, lsn, end uint64, xid uint32, at int64, origin string, tables []byte) ([]byte, error) {
	list, err := ParseTxTables(tables)
	if err != nil {
		return b, fmt.Errorf("transaction at %s: %w", FormatLSN(lsn), err)
	}
	return encodeTxRow(b, lsn, end, xid, at, origin, list), nil
}

// encodeTxRow encodes a transaction; it sorts list.
func encodeTxRow(b []byte, lsn, end uint64, xid uint32, at int64, origin string, list []TxTable) []byte {
	// In table id order, as a rebuilt catalog lists them. Lists are short:
	// an insertion sort, which allocates nothing.
	for i := 1; i < len(list); i++ {
		for j := i; j > 0 && list[j].TableID < list[j-1].TableID; j-- {
			list[j], list[j-1] = list[j-1], list[j]
		}
	}
	b = append(b, 'T')
	b = binary.AppendUvarint(b, lsn)
	b = binary.AppendUvarint(b, end)
	b = binary.AppendUvarint(b, uint64(xid))
	b = binary.AppendVarint(b, at)
	b = appendString(b, origin)
	b = binary.AppendUvarint(b, uint64(len(list)))
	return AppendTxTables(b, list)
}

func encodeBlob(b []byte, bl Blob) []byte {
	b = append(b, 'B')
	for _, v := range []int64{bl.ID, bl.TableID, bl.Length, int64(bl.CRC), int64(bl.Schema), int64(bl.FirstLSN), int64(bl.LastLSN),
		int64(bl.Changes), int64(bl.RawLength), int64(bl.Txs), bl.Inserts, bl.Updates, bl.Deletes, bl.Truncates} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	return append(b, bl.SHA256[:]...)
}

func encodeMessage(b []byte, lsn uint64, seq int64, prefix string, content []byte) []byte {
	b = append(b, 'M')
	b = binary.AppendUvarint(b, lsn)
	b = binary.AppendUvarint(b, uint64(seq))
	b = appendString(b, prefix)
	return appendString(b, string(content))
}

// commitSums computes a commit link's sums from the rows in its range.
func commitSums(ctx context.Context, q chainDB, first, last uint64) (linkSums, error) {
	var s linkSums
	var tx, bl, msg classSum
	rows, err := q.QueryContext(ctx, `SELECT commit_lsn, end_lsn, xid, commit_time, coalesce(origin, ''), tables FROM tx
		WHERE commit_lsn BETWEEN ? AND ? ORDER BY commit_lsn`, int64(first), int64(last))
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var lsn, end, xid, at int64
		var origin string
		var tables []byte
		if err := rows.Scan(&lsn, &end, &xid, &at, &origin, &tables); err != nil {
			rows.Close()
			return s, err
		}
		if tx.buf, err = encodeTx(tx.buf[:0], uint64(lsn), uint64(end), uint32(xid), at, origin, tables); err != nil {
			rows.Close()
			return s, err
		}
		tx.add(tx.buf)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, err
	}
	blobs, err := chainBlobs(ctx, q, `first_lsn BETWEEN ? AND ?`, int64(first), int64(last))
	if err != nil {
		return s, err
	}
	for _, b := range blobs {
		bl.buf = encodeBlob(bl.buf[:0], b)
		bl.add(bl.buf)
	}
	rows, err = q.QueryContext(ctx, `SELECT commit_lsn, seq, prefix, content FROM tx_message
		WHERE commit_lsn BETWEEN ? AND ? ORDER BY commit_lsn, seq`, int64(first), int64(last))
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var lsn, seq int64
		var prefix string
		var content []byte
		if err := rows.Scan(&lsn, &seq, &prefix, &content); err != nil {
			rows.Close()
			return s, err
		}
		msg.buf = encodeMessage(msg.buf[:0], uint64(lsn), seq, prefix, content)
		msg.add(msg.buf)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, err
	}
	s.txs, s.txSum = tx.sum()
	s.blobs, s.blobSum = bl.sum()
	s.rows, s.rowSum = msg.sum()
	return s, nil
}

// chainBlobs reads the blob rows that where selects, in id order.
func chainBlobs(ctx context.Context, q chainDB, where string, args ...any) ([]Blob, error) {
	return queryRows(ctx, q, "blobs", func(row scanner) (Blob, error) {
		var b Blob
		var crc, first, last int64
		var sum []byte
		err := row.Scan(&b.ID, &b.TableID, &b.SegmentID, &b.Offset, &b.Length, &crc, &b.Schema, &first, &last, &b.Changes, &b.RawLength,
			&b.Txs, &b.Inserts, &b.Updates, &b.Deletes, &b.Truncates, &sum)
		b.CRC, b.FirstLSN, b.LastLSN = uint32(crc), uint64(first), uint64(last)
		copy(b.SHA256[:], sum)
		return b, err
	}, `SELECT id, table_id, segment_id, offset, length, crc, schema, first_lsn, last_lsn, changes, raw_length,
		txs, inserts, updates, deletes, truncates, sha256 FROM blob WHERE `+where+` ORDER BY id`, args...)
}

// basebackupSums computes a basebackup link's sums: every basebackup row
// of the table at the LSN (one, or the chunks of one).
func basebackupSums(ctx context.Context, q chainDB, tableID int64, lsn uint64) (linkSums, error) {
	var s linkSums
	var c classSum
	rows, err := q.QueryContext(ctx, `SELECT table_id, lsn, path, rows, bytes, raw_bytes, crc, definition, sequences, reason, started_at, finished_at, chunks
		FROM basebackup WHERE table_id = ? AND lsn = ? ORDER BY path`, tableID, int64(lsn))
	if err != nil {
		return s, err
	}
	defer rows.Close()
	for rows.Next() {
		var table, l, n, size, raw, crc, started, finished int64
		var path, def, seqs, reason, chunks string
		if err := rows.Scan(&table, &l, &path, &n, &size, &raw, &crc, &def, &seqs, &reason, &started, &finished, &chunks); err != nil {
			return s, err
		}
		b := append(c.buf[:0], 'F')
		for _, v := range []int64{table, l, n, size, raw, crc} {
			b = binary.AppendUvarint(b, uint64(v))
		}
		for _, v := range []string{path, def, seqs, reason, chunks} {
			b = appendString(b, v)
		}
		b = binary.AppendVarint(b, started)
		b = binary.AppendVarint(b, finished)
		c.buf = b
		c.add(b)
	}
	if err := rows.Err(); err != nil {
		return s, err
	}
	s.rows, s.rowSum = c.sum()
	return s, nil
}

// purgeSums computes a purge link's sums: its purge_log rows and anchors.
func purgeSums(ctx context.Context, q chainDB, seq int64) (linkSums, error) {
	var s linkSums
	var c classSum
	rows, err := q.QueryContext(ctx, `SELECT id, at, table_id, before_lsn, blobs, txs, bytes FROM purge_log WHERE link = ? ORDER BY id`, seq)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var v [7]int64
		if err := rows.Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6]); err != nil {
			rows.Close()
			return s, err
		}
		b := append(c.buf[:0], 'P')
		for _, x := range v {
			b = binary.AppendVarint(b, x)
		}
		c.buf = b
		c.add(b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, err
	}
	anchors, err := readAnchors(ctx, q, `by_seq = ?`, seq)
	if err != nil {
		return s, err
	}
	for _, a := range anchors {
		b := append(c.buf[:0], 'A')
		b = binary.AppendUvarint(b, uint64(a.link))
		c.buf = appendSums(b, a.sums)
		c.add(c.buf)
	}
	s.rows, s.rowSum = c.sum()
	return s, nil
}

type anchor struct {
	link, bySeq int64
	sums        linkSums
}

func readAnchors(ctx context.Context, q chainDB, where string, args ...any) ([]anchor, error) {
	return queryRows(ctx, q, "chain anchors", func(row scanner) (anchor, error) {
		var a anchor
		var ts, bs, rs []byte
		err := row.Scan(&a.link, &a.bySeq, &a.sums.txs, &ts, &a.sums.blobs, &bs, &a.sums.rows, &rs)
		scanSum(&a.sums.txSum, ts)
		scanSum(&a.sums.blobSum, bs)
		scanSum(&a.sums.rowSum, rs)
		return a, err
	}, `SELECT link, by_seq, txs, tx_sum, blobs, blob_sum, rows, row_sum FROM chain_anchor WHERE `+where+` ORDER BY link, by_seq`, args...)
}

// linkSumsNow computes what l's rows are now.
func linkSumsNow(ctx context.Context, q chainDB, l *Link) (linkSums, error) {
	switch l.Kind {
	case linkCommit:
		return commitSums(ctx, q, l.FirstLSN, l.LastLSN)
	case linkBasebackup:
		return basebackupSums(ctx, q, l.TableID, l.FirstLSN)
	case linkPurge:
		return purgeSums(ctx, q, l.Seq)
	}
	return linkSums{}, fmt.Errorf("chain link %d: unknown kind %q", l.Seq, l.Kind)
}

// appendCommitLink appends the link of a catalog commit whose transactions
// and blobs lie in [first, last].
func appendCommitLink(ctx context.Context, q chainDB, first, last uint64) error {
	s, err := commitSums(ctx, q, first, last)
	if err != nil {
		return fmt.Errorf("chain commit link: %w", err)
	}
	return appendLink(ctx, q, &Link{Kind: linkCommit, FirstLSN: first, LastLSN: last, sums: s})
}

// appendBasebackupLink appends the link of a basebackup's catalog row(s).
func appendBasebackupLink(ctx context.Context, q chainDB, tableID int64, lsn uint64) error {
	s, err := basebackupSums(ctx, q, tableID, lsn)
	if err != nil {
		return fmt.Errorf("chain basebackup link: %w", err)
	}
	return appendLink(ctx, q, &Link{Kind: linkBasebackup, FirstLSN: lsn, LastLSN: lsn, TableID: tableID, sums: s})
}

// reanchor records, in the purge link it appends, what the rows of the
// links in affected are after a purge removed some; purge_log rows already
// inserted with link = the returned seq are covered too. Call it in the
// transaction that removed the rows.
func reanchor(ctx context.Context, q chainDB, tableID int64, before uint64, affected map[int64]bool, seq int64) error {
	links := make([]int64, 0, len(affected))
	for s := range affected {
		links = append(links, s)
	}
	sort.Slice(links, func(i, j int) bool { return links[i] < links[j] })
	for _, s := range links {
		l, err := readLink(ctx, q, s)
		if err != nil {
			return err
		}
		sums, err := linkSumsNow(ctx, q, &l)
		if err != nil {
			return fmt.Errorf("chain re-anchor link %d: %w", s, err)
		}
		_, err = q.ExecContext(ctx, `INSERT INTO chain_anchor (link, by_seq, txs, tx_sum, blobs, blob_sum, rows, row_sum) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			s, seq, sums.txs, sumValue(sums.txs, sums.txSum), sums.blobs, sumValue(sums.blobs, sums.blobSum), sums.rows, sumValue(sums.rows, sums.rowSum))
		if err != nil {
			return fmt.Errorf("chain re-anchor link %d: %w", s, err)
		}
	}
	l := &Link{Seq: seq, Kind: linkPurge, FirstLSN: before, LastLSN: before, TableID: tableID}
	s, err := purgeSums(ctx, q, seq)
	if err != nil {
		return fmt.Errorf("chain purge link: %w", err)
	}
	l.sums = s
	return appendLink(ctx, q, l)
}

const linkColumns = `seq, kind, first_lsn, last_lsn, table_id, txs, tx_sum, blobs, blob_sum, rows, row_sum, hash`

func scanLink(s scanner) (Link, error) {
	var l Link
	var first, last int64
	var ts, bs, rs, h []byte
	err := s.Scan(&l.Seq, &l.Kind, &first, &last, &l.TableID, &l.sums.txs, &ts, &l.sums.blobs, &bs, &l.sums.rows, &rs, &h)
	l.FirstLSN, l.LastLSN = uint64(first), uint64(last)
	scanSum(&l.sums.txSum, ts)
	scanSum(&l.sums.blobSum, bs)
	scanSum(&l.sums.rowSum, rs)
	copy(l.Hash[:], h)
	return l, err
}

func readLink(ctx context.Context, q chainDB, seq int64) (Link, error) {
	l, err := scanLink(q.QueryRowContext(ctx, `SELECT `+linkColumns+` FROM chain WHERE seq = ?`, seq))
	if err != nil {
		return l, fmt.Errorf("chain link %d: %w", seq, err)
	}
	return l, nil
}

// commitLinkAt returns the seq of the commit link whose range holds lsn.
func commitLinkAt(ctx context.Context, q chainDB, lsn uint64) (int64, bool, error) {
	var seq, last int64
	err := q.QueryRowContext(ctx, `SELECT seq, last_lsn FROM chain WHERE kind = 'commit' AND first_lsn <= ? ORDER BY first_lsn DESC LIMIT 1`,
		int64(lsn)).Scan(&seq, &last)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && uint64(last) < lsn) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("chain link at %s: %w", FormatLSN(lsn), err)
	}
	return seq, true, nil
}

// equalSums reports whether two accounts of rows agree.
func equalSums(a, b linkSums) bool {
	return a.txs == b.txs && a.blobs == b.blobs && a.rows == b.rows &&
		bytes.Equal(a.txSum[:], b.txSum[:]) && bytes.Equal(a.blobSum[:], b.blobSum[:]) && bytes.Equal(a.rowSum[:], b.rowSum[:])
}

// rechain builds the chain of a catalog rebuilt from the files, over its
// rows: a commit link per tx_range row (each a catalog commit of the lost
// catalog), reaching back to the one before so that every blob is
// covered, and a basebackup link per basebackup, after the commit links
// below its LSN. The order in which the lost catalog registered
// basebackups, and its purges, are not in the files: the rebuilt chain is
// a new one (docs/FORMAT.md says what an auditor's heads then prove).
func rechain(ctx context.Context, q chainDB) error {
	type pending struct {
		first, last uint64
		base        bool
		table       int64
	}
	var ranges []pending
	rows, err := q.QueryContext(ctx, `SELECT first_lsn, last_lsn FROM tx_range ORDER BY first_lsn`)
	if err != nil {
		return fmt.Errorf("chain rebuild: %w", err)
	}
	next := uint64(0)
	for rows.Next() {
		var first, last int64
		if err := rows.Scan(&first, &last); err != nil {
			rows.Close()
			return fmt.Errorf("chain rebuild: %w", err)
		}
		ranges = append(ranges, pending{first: next, last: uint64(last)})
		next = uint64(last) + 1
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("chain rebuild: %w", err)
	}
	var maxFirst sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(first_lsn) FROM blob`).Scan(&maxFirst); err != nil {
		return fmt.Errorf("chain rebuild: %w", err)
	}
	if maxFirst.Valid && uint64(maxFirst.Int64) >= next {
		ranges = append(ranges, pending{first: next, last: uint64(maxFirst.Int64)})
	}
	var bases []pending
	rows, err = q.QueryContext(ctx, `SELECT DISTINCT table_id, lsn FROM basebackup ORDER BY lsn, table_id`)
	if err != nil {
		return fmt.Errorf("chain rebuild: %w", err)
	}
	for rows.Next() {
		var table, lsn int64
		if err := rows.Scan(&table, &lsn); err != nil {
			rows.Close()
			return fmt.Errorf("chain rebuild: %w", err)
		}
		bases = append(bases, pending{first: uint64(lsn), last: uint64(lsn), base: true, table: table})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("chain rebuild: %w", err)
	}
	for len(ranges) > 0 || len(bases) > 0 {
		var err error
		if len(bases) > 0 && (len(ranges) == 0 || ranges[0].last >= bases[0].first) {
			err = appendBasebackupLink(ctx, q, bases[0].table, bases[0].first)
			bases = bases[1:]
		} else {
			err = appendCommitLink(ctx, q, ranges[0].first, ranges[0].last)
			ranges = ranges[1:]
		}
		if err != nil {
			return fmt.Errorf("chain rebuild: %w", err)
		}
	}
	return nil
}

// ErrChainBroken reports rows that are not what the hash chain recorded.
var ErrChainBroken = errors.New("the hash chain breaks")

// checkLinks refuses to go on when the rows of a link in affected are not
// what the chain (or the newest anchor) recorded.
func checkLinks(ctx context.Context, q chainDB, affected map[int64]bool) error {
	for seq := range affected {
		l, err := readLink(ctx, q, seq)
		if err != nil {
			return err
		}
		want := l.sums
		anchors, err := readAnchors(ctx, q, `link = ?`, seq)
		if err != nil {
			return err
		}
		if len(anchors) > 0 {
			want = anchors[len(anchors)-1].sums
		}
		got, err := linkSumsNow(ctx, q, &l)
		if err != nil {
			return err
		}
		if !equalSums(got, want) {
			return fmt.Errorf("%w at link %d (%s): its rows changed outside lbt; purge does not re-anchor them: run lbt verify", ErrChainBroken, seq, describeLink(&l))
		}
	}
	return nil
}

// describeLink names what a link covers.
func describeLink(l *Link) string {
	switch l.Kind {
	case linkCommit:
		return fmt.Sprintf("the catalog commit of transactions %s to %s", FormatLSN(l.FirstLSN), FormatLSN(l.LastLSN))
	case linkBasebackup:
		return fmt.Sprintf("the basebackup of table %d at %s", l.TableID, FormatLSN(l.FirstLSN))
	case linkPurge:
		return fmt.Sprintf("a purge of table %d before %s", l.TableID, FormatLSN(l.FirstLSN))
	}
	return l.Kind
}

// commitChain hashes the rows of an ingest commit as the Writer adds them,
// so that its link costs no second reading of them. Rows not added in the
// canonical order (never, from ingest) are read back at the commit instead.
type commitChain struct {
	txs, msgs   classSum
	blobs       []encodedBlob
	first, last uint64 // of the commit link's range, with any
	any         bool
	unordered   bool
	lastTx      uint64
	lastMsg     uint64
	lastSeq     int
	tables      []TxTable // reused to sort a transaction's tables
}

type encodedBlob struct {
	id  int64
	enc []byte
}

func (c *commitChain) cover(lsn uint64) {
	if !c.any {
		c.first, c.last, c.any = lsn, lsn, true
	}
	c.first, c.last = min(c.first, lsn), max(c.last, lsn)
}

func (c *commitChain) addTx(t Tx, us int64) {
	if c.txs.n > 0 && t.CommitLSN <= c.lastTx {
		c.unordered = true
	}
	c.lastTx = t.CommitLSN
	c.cover(t.CommitLSN)
	c.tables = append(c.tables[:0], t.Tables...)
	c.txs.buf = encodeTxRow(c.txs.buf[:0], t.CommitLSN, t.EndLSN, t.Xid, us, t.Origin, c.tables)
	c.txs.add(c.txs.buf)
}

func (c *commitChain) addBlob(b Blob) {
	c.cover(b.FirstLSN)
	c.blobs = append(c.blobs, encodedBlob{b.ID, encodeBlob(nil, b)})
}

func (c *commitChain) addMessage(lsn uint64, seq int, prefix string, content []byte) {
	if c.msgs.n > 0 && (lsn < c.lastMsg || lsn == c.lastMsg && seq <= c.lastSeq) {
		c.unordered = true
	}
	c.lastMsg, c.lastSeq = lsn, seq
	c.cover(lsn)
	c.msgs.buf = encodeMessage(c.msgs.buf[:0], lsn, int64(seq), prefix, content)
	c.msgs.add(c.msgs.buf)
}

// appendLink appends the commit's link, after its rows are inserted in q.
func (c *commitChain) appendLink(ctx context.Context, q chainDB) error {
	if !c.any {
		return nil
	}
	if c.unordered {
		return appendCommitLink(ctx, q, c.first, c.last)
	}
	sort.Slice(c.blobs, func(i, j int) bool { return c.blobs[i].id < c.blobs[j].id })
	var bl classSum
	for _, b := range c.blobs {
		bl.add(b.enc)
	}
	var s linkSums
	s.txs, s.txSum = c.txs.sum()
	s.blobs, s.blobSum = bl.sum()
	s.rows, s.rowSum = c.msgs.sum()
	return appendLink(ctx, q, &Link{Kind: linkCommit, FirstLSN: c.first, LastLSN: c.last, sums: s})
}

func (c *commitChain) reset() {
	tables := c.tables[:0]
	*c = commitChain{tables: tables}
}
