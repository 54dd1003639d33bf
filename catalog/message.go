package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// TxMessage is a logical message with the transaction that emitted it.
type TxMessage struct {
	TxStamp
	Content []byte
}

// TxMessages returns the logical messages of the transaction that committed
// at commitLSN, in the order it emitted them.
func (c *Catalog) TxMessages(ctx context.Context, commitLSN uint64) ([]MetaMessage, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT seq, prefix, content FROM tx_message WHERE commit_lsn = ? ORDER BY seq`, clampLSN(commitLSN))
	if err != nil {
		return nil, fmt.Errorf("catalog messages of transaction %s: %w", FormatLSN(commitLSN), err)
	}
	defer rows.Close()
	var out []MetaMessage
	for rows.Next() {
		m := MetaMessage{CommitLSN: commitLSN}
		if err := rows.Scan(&m.Seq, &m.Prefix, &m.Content); err != nil {
			return nil, fmt.Errorf("catalog messages of transaction %s: %w", FormatLSN(commitLSN), err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog messages of transaction %s: %w", FormatLSN(commitLSN), err)
	}
	return out, nil
}

// FirstMessage returns the content of the first message with the prefix
// that the transaction that committed at commitLSN emitted; ok is false
// when it emitted none. It is asked once for each transaction a report
// shows (who made it), so its query is prepared once.
func (c *Catalog) FirstMessage(ctx context.Context, commitLSN uint64, prefix string) (content []byte, ok bool, err error) {
	err = c.queryRow(ctx, `SELECT content FROM tx_message WHERE commit_lsn = ? AND prefix = ? ORDER BY seq LIMIT 1`,
		clampLSN(commitLSN), prefix).Scan(&content)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("catalog messages of transaction %s: %w", FormatLSN(commitLSN), err)
	}
	return content, true, nil
}

// PrefixMessages returns the messages with the prefix of the transactions
// with lo <= commit LSN <= hi, in commit order and, within a transaction,
// in the order it emitted them.
func (c *Catalog) PrefixMessages(ctx context.Context, prefix string, lo, hi uint64) ([]TxMessage, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT m.commit_lsn, tx.xid, tx.commit_time, m.content
		FROM tx_message m JOIN tx ON tx.commit_lsn = m.commit_lsn
		WHERE m.commit_lsn BETWEEN ? AND ? AND m.prefix = ? ORDER BY m.commit_lsn, m.seq`, clampLSN(lo), clampLSN(hi), prefix)
	if err != nil {
		return nil, fmt.Errorf("catalog %s messages: %w", prefix, err)
	}
	return scanTxMessages(rows, prefix)
}

// FirstPrefixMessages returns, for each transaction with since <= commit
// time < until (zero: open) that emitted a message with the prefix, the
// first such message, in commit order.
func (c *Catalog) FirstPrefixMessages(ctx context.Context, prefix string, since, until time.Time) ([]TxMessage, error) {
	from, to := int64(-1<<63), int64(1<<63-1)
	if !since.IsZero() {
		from = Micros(since)
	}
	if !until.IsZero() {
		to = Micros(until)
	}
	rows, err := c.db.QueryContext(ctx, `SELECT t.commit_lsn, t.xid, t.commit_time, m.content FROM tx t JOIN tx_message m ON m.commit_lsn = t.commit_lsn
		WHERE m.prefix = ? AND t.commit_time >= ? AND t.commit_time < ?
		AND m.seq = (SELECT min(seq) FROM tx_message WHERE commit_lsn = t.commit_lsn AND prefix = m.prefix)
		ORDER BY t.commit_lsn`, prefix, from, to)
	if err != nil {
		return nil, fmt.Errorf("catalog %s messages: %w", prefix, err)
	}
	return scanTxMessages(rows, prefix)
}

func scanTxMessages(rows *sql.Rows, prefix string) ([]TxMessage, error) {
	defer rows.Close()
	var out []TxMessage
	for rows.Next() {
		var lsn, xid, us int64
		var content []byte
		if err := rows.Scan(&lsn, &xid, &us, &content); err != nil {
			return nil, fmt.Errorf("catalog %s messages: %w", prefix, err)
		}
		out = append(out, TxMessage{TxStamp: TxStamp{CommitLSN: uint64(lsn), Xid: uint32(xid), CommitTime: FromMicros(us)}, Content: content})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog %s messages: %w", prefix, err)
	}
	return out, nil
}
