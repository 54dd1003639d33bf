package inspect

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

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

// Write writes the tables in format f.
func (r *TablesReport) Write(w io.Writer, f Format) error {
	return writeRows(w, f, tableColumns, r.Tables)
}

// tableColumns are the fields of a tables report, in every format.
var tableColumns = []column[TableInfo]{
	textColumn("table", "TABLE", func(t TableInfo) string { return t.Name }).withCell(func(t TableInfo) string {
		if len(t.FormerNames) > 0 {
			return t.Name + " (was " + strings.Join(t.FormerNames, ", ") + ")"
		}
		return t.Name
	}),
	intColumn("table_id", "", func(t TableInfo) int64 { return t.ID }),
	intColumn("oid", "", func(t TableInfo) int64 { return int64(t.OID) }),
	{name: "former_names",
		text: func(t TableInfo) string { return strings.Join(t.FormerNames, " ") },
		json: func(t TableInfo) any {
			if t.FormerNames == nil {
				return []string{}
			}
			return t.FormerNames
		}},
	intColumn("schema_versions", "", func(t TableInfo) int64 { return int64(t.SchemaVersions) }),
	intColumn("basebackups", "BASEBACKUPS", func(t TableInfo) int64 { return int64(t.Basebackups) }),
	timeColumn("newest_basebackup", "NEWEST BASEBACKUP", func(t TableInfo) time.Time { return t.NewestBasebackup }).withCell(func(t TableInfo) string {
		if t.Basebackups == 0 {
			return "-"
		}
		return formatTime(t.NewestBasebackup)
	}),
	{name: "newest_basebackup_lsn",
		text: func(t TableInfo) string {
			if t.Basebackups == 0 {
				return ""
			}
			return catalog.FormatLSN(t.NewestBasebackupLSN)
		},
		json: func(t TableInfo) any {
			if t.Basebackups == 0 {
				return nil
			}
			return catalog.FormatLSN(t.NewestBasebackupLSN)
		}},
	intColumn("transactions", "TXS", func(t TableInfo) int64 { return t.Transactions }),
	intColumn("inserts", "", func(t TableInfo) int64 { return t.Inserts }),
	intColumn("updates", "", func(t TableInfo) int64 { return t.Updates }),
	intColumn("deletes", "", func(t TableInfo) int64 { return t.Deletes }),
	intColumn("truncates", "", func(t TableInfo) int64 { return t.Truncates }),
	{head: "INS/UPD/DEL/TRUNC", text: func(t TableInfo) string {
		return fmt.Sprintf("%d/%d/%d/%d", t.Inserts, t.Updates, t.Deletes, t.Truncates)
	}},
	timeColumn("first_change", "FIRST CHANGE", func(t TableInfo) time.Time { return t.FirstChange }),
	timeColumn("last_change", "LAST CHANGE", func(t TableInfo) time.Time { return t.LastChange }),
	intColumn("blobs", "", func(t TableInfo) int64 { return t.Blobs }),
	intColumn("delta_bytes", "", func(t TableInfo) int64 { return t.DeltaBytes }),
	intColumn("basebackup_bytes", "", func(t TableInfo) int64 { return t.BasebackupBytes }),
	intColumn("bytes", "SIZE", TableInfo.Bytes).withCell(func(t TableInfo) string { return humanize.IBytes(uint64(t.Bytes())) }),
}
