package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Purge support: the catalog side of removing history that retention no
// longer keeps, and of rewriting segments whose blobs are mostly gone. The
// caller (package retention) decides what goes; these helpers remove rows in
// short transactions, so that the daemon, which needs SQLite's write lock
// at every flush, is never kept waiting for long.
//
// Write ordering: every helper here changes catalog rows only. The caller
// removes the bytes (basebackup files, segment files) after the rows that
// point at them are gone, and writes new bytes (rewritten segments) before
// the rows that point at them.

// purgeBatch is how many rows one purge transaction removes at most: a few
// tens of milliseconds of SQLite work.
const purgeBatch = 20000

// IsBusy reports an error from SQLite finding the write lock held by
// another connection for longer than the busy timeout.
func IsBusy(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "database is locked")
}

// write runs f in a write transaction, retrying while the daemon holds the
// write lock (it does for the whole of a huge source transaction).
func (c *Catalog) write(ctx context.Context, what string, f func(tx *sql.Tx) error) error {
	for {
		err := c.writeOnce(ctx, f)
		if err == nil {
			return nil
		}
		if !IsBusy(err) {
			return fmt.Errorf("catalog %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("catalog %s: %w", what, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

func (c *Catalog) writeOnce(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// PurgeCounts is what removing a table's history before an LSN removes.
type PurgeCounts struct {
	Basebackups     int
	BasebackupBytes int64
	Blobs           int
	BlobBytes       int64
	Transactions    int64 // the table's transactions in those blobs
	Changes         int64 // inserts, updates, deletes and truncates in them
}

// Empty reports whether nothing would be removed.
func (p PurgeCounts) Empty() bool {
	return p.Basebackups == 0 && p.Blobs == 0 && p.Transactions == 0
}

// CountPurge counts what PurgeTable(tableID, before) would remove:
// basebackups taken before the LSN, and blobs whose last transaction
// committed before it, with the transactions and changes in them.
func (c *Catalog) CountPurge(ctx context.Context, tableID int64, before uint64) (PurgeCounts, error) {
	var p PurgeCounts
	err := c.db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM basebackup WHERE table_id = ?1 AND lsn < ?2),
		(SELECT coalesce(sum(bytes), 0) FROM basebackup WHERE table_id = ?1 AND lsn < ?2),
		(SELECT count(*) FROM blob WHERE table_id = ?1 AND last_lsn < ?2),
		(SELECT coalesce(sum(length), 0) FROM blob WHERE table_id = ?1 AND last_lsn < ?2),
		(SELECT coalesce(sum(txs), 0) FROM blob WHERE table_id = ?1 AND last_lsn < ?2),
		(SELECT coalesce(sum(changes), 0) FROM blob WHERE table_id = ?1 AND last_lsn < ?2)`,
		tableID, int64(before)).Scan(&p.Basebackups, &p.BasebackupBytes, &p.Blobs, &p.BlobBytes, &p.Transactions, &p.Changes)
	if err == nil && p.Basebackups > 0 {
		p.BasebackupBytes, err = c.purgedFileBytes(ctx, tableID, before)
	}
	if err != nil {
		return p, fmt.Errorf("catalog count purge of table %d: %w", tableID, err)
	}
	return p, nil
}

// purgedFileBytes sums the sizes of the files of a table's basebackups
// before an LSN that no later basebackup reuses: what their purge returns.
func (c *Catalog) purgedFileBytes(ctx context.Context, tableID int64, before uint64) (int64, error) {
	tx, err := c.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	kept, err := tableFiles(ctx, tx, tableID, int64(before))
	if err != nil {
		return 0, err
	}
	bases, err := tx.QueryContext(ctx, `SELECT path, bytes, chunks FROM basebackup WHERE table_id = ? AND lsn < ?`, tableID, int64(before))
	if err != nil {
		return 0, err
	}
	defer bases.Close()
	var n int64
	for bases.Next() {
		var b Basebackup
		var chunks string
		if err := bases.Scan(&b.Path, &b.Bytes, &chunks); err != nil {
			return 0, err
		}
		if b.Chunks, err = decodeChunks(chunks); err != nil {
			return 0, err
		}
		for _, f := range b.Files() {
			if !kept[f.Path] {
				n += f.Bytes
				kept[f.Path] = true // an older basebackup may list it too
			}
		}
	}
	return n, bases.Err()
}

// PurgeTable removes a table's history before an LSN from the catalog:
// basebackups with lsn < before, blobs with last_lsn < before, and the
// row-key pairs and tx_truncate rows of transactions with commit_lsn < before,
// and records the LSN as the table's purged_lsn. The
// removal is recorded in purge_log first, with counts (from CountPurge),
// in the transaction that removes the basebackup rows. The same
// transaction records in purge_file the files that go with those rows:
// each removed basebackup's sidecar, and those of its chunk files that no
// kept basebackup of the table reuses (format 5). It returns them, sidecars
// first; the caller deletes them (PurgeFiles) before it reclaims any
// segment. Segment bytes of removed blobs stay until the caller
// retires or rewrites their segments.
//
// A crash part way leaves some of the history before the LSN in place, never
// less than that after it; running PurgeTable again finishes the work.
func (c *Catalog) PurgeTable(ctx context.Context, tableID int64, before uint64, counts PurgeCounts) ([]string, error) {
	b := int64(before)
	var paths []string
	err := c.write(ctx, "purge basebackups", func(tx *sql.Tx) error {
		paths = paths[:0]
		seq, err := nextSeq(ctx, tx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO purge_log (at, table_id, before_lsn, blobs, txs, bytes, link) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			Micros(time.Now()), tableID, b, counts.Blobs, counts.Transactions, counts.BlobBytes+counts.BasebackupBytes, seq)
		if err != nil {
			return err
		}
		kept, err := tableFiles(ctx, tx, tableID, b)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT path, chunks, lsn FROM basebackup WHERE table_id = ? AND lsn < ?`, tableID, b)
		if err != nil {
			return err
		}
		var lsns []int64
		var files []string
		for rows.Next() {
			var p, chunks string
			var lsn int64
			if err := rows.Scan(&p, &chunks, &lsn); err != nil {
				rows.Close()
				return err
			}
			paths = append(paths, SidecarName(p))
			for _, f := range basebackupFiles(p, chunks) {
				if !kept[f] {
					files = append(files, f)
				}
			}
			lsns = append(lsns, lsn)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		paths = append(paths, files...)
		now := Micros(time.Now())
		for _, p := range paths {
			if _, err := tx.ExecContext(ctx, `INSERT INTO purge_file (path, at) VALUES (?, ?) ON CONFLICT (path) DO NOTHING`, p, now); err != nil {
				return err
			}
		}
		affected := map[int64]bool{}
		for _, lsn := range lsns {
			var link int64
			err := tx.QueryRowContext(ctx, `SELECT seq FROM chain WHERE kind = 'basebackup' AND table_id = ? AND first_lsn = ?`, tableID, lsn).Scan(&link)
			if err == nil {
				affected[link] = true
			} else if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		if err := checkLinks(ctx, tx, affected); err != nil {
			return err
		}
		if _, err = tx.ExecContext(ctx, `DELETE FROM basebackup WHERE table_id = ? AND lsn < ?`, tableID, b); err != nil {
			return err
		}
		return reanchor(ctx, tx, tableID, before, affected, seq)
	})
	if err != nil {
		return nil, err
	}

	if err := c.purgeKeyRuns(ctx, tableID, before); err != nil {
		return paths, err
	}

	err = c.write(ctx, "purge truncates", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM tx_truncate WHERE table_id = ? AND commit_lsn < ?`, tableID, b); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE table_state SET purged_lsn = max(purged_lsn, ?) WHERE table_id = ?`, b, tableID)
		return err
	})
	if err != nil {
		return paths, err
	}
	for {
		var n int64
		err := c.write(ctx, "purge blobs", func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT id, first_lsn FROM blob WHERE table_id = ? AND last_lsn < ? LIMIT ?`, tableID, b, purgeBatch)
			if err != nil {
				return err
			}
			var ids []int64
			firsts := map[uint64]bool{}
			for rows.Next() {
				var id, first int64
				if err := rows.Scan(&id, &first); err != nil {
					rows.Close()
					return err
				}
				ids = append(ids, id)
				firsts[uint64(first)] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			n = int64(len(ids))
			if err := keepNextBlobID(ctx, tx); err != nil {
				return err
			}
			affected, err := commitLinksAt(ctx, tx, firsts)
			if err != nil {
				return err
			}
			if err := deleteIn(ctx, tx, `DELETE FROM blob WHERE id IN `, ids); err != nil {
				return err
			}
			return reanchorCommits(ctx, tx, tableID, before, affected)
		})
		if err != nil {
			return paths, err
		}
		if n < purgeBatch {
			break
		}
	}
	return paths, nil
}

// PurgeTransactions removes the tx rows below before whose every table has
// been purged past them (table_state.purged_lsn), with their logical
// messages, and the tx_range rows left without transactions. A
// transaction that carries messages is kept unless it is also below
// messagesBefore: messages belong to no table, so they go only once every
// table's history has moved past them. It returns how many transactions
// went.
func (c *Catalog) PurgeTransactions(ctx context.Context, before, messagesBefore uint64) (int64, error) {
	purged, err := c.purgedLSNs(ctx)
	if err != nil {
		return 0, fmt.Errorf("catalog purge transactions: %w", err)
	}
	gone := func(lsn uint64, tables []byte, hasMessages bool) (bool, error) {
		if hasMessages && lsn >= messagesBefore {
			return false, nil
		}
		list, err := ParseTxTables(tables)
		if err != nil {
			return false, fmt.Errorf("transaction at %s: %w", FormatLSN(lsn), err)
		}
		for _, t := range list {
			// A table added since the map was read has purged nothing.
			if p, ok := purged[t.TableID]; !ok || lsn >= p {
				return false, nil
			}
		}
		return true, nil
	}

	var total int64
	lo := int64(-1)
	for {
		hi := int64(-1)
		var n int64
		err := c.write(ctx, "purge transactions", func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT commit_lsn, tables, EXISTS (SELECT 1 FROM tx_message m WHERE m.commit_lsn = tx.commit_lsn)
				FROM tx WHERE commit_lsn > ? AND commit_lsn < ? ORDER BY commit_lsn LIMIT ?`, lo, int64(before), purgeBatch)
			if err != nil {
				return err
			}
			var doomed []int64
			for rows.Next() {
				var lsn int64
				var tables []byte
				var hasMessages bool
				if err := rows.Scan(&lsn, &tables, &hasMessages); err != nil {
					rows.Close()
					return err
				}
				hi = lsn
				ok, err := gone(uint64(lsn), tables, hasMessages)
				if err != nil {
					rows.Close()
					return err
				}
				if ok {
					doomed = append(doomed, lsn)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			firsts := map[uint64]bool{}
			for _, lsn := range doomed {
				firsts[uint64(lsn)] = true
			}
			affected, err := commitLinksAt(ctx, tx, firsts)
			if err != nil {
				return err
			}
			for len(doomed) > 0 {
				chunk := doomed[:min(len(doomed), 500)]
				doomed = doomed[len(chunk):]
				in := "(?" + strings.Repeat(",?", len(chunk)-1) + ")"
				args := make([]any, len(chunk))
				for i, v := range chunk {
					args[i] = v
				}
				res, err := tx.ExecContext(ctx, `DELETE FROM tx WHERE commit_lsn IN `+in, args...)
				if err != nil {
					return err
				}
				k, err := res.RowsAffected()
				if err != nil {
					return err
				}
				n += k
				if _, err := tx.ExecContext(ctx, `DELETE FROM tx_message WHERE commit_lsn IN `+in, args...); err != nil {
					return err
				}
			}
			return reanchorCommits(ctx, tx, 0, before, affected)
		})
		if err != nil {
			return total, err
		}
		if hi < 0 {
			break
		}
		total += n
		lo = hi
	}
	err = c.write(ctx, "purge transaction ranges", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM tx_range WHERE first_lsn < ? AND NOT EXISTS
			(SELECT 1 FROM tx WHERE tx.commit_lsn >= tx_range.first_lsn AND tx.commit_lsn <= tx_range.last_lsn)`, int64(before))
		return err
	})
	return total, err
}

// purgedLSNs returns each table's purged_lsn: its history before that LSN
// is gone.
func (c *Catalog) purgedLSNs(ctx context.Context) (map[int64]uint64, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT table_id, purged_lsn FROM table_state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	purged := map[int64]uint64{}
	for rows.Next() {
		var id, lsn int64
		if err := rows.Scan(&id, &lsn); err != nil {
			return nil, err
		}
		purged[id] = uint64(lsn)
	}
	return purged, rows.Err()
}

// SegmentBlobs is a sealed segment and the blobs the catalog still has in it.
type SegmentBlobs struct {
	ID    int64
	Size  int64 // bytes of the file, header included
	Blobs []Blob
}

// SealedSegments lists the sealed segments that are not retired, oldest
// first, with their blobs in offset order. The segment that the daemon
// appends to is never sealed, so it is never listed.
func (c *Catalog) SealedSegments(ctx context.Context) ([]SegmentBlobs, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT id, size FROM segment WHERE sealed = 1 AND retired_at IS NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("catalog sealed segments: %w", err)
	}
	var segs []SegmentBlobs
	index := map[int64]int{}
	for rows.Next() {
		var s SegmentBlobs
		if err := rows.Scan(&s.ID, &s.Size); err != nil {
			rows.Close()
			return nil, fmt.Errorf("catalog sealed segments: %w", err)
		}
		index[s.ID] = len(segs)
		segs = append(segs, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog sealed segments: %w", err)
	}
	rows, err = c.db.QueryContext(ctx, `SELECT b.id, b.table_id, b.segment_id, b.offset, b.length, b.crc, b.schema, b.first_lsn, b.last_lsn, b.changes, b.raw_length
		FROM blob b JOIN segment s ON s.id = b.segment_id WHERE s.sealed = 1 AND s.retired_at IS NULL ORDER BY b.segment_id, b.offset`)
	if err != nil {
		return nil, fmt.Errorf("catalog sealed segments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		b, err := scanBlob(rows)
		if err != nil {
			return nil, fmt.Errorf("catalog sealed segments: %w", err)
		}
		if i, ok := index[b.SegmentID]; ok {
			segs[i].Blobs = append(segs[i].Blobs, b)
		}
	}
	return segs, rows.Err()
}

// RetireSegments marks sealed segments that hold no blob any more as
// retired, and returns those it marked. Their files may then be removed.
func (c *Catalog) RetireSegments(ctx context.Context, ids []int64) ([]int64, error) {
	var done []int64
	err := c.write(ctx, "retire segments", func(tx *sql.Tx) error {
		done = done[:0]
		now := Micros(time.Now())
		for _, id := range ids {
			res, err := tx.ExecContext(ctx, `UPDATE segment SET retired_at = ? WHERE id = ? AND sealed = 1 AND retired_at IS NULL
				AND NOT EXISTS (SELECT 1 FROM blob WHERE segment_id = ?)`, now, id, id)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				done = append(done, id)
			}
		}
		return nil
	})
	return done, err
}

// HasBlobsOutside reports whether a blob lies in a segment other than
// those listed.
func (c *Catalog) HasBlobsOutside(ctx context.Context, segments []int64) (bool, error) {
	q := `SELECT EXISTS (SELECT 1 FROM blob WHERE segment_id NOT IN (SELECT value FROM json_each(?)))`
	list, err := json.Marshal(segments)
	if err != nil {
		return false, fmt.Errorf("catalog blobs outside segments: %w", err)
	}
	var ok bool
	if err := c.db.QueryRowContext(ctx, q, string(list)).Scan(&ok); err != nil {
		return false, fmt.Errorf("catalog blobs outside segments: %w", err)
	}
	return ok, nil
}

// RetiredSegments lists the retired segments. Their files are removed after
// retirement; one that is still there was left by a crash in between.
func (c *Catalog) RetiredSegments(ctx context.Context) ([]int64, error) {
	return queryRows(ctx, c.db, "retired segments", scanInt64, `SELECT id FROM segment WHERE retired_at IS NOT NULL ORDER BY id`)
}

// ReserveSegment records a new, sealed, empty segment for a rewrite and
// returns its id. Rewritten segments count down from -1: the daemon hands
// out ids counting up from the highest in the catalog and keeps the next
// one in memory, so any positive id could collide with one it is about to
// use. The row is committed before the file exists; a crash in between
// leaves an empty sealed segment, which the next purge retires.
func (c *Catalog) ReserveSegment(ctx context.Context) (int64, error) {
	var id int64
	err := c.write(ctx, "reserve segment", func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT min(coalesce(min(id), 0), 0) - 1 FROM segment`).Scan(&id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO segment (id, created_at, size, sealed) VALUES (?, ?, ?, 1)`,
			id, Micros(time.Now()), SegmentHeaderSize)
		return err
	})
	return id, err
}

// BlobMove is a blob copied into another segment.
type BlobMove struct {
	Blob   Blob  // as the catalog had it before the copy
	Offset int64 // where the copy is in the new segment
}

// ErrMoved reports a blob that is no longer where a rewrite copied it from.
var ErrMoved = errors.New("blob changed while its segment was rewritten")

// MoveBlobs points blobs at their copies in segment seg (whose bytes must
// be durable), records seg's size, and retires the segments in retire,
// which must hold no blob afterwards, all in one transaction.
func (c *Catalog) MoveBlobs(ctx context.Context, seg, size int64, moves []BlobMove, retire []int64) error {
	return c.write(ctx, "move blobs", func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE blob SET segment_id = ?, offset = ? WHERE id = ? AND segment_id = ? AND offset = ? AND length = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, m := range moves {
			res, err := st.ExecContext(ctx, seg, m.Offset, m.Blob.ID, m.Blob.SegmentID, m.Blob.Offset, m.Blob.Length)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return fmt.Errorf("%w: blob %d", ErrMoved, m.Blob.ID)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE segment SET size = ? WHERE id = ?`, size, seg); err != nil {
			return err
		}
		now := Micros(time.Now())
		for _, id := range retire {
			res, err := tx.ExecContext(ctx, `UPDATE segment SET retired_at = ? WHERE id = ? AND sealed = 1
				AND NOT EXISTS (SELECT 1 FROM blob WHERE segment_id = ?)`, now, id, id)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return fmt.Errorf("%w: segment %d still holds blobs", ErrMoved, id)
			}
		}
		return nil
	})
}

