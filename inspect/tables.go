package inspect

import (
	"context"
	"fmt"
	"time"

	"lbt/catalog"
)

// TableInfo is what the archive holds of one table.
type TableInfo struct {
	ID             int64    // catalog id
	OID            uint32   // on the source
	Name           string   // qualified SQL name, the newest
	FormerNames    []string // earlier names, oldest first
	SchemaVersions int

	Basebackups         int
	NewestBasebackup    time.Time // when it finished; zero without one
	NewestBasebackupLSN uint64

	Transactions int64
	Inserts      int64
	Updates      int64
	Deletes      int64
	Truncates    int64
	FirstChange  time.Time // zero without changes
	LastChange   time.Time

	Blobs           int64
	DeltaBytes      int64 // blobs, as stored (compressed)
	BasebackupBytes int64 // basebackup files, as stored
}

// Bytes is the table's share of the archive on disk.
func (t TableInfo) Bytes() int64 { return t.DeltaBytes + t.BasebackupBytes }

// TablesReport is the answer of a tables query.
type TablesReport struct {
	Tables []TableInfo
	Notes  []string
}

// Tables lists every archived table with its basebackups, change counts,
// first and last change times and bytes on disk.
func (in *Inspector) Tables(ctx context.Context) (*TablesReport, error) {
	refs, err := in.cat.Tables(ctx)
	if err != nil {
		return nil, err
	}
	r := &TablesReport{}
	byID := make(map[int64]*TableInfo, len(refs))
	for _, ref := range refs {
		t, err := in.tableByID(ctx, ref.ID)
		if err != nil {
			return nil, err
		}
		info := TableInfo{ID: ref.ID, OID: ref.OID, Name: t.name, SchemaVersions: len(t.versions)}
		for _, v := range t.versions {
			n := v.QualifiedName()
			if n != info.Name && (len(info.FormerNames) == 0 || info.FormerNames[len(info.FormerNames)-1] != n) {
				info.FormerNames = append(info.FormerNames, n)
			}
		}
		r.Tables = append(r.Tables, info)
	}
	for i := range r.Tables {
		byID[r.Tables[i].ID] = &r.Tables[i]
	}

	type scan func(t *TableInfo, vals []int64)
	queries := []struct {
		q    string
		n    int
		fill scan
	}{
		{`SELECT t.table_id, t.n, t.ins, t.upd, t.del, t.trunc,
				(SELECT commit_time FROM tx WHERE commit_lsn >= t.lo ORDER BY commit_lsn LIMIT 1), (SELECT commit_time FROM tx WHERE commit_lsn = t.hi),
				t.blobs, t.bytes
			FROM (SELECT table_id, sum(txs) AS n, sum(inserts) AS ins, sum(updates) AS upd, sum(deletes) AS del, sum(truncates) AS trunc,
				min(first_lsn) AS lo, max(last_lsn) AS hi, count(*) AS blobs, sum(length) AS bytes FROM blob GROUP BY table_id) t`, 10,
			func(t *TableInfo, v []int64) {
				t.Transactions, t.Inserts, t.Updates, t.Deletes, t.Truncates = v[1], v[2], v[3], v[4], v[5]
				t.FirstChange, t.LastChange = microsTime(v[6]), microsTime(v[7])
				t.Blobs, t.DeltaBytes = v[8], v[9]
			}},
		{`SELECT table_id, count(*), coalesce(sum(bytes), 0), max(lsn),
				(SELECT finished_at FROM basebackup b2 WHERE b2.table_id = b.table_id ORDER BY lsn DESC LIMIT 1)
			FROM basebackup b GROUP BY table_id`, 5,
			func(t *TableInfo, v []int64) {
				t.Basebackups, t.BasebackupBytes, t.NewestBasebackupLSN = int(v[1]), v[2], uint64(v[3])
				t.NewestBasebackup = microsTime(v[4])
			}},
	}
	for _, q := range queries {
		if err := in.eachRow(ctx, q.q, q.n, func(vals []int64) {
			if t := byID[vals[0]]; t != nil {
				q.fill(t, vals)
			}
		}); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// eachRow runs a query whose n columns are integers (NULL as 0).
func (in *Inspector) eachRow(ctx context.Context, q string, n int, fn func([]int64)) error {
	rows, err := in.db().QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	vals := make([]int64, n)
	ptrs := make([]any, n)
	nulls := make([]*int64, n)
	for i := range ptrs {
		nulls[i] = new(int64)
		ptrs[i] = &nullInt{p: nulls[i]}
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		for i := range vals {
			vals[i] = *nulls[i]
		}
		fn(vals)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// nullInt scans an integer, NULL as 0.
type nullInt struct{ p *int64 }

func (n *nullInt) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*n.p = 0
	case int64:
		*n.p = x
	default:
		return fmt.Errorf("want an integer, got %T", v)
	}
	return nil
}

// microsTime converts catalog time, 0 (a NULL) to the zero time.
func microsTime(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return catalog.FromMicros(us)
}
