package catalog

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

// AppendTxTables appends the encoding of tx.tables: for each table, five
// uvarints: table id, inserts, updates, deletes, truncates.
func AppendTxTables(dst []byte, tables []TxTable) []byte {
	for _, t := range tables {
		dst = binary.AppendUvarint(dst, uint64(t.TableID))
		dst = binary.AppendUvarint(dst, uint64(t.Inserts))
		dst = binary.AppendUvarint(dst, uint64(t.Updates))
		dst = binary.AppendUvarint(dst, uint64(t.Deletes))
		dst = binary.AppendUvarint(dst, uint64(t.Truncates))
	}
	return dst
}

// ParseTxTables decodes tx.tables.
func ParseTxTables(b []byte) ([]TxTable, error) {
	var out []TxTable
	for len(b) > 0 {
		var v [5]uint64
		for i := range v {
			x, n := binary.Uvarint(b)
			if n <= 0 {
				return nil, fmt.Errorf("%w: transaction tables list", ErrCorrupt)
			}
			v[i], b = x, b[n:]
		}
		out = append(out, TxTable{TableID: int64(v[0]),
			Counts: Counts{Inserts: int64(v[1]), Updates: int64(v[2]), Deletes: int64(v[3]), Truncates: int64(v[4])}})
	}
	return out, nil
}

// countsOf returns what a tx.tables value says of one table; ok is false
// when the transaction did not change it.
func countsOf(b []byte, tableID int64) (c Counts, ok bool, err error) {
	tables, err := ParseTxTables(b)
	if err != nil {
		return c, false, err
	}
	for _, t := range tables {
		if t.TableID == tableID {
			return t.Counts, true, nil
		}
	}
	return c, false, nil
}

// TableTx is one transaction's changes to one table.
type TableTx struct {
	CommitLSN  uint64
	Xid        uint32
	CommitTime time.Time
	Counts
}

// EachTableTx calls fn for each archived transaction with lo <= commit LSN
// <= hi that changed the table, in commit order.
func (c *Catalog) EachTableTx(ctx context.Context, tableID int64, lo, hi uint64, fn func(TableTx) error) error {
	return eachTableTx(ctx, c.db, tableID, lo, hi, fn)
}