// BasebackupPaths returns the archive-relative paths of every recorded
// basebackup.
func (c *Catalog) BasebackupPaths(ctx context.Context) (map[string]bool, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT path, chunks FROM basebackup`)
	if err != nil {
		return nil, fmt.Errorf("catalog basebackup paths: %w", err)
	}
	files, err := fileSet(rows)
	if err != nil {
		return nil, fmt.Errorf("catalog basebackup paths: %w", err)
	}
	return files, nil
}

// HasBasebackup reports whether a basebackup with this archive-relative
// path is recorded.
func (c *Catalog) HasBasebackup(ctx context.Context, path string) (bool, error) {
	var n int
	if err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM basebackup WHERE path = ?`, path).Scan(&n); err != nil {
		return false, fmt.Errorf("catalog basebackup %s: %w", path, err)
	}
	return n > 0, nil
}

// basebackupFiles lists a basebackup's files from its row: the first, then
// the other chunks.
func basebackupFiles(path, chunks string) []string {
	out := []string{path}
	cs, err := decodeChunks(chunks)
	if err != nil {
		return out
	}
	for _, c := range cs {
		if c.Path != path {
			out = append(out, c.Path)
		}
	}
	return out
}

// PurgeFiles lists the files that purges removed the catalog rows of and
// have still to delete: every sidecar before any data file, so that no
// crash leaves a sidecar whose basebackup a rebuilt catalog could bring
// back after its deltas are gone.
func (c *Catalog) PurgeFiles(ctx context.Context) ([]string, error) {
	return queryRows(ctx, c.db, "purge files", func(row scanner) (string, error) {
		var p string
		err := row.Scan(&p)
		return p, err
	}, `SELECT path FROM purge_file ORDER BY path LIKE '%.meta.json' DESC, path`)
}

