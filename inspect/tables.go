package inspect

import (
	"context"
	"time"
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
	totals, err := in.cat.TableTotals(ctx)
	if err != nil {
		return nil, err
	}
	for i := range r.Tables {
		t := &r.Tables[i]
		tt := totals[t.ID]
		if tt == nil {
			continue
		}
		t.Transactions, t.Inserts, t.Updates, t.Deletes, t.Truncates = tt.Transactions, tt.Inserts, tt.Updates, tt.Deletes, tt.Truncates
		t.FirstChange, t.LastChange = tt.FirstChange, tt.LastChange
		t.Blobs, t.DeltaBytes = tt.Blobs, tt.BlobBytes
		t.Basebackups, t.BasebackupBytes, t.NewestBasebackupLSN = tt.Basebackups, tt.BasebackupBytes, tt.NewestBasebackupLSN
		t.NewestBasebackup = tt.NewestBasebackup
	}
	return r, nil
}