func eachTableTx(ctx context.Context, q querier, tableID int64, lo, hi uint64, fn func(TableTx) error) error {
	rows, err := q.QueryContext(ctx, `SELECT commit_lsn, xid, commit_time, tables FROM tx WHERE commit_lsn >= ? AND commit_lsn <= ? ORDER BY commit_lsn`,
		clampLSN(lo), clampLSN(hi))
	if err != nil {
		return fmt.Errorf("catalog transactions of table %d: %w", tableID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var lsn, xid, us int64
		var tables []byte
		if err := rows.Scan(&lsn, &xid, &us, &tables); err != nil {
			return fmt.Errorf("catalog transactions of table %d: %w", tableID, err)
		}
		counts, ok, err := countsOf(tables, tableID)
		if err != nil {
			return fmt.Errorf("catalog transaction at %s: %w", FormatLSN(uint64(lsn)), err)
		}
		if !ok {
			continue
		}
		if err := fn(TableTx{CommitLSN: uint64(lsn), Xid: uint32(xid), CommitTime: FromMicros(us), Counts: counts}); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog transactions of table %d: %w", tableID, err)
	}
	return nil
}

// errStop ends an iteration early.
var errStop = errors.New("stop")

// HasTableTx reports whether the table has an archived transaction with
// lo <= commit LSN <= hi.
func (c *Catalog) HasTableTx(ctx context.Context, tableID int64, lo, hi uint64) (bool, error) {
	found := false
	err := c.EachTableTx(ctx, tableID, lo, hi, func(TableTx) error {
		found = true
		return errStop
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, err
}

// TxTables returns what one transaction did to each table; ok is false when
// the archive does not hold the transaction.
func (c *Catalog) TxTables(ctx context.Context, commitLSN uint64) (tables []TxTable, ok bool, err error) {
	t, ok, err := c.TxAt(ctx, commitLSN)
	return t.Tables, ok, err
}

// TableTruncates returns the commit LSNs of the table's transactions with
// lo <= commit LSN <= hi that truncated it.
func (c *Catalog) TableTruncates(ctx context.Context, tableID int64, lo, hi uint64) ([]uint64, error) {
	return queryRows(ctx, c.db, fmt.Sprintf("truncates of table %d", tableID), func(row scanner) (uint64, error) {
		var lsn int64
		err := row.Scan(&lsn)
		return uint64(lsn), err
	}, `SELECT commit_lsn FROM tx_truncate WHERE table_id = ? AND commit_lsn >= ? AND commit_lsn <= ? ORDER BY commit_lsn`,
		tableID, clampLSN(lo), clampLSN(hi))
}

// LastCommitBefore returns the greatest commit LSN of the archived
// transactions that committed at or before t; ok is false when there is
// none. A restore to t applies that transaction and none after it.
//
// The newest tx_range that holds a transaction at or before t holds the
// answer: the ranges after it hold none. Scanning back from the newest
// range finds it at once for recent times.
func (c *Catalog) LastCommitBefore(ctx context.Context, t time.Time) (lsn uint64, ok bool, err error) {
	us := Micros(t)
	var first, last int64
	err = c.db.QueryRowContext(ctx, `SELECT first_lsn, last_lsn FROM tx_range WHERE min_time <= ? ORDER BY first_lsn DESC LIMIT 1`, us).Scan(&first, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err == nil {
		var v sql.NullInt64
		err = c.db.QueryRowContext(ctx, `SELECT max(commit_lsn) FROM tx WHERE commit_lsn >= ? AND commit_lsn <= ? AND commit_time <= ?`, first, last, us).Scan(&v)
		if err == nil && v.Valid {
			return uint64(v.Int64), true, nil
		}
		if err == nil {
			// The transaction was purged; the range still bounds it.
			err = c.db.QueryRowContext(ctx, `SELECT coalesce(max(commit_lsn), 0) FROM tx WHERE commit_lsn <= ? AND commit_time <= ?`, last, us).Scan(&v)
			if err == nil {
				return uint64(v.Int64), v.Int64 > 0, nil
			}
		}
	}
	return 0, false, fmt.Errorf("catalog last commit before %s: %w", t.Format(time.RFC3339), err)
}

// TxWindow returns commit LSN bounds lo <= hi that include every archived
// transaction with since <= commit time < until; a zero time is open. ok
// is false when no transaction can be in the window. Callers still filter
// by commit time: the bounds may include transactions outside it.
func (c *Catalog) TxWindow(ctx context.Context, since, until time.Time) (lo, hi uint64, ok bool, err error) {
	var l, h sql.NullInt64
	if since.IsZero() {
		err = c.db.QueryRowContext(ctx, `SELECT min(first_lsn) FROM tx_range`).Scan(&l)
	} else {
		err = c.db.QueryRowContext(ctx, `SELECT min(first_lsn) FROM tx_range WHERE max_time >= ?`, Micros(since)).Scan(&l)
	}
	if err == nil {
		if until.IsZero() {
			err = c.db.QueryRowContext(ctx, `SELECT max(last_lsn) FROM tx_range`).Scan(&h)
		} else {
			err = c.db.QueryRowContext(ctx, `SELECT last_lsn FROM tx_range WHERE min_time < ? ORDER BY first_lsn DESC LIMIT 1`, Micros(until)).Scan(&h)
			if errors.Is(err, sql.ErrNoRows) {
				err = nil
			}
		}
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("catalog transactions between %s and %s: %w", since.Format(time.RFC3339), until.Format(time.RFC3339), err)
	}
	if !l.Valid || !h.Valid || l.Int64 > h.Int64 {
		return 0, 0, false, nil
	}
	return uint64(l.Int64), uint64(h.Int64), true, nil
}

// TxsByXid returns the archived transactions with the xid, in commit
// order: more than one when the xid counter wrapped around. The tx_range
// rows whose xid range holds it say where to look.
func (c *Catalog) TxsByXid(ctx context.Context, xid uint32) ([]Tx, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT first_lsn, last_lsn FROM tx_range WHERE min_xid <= ?1 AND max_xid >= ?1 ORDER BY first_lsn`, int64(xid))
	if err != nil {
		return nil, fmt.Errorf("catalog transaction %d: %w", xid, err)
	}
	var ranges [][2]int64
	for rows.Next() {
		var r [2]int64
		if err := rows.Scan(&r[0], &r[1]); err != nil {
			rows.Close()
			return nil, fmt.Errorf("catalog transaction %d: %w", xid, err)
		}
		ranges = append(ranges, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog transaction %d: %w", xid, err)
	}
	var out []Tx
	for _, r := range ranges {
		txs, err := c.txsWhere(ctx, `commit_lsn >= ? AND commit_lsn <= ? AND xid = ? ORDER BY commit_lsn`, r[0], r[1], int64(xid))
		if err != nil {
			return nil, err
		}
		out = append(out, txs...)
	}
	return out, nil
}

// TxByXid returns the newest archived transaction with the xid; ok is false
// when there is none.
func (c *Catalog) TxByXid(ctx context.Context, xid uint32) (t Tx, ok bool, err error) {
	txs, err := c.TxsByXid(ctx, xid)
	if err != nil || len(txs) == 0 {
		return t, false, err
	}
	return txs[len(txs)-1], true, nil
}

// TxAt returns the archived transaction with the commit LSN.
func (c *Catalog) TxAt(ctx context.Context, commitLSN uint64) (Tx, bool, error) {
	txs, err := c.txsWhere(ctx, `commit_lsn = ?`, int64(commitLSN))
	if err != nil || len(txs) == 0 {
		return Tx{}, false, err
	}
	return txs[0], true, nil
}

func (c *Catalog) txsWhere(ctx context.Context, where string, args ...any) ([]Tx, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT commit_lsn, end_lsn, xid, commit_time, origin, tables FROM tx WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("catalog transactions: %w", err)
	}
	defer rows.Close()
	var out []Tx
	for rows.Next() {
		var lsn, end, xid, us int64
		var origin sql.NullString
		var tables []byte
		if err := rows.Scan(&lsn, &end, &xid, &us, &origin, &tables); err != nil {
			return nil, fmt.Errorf("catalog transactions: %w", err)
		}
		t := Tx{CommitLSN: uint64(lsn), EndLSN: uint64(end), Xid: uint32(xid), CommitTime: FromMicros(us), Origin: origin.String}
		if t.Tables, err = ParseTxTables(tables); err != nil {
			return nil, fmt.Errorf("catalog transaction at %s: %w", FormatLSN(t.CommitLSN), err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog transactions: %w", err)
	}
	return out, nil
}

// clampLSN converts an LSN bound for SQLite, whose integers are signed.
func clampLSN(lsn uint64) int64 {
	if lsn > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(lsn)
}

// FormatLSN writes an LSN as PostgreSQL does: 0/16B3748.
func FormatLSN(lsn uint64) string { return pglogrepl.LSN(lsn).String() }

// ParseLSN reads an LSN written as PostgreSQL writes it, 0/16B3748:
// pglogrepl's parser, which also takes what follows a valid LSN ("0/1/2",
// "0/1x") and halves beyond 32 bits, behind the check that s is two
// 32-bit hexadecimal numbers and nothing else.
func ParseLSN(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || !isHex32(hi) || !isHex32(lo) {
		return 0, fmt.Errorf("LSN %q: write it as PostgreSQL does, like 0/16B3748", s)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		return 0, fmt.Errorf("LSN %q: write it as PostgreSQL does, like 0/16B3748", s)
	}
	return uint64(lsn), nil
}

func isHex32(s string) bool {
	if s == "" || len(s) > 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// TxStamp is what most answers show of a transaction: where and when it
// committed, and its xid.
type TxStamp struct {
	CommitLSN  uint64
	Xid        uint32
	CommitTime time.Time
}

// NewestTx returns the archived transaction with the greatest commit LSN
// in [lo, hi]; ok is false when there is none.
func (c *Catalog) NewestTx(ctx context.Context, lo, hi uint64) (t TxStamp, ok bool, err error) {
	var lsn, xid, us int64
	err = c.db.QueryRowContext(ctx, `SELECT commit_lsn, xid, commit_time FROM tx WHERE commit_lsn >= ? AND commit_lsn <= ?
		ORDER BY commit_lsn DESC LIMIT 1`, clampLSN(lo), clampLSN(hi)).Scan(&lsn, &xid, &us)
	if errors.Is(err, sql.ErrNoRows) {
		return t, false, nil
	}
	if err != nil {
		return t, false, fmt.Errorf("catalog transactions: %w", err)
	}
	return TxStamp{CommitLSN: uint64(lsn), Xid: uint32(xid), CommitTime: FromMicros(us)}, true, nil
}

// TxContaining returns the commit LSN of the archived transaction whose
// commit record holds lsn: commit LSN <= lsn < end LSN. ok is false when
// lsn lies between transactions.
func (c *Catalog) TxContaining(ctx context.Context, lsn uint64) (commitLSN uint64, ok bool, err error) {
	var commit, end int64
	// The newest transaction at or before lsn is the only candidate:
	// commit records do not overlap.
	err = c.db.QueryRowContext(ctx, `SELECT commit_lsn, end_lsn FROM tx WHERE commit_lsn <= ? ORDER BY commit_lsn DESC LIMIT 1`,
		clampLSN(lsn)).Scan(&commit, &end)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("catalog transactions: %w", err)
	}
	if uint64(end) <= lsn {
		return 0, false, nil
	}
	return uint64(commit), true, nil
}

// CommitTimes returns the commit times of the first and the last archived
// transactions by commit LSN (close to the oldest and newest by time, and
// found without a scan); ok is false when the archive holds none.
func (c *Catalog) CommitTimes(ctx context.Context) (first, last time.Time, ok bool, err error) {
	var f, l sql.NullInt64
	err = c.db.QueryRowContext(ctx, `SELECT (SELECT commit_time FROM tx ORDER BY commit_lsn LIMIT 1),
		(SELECT commit_time FROM tx ORDER BY commit_lsn DESC LIMIT 1)`).Scan(&f, &l)
	if err != nil {
		return first, last, false, fmt.Errorf("catalog transactions: %w", err)
	}
	if !f.Valid {
		return first, last, false, nil
	}
	return FromMicros(f.Int64), FromMicros(l.Int64), true, nil
}

// RowKeyTxs returns the transactions that changed a row of the table whose
// key hashes (KeyHash) to one of hashes, with commit LSN at or after from
// and commit time before until (zero: open), in commit order. It reads the
// row-key index; the caller filters the transactions' changes by the key's
// values.
func (c *Catalog) RowKeyTxs(ctx context.Context, tableID int64, hashes []int64, from uint64, until time.Time) ([]TxStamp, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	untilUs := int64(1<<63 - 1)
	if !until.IsZero() {
		untilUs = Micros(until)
	}
	var out []TxStamp
	err := c.inSnapshot(ctx, func(v *Catalog) error {
		lsns, err := v.keyRunLSNs(ctx, tableID, hashes, from)
		if err != nil {
			return err
		}
		st, err := v.db.PrepareContext(ctx, `SELECT xid, commit_time FROM tx WHERE commit_lsn = ?`)
		if err != nil {
			return fmt.Errorf("catalog transactions: %w", err)
		}
		defer st.Close()
		for _, lsn := range lsns {
			var xid, us int64
			err := st.QueryRowContext(ctx, clampLSN(lsn)).Scan(&xid, &us)
			if errors.Is(err, sql.ErrNoRows) {
				continue // as the join did: a pair whose transaction is gone
			}
			if err != nil {
				return fmt.Errorf("catalog transaction at %s: %w", FormatLSN(lsn), err)
			}
			if us < untilUs {
				out = append(out, TxStamp{CommitLSN: lsn, Xid: uint32(xid), CommitTime: FromMicros(us)})
			}
		}
		return nil
	})
	return out, err
}