// ForgetPurgeFile removes path from purge_file once its file is gone.
func (c *Catalog) ForgetPurgeFile(ctx context.Context, path string) error {
	return c.write(ctx, "forget purge file", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM purge_file WHERE path = ?`, path)
		return err
	})
}

// metaNextBlobID is the meta key below which every blob id was given: purge
// records it before it removes blobs, so that NextIDs never gives the id
// of a purged blob again.
const metaNextBlobID = "next_blob_id"

// keepNextBlobID records in meta the id after the greatest blob id, before
// a purge removes blobs (in the same transaction).
func keepNextBlobID(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) SELECT ?1, CAST(coalesce(max(id), 0) + 1 AS TEXT) FROM blob WHERE true
		ON CONFLICT (key) DO UPDATE SET value = CAST(max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)`, metaNextBlobID)
	return err
}

// deleteIn runs del (ending in "IN ") over ids, a few hundred at a time.
func deleteIn(ctx context.Context, tx *sql.Tx, del string, ids []int64) error {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, v := range chunk {
			args[i] = v
		}
		if _, err := tx.ExecContext(ctx, del+"(?"+strings.Repeat(",?", len(chunk)-1)+")", args...); err != nil {
			return err
		}
	}
	return nil
}

// commitLinksAt finds the commit links whose ranges hold the LSNs, and
// checks that their rows are still what the chain says: a purge must not
// re-anchor, and so launder, a change made outside lbt.
func commitLinksAt(ctx context.Context, tx *sql.Tx, lsns map[uint64]bool) (map[int64]bool, error) {
	affected := map[int64]bool{}
	for lsn := range lsns {
		seq, ok, err := commitLinkAt(ctx, tx, lsn)
		if err != nil {
			return nil, err
		}
		if ok {
			affected[seq] = true
		}
	}
	return affected, checkLinks(ctx, tx, affected)
}

// reanchorCommits re-anchors the commit links in affected, whose rows a
// purge step has just removed some of, in a purge link of its own.
func reanchorCommits(ctx context.Context, tx *sql.Tx, tableID int64, before uint64, affected map[int64]bool) error {
	if len(affected) == 0 {
		return nil
	}
	seq, err := nextSeq(ctx, tx)
	if err != nil {
		return err
	}
	return reanchor(ctx, tx, tableID, before, affected, seq)
}

// purgeKeyRuns removes a table's row-key pairs with commit LSN < before: a
// run wholly before it is deleted, one that straddles it is rewritten
// without them, each in its own transaction that reads the run's row again
// (the daemon may have merged it meanwhile, and a new run may have taken
// its id). Runs a concurrent merge made from unpurged ones are found by the
// next pass.
func (c *Catalog) purgeKeyRuns(ctx context.Context, tableID int64, before uint64) error {
	for {
		var ids []int64
		err := c.inSnapshot(ctx, func(v *Catalog) error {
			var err error
			ids, err = queryRows(ctx, v.db, "purge row keys", scanInt64, `SELECT run_id FROM key_run WHERE table_id = ? AND min_lsn < ?`, tableID, clampLSN(before))
			return err
		})
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		for _, id := range ids {
			err := c.write(ctx, "purge row keys", func(tx *sql.Tx) error {
				var level int
				var minLSN, maxLSN int64
				err := tx.QueryRowContext(ctx, `SELECT level, min_lsn, max_lsn FROM key_run WHERE run_id = ? AND table_id = ?`, id, tableID).Scan(&level, &minLSN, &maxLSN)
				switch {
				case errors.Is(err, sql.ErrNoRows) || err == nil && uint64(minLSN) >= before:
					return nil
				case err != nil:
					return err
				case uint64(maxLSN) < before:
					return deleteKeyRuns(ctx, tx, []int64{id})
				}
				return mergeKeyRuns(ctx, tx, tableID, []int64{id}, level, before)
			})
			if err != nil {
				return err
			}
		}
	}
}
