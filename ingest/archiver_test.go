package ingest

import (
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"lbt/catalog"
	"lbt/schema"
	"lbt/source"
)

// fakeSource answers the archiver's lookups as a source would whose table
// has the storage storages[i] at the i-th Relation message.
type fakeSource struct {
	typeNames map[uint32]string
	pk        []string
	storages  []source.Storage
	described int      // DescribeRelation calls
	ended     []uint32 // AwaitEnded's xids, in order
	endedSeen []int    // len(ended) at each DescribeRelation
}

func (f *fakeSource) DescribeRelation(_ context.Context, _ uint32, t *schema.Table) (source.Storage, error) {
	f.endedSeen = append(f.endedSeen, len(f.ended))
	for i := range t.Columns {
		t.Columns[i].TypeName = f.typeNames[t.Columns[i].TypeOID]
		t.Columns[i].AttNum = int16(i + 1)
	}
	t.PrimaryKey = f.pk
	st := f.storages[min(f.described, len(f.storages)-1)]
	f.described++
	return st, nil
}

func (f *fakeSource) AwaitEnded(_ context.Context, xid uint32) error {
	f.ended = append(f.ended, xid)
	return nil
}
func (f *fakeSource) DescribeCurrent(context.Context, uint32, schema.Table) (schema.Table, source.Storage, bool, error) {
	return schema.Table{}, source.Storage{}, false, nil
}
func (f *fakeSource) DescribeNew(context.Context, uint32) (schema.Table, bool, error) {
	return schema.Table{}, false, nil
}
func (f *fakeSource) TableCreation(context.Context, uint32) (source.Creation, bool, error) {
	return source.Creation{}, false, nil
}
func (f *fakeSource) SnapshotXmax(context.Context) (uint64, error) { return 0, nil }
func (f *fakeSource) Publication(context.Context, string) (source.Publication, error) {
	return source.Publication{Exists: true, AllTables: true}, nil
}
func (f *fakeSource) Position(context.Context) (source.WALPoint, error) {
	return source.WALPoint{LSN: 1 << 32, At: time.Now()}, nil
}
func (f *fakeSource) Relations(_ context.Context, oids []uint32) (map[uint32]source.Relation, error) {
	out := map[uint32]source.Relation{}
	for _, oid := range oids {
		out[oid] = source.Relation{Schema: "public", Name: "t", Kind: 'r'}
	}
	return out, nil
}
func (f *fakeSource) ResolveTable(context.Context, string) (uint32, bool, error) {
	return 0, false, nil
}
func (f *fakeSource) ServerVersion(context.Context) (int, error) { return 150000, nil }
func (f *fakeSource) LookPartitions(context.Context, int, string) (source.PartitionLook, error) {
	return source.PartitionLook{}, nil
}

// pgoutput builds the messages of the logical replication protocol.
type pgoutput struct{ b []byte }

func (p *pgoutput) u8(v byte) *pgoutput    { p.b = append(p.b, v); return p }
func (p *pgoutput) u16(v uint16) *pgoutput { p.b = binary.BigEndian.AppendUint16(p.b, v); return p }
func (p *pgoutput) u32(v uint32) *pgoutput { p.b = binary.BigEndian.AppendUint32(p.b, v); return p }
func (p *pgoutput) u64(v uint64) *pgoutput { p.b = binary.BigEndian.AppendUint64(p.b, v); return p }
func (p *pgoutput) str(s string) *pgoutput { p.b = append(append(p.b, s...), 0); return p }

// pgTime is t in PostgreSQL's microseconds since 2000-01-01.
func pgTime(t time.Time) uint64 {
	return uint64(t.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds())
}

func beginMsg(commitLSN uint64, xid uint32, at time.Time) []byte {
	return new(pgoutput).u8('B').u64(commitLSN).u64(pgTime(at)).u32(xid).b
}

func commitMsg(commitLSN, endLSN uint64, at time.Time) []byte {
	return new(pgoutput).u8('C').u8(0).u64(commitLSN).u64(endLSN).u64(pgTime(at)).b
}

// relationMsg describes public.t (id integer key, label text).
func relationMsg(oid uint32) []byte {
	p := new(pgoutput).u8('R').u32(oid).str("public").str("t").u8('d').u16(2)
	p.u8(1).str("id").u32(23).u32(0xffffffff)
	p.u8(0).str("label").u32(25).u32(0xffffffff)
	return p.b
}

func insertMsg(oid uint32, values ...string) []byte {
	p := new(pgoutput).u8('I').u32(oid).u8('N').u16(uint16(len(values)))
	for _, v := range values {
		p.u8('t').u32(uint32(len(v)))
		p.b = append(p.b, v...)
	}
	return p.b
}

func truncateMsg(oid uint32) []byte {
	return new(pgoutput).u8('T').u32(1).u8(0).u32(oid).b
}

// TestArchiver_FakeSource drives the archiver with synthetic pgoutput and
// a fake source: the second transaction's Relation message finds the
// table's storage replaced, which only a TRUNCATE in the stream explains.
func TestArchiver_FakeSource(t *testing.T) {
	const oid, xid1, xid2 = 16384, 700, 701
	tests := []struct {
		name     string
		second   [][]byte // between the second BEGIN and COMMIT
		storage2 source.Storage
		gaps     int
	}{
		{"same storage", [][]byte{relationMsg(oid), insertMsg(oid, "2", "b")}, source.Storage{Relfilenode: oid, Xmin: 600}, 0},
		{"storage replaced by a TRUNCATE in the stream", [][]byte{relationMsg(oid), truncateMsg(oid), insertMsg(oid, "2", "b")},
			source.Storage{Relfilenode: 20000, Xmin: xid2}, 0},
		{"storage replaced unseen: rows rewritten", [][]byte{relationMsg(oid), insertMsg(oid, "2", "b")},
			source.Storage{Relfilenode: 20000, Xmin: 650}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			cat, err := catalog.Create(ctx, dir, catalog.Source{SystemID: "1", Database: "db", ServerVersion: "150000"})
			if err != nil {
				t.Fatal(err)
			}
			defer cat.Close()
			const start = 0x1000000
			w, err := cat.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			epoch, err := w.AddEpoch(start, "lbt", "new archive")
			if err != nil {
				t.Fatal(err)
			}
			if err := w.SetPosition(catalog.Position{Epoch: epoch, EndLSN: start}); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}

			opts := NewOptions()
			opts.ArchiveDir, opts.TempDir, opts.TrackNewTables, opts.Fsync = dir, t.TempDir(), true, false
			opts.Logger = hclog.NewNullLogger()
			src := &fakeSource{typeNames: map[uint32]string{23: "integer", 25: "text"}, pk: []string{"id"},
				storages: []source.Storage{{Relfilenode: oid, Xmin: 600}, tt.storage2}}
			var durable atomic.Uint64
			a, err := newArchiver(ctx, opts.Logger, &opts, cat, src, nil, epoch, &durable)
			if err != nil {
				t.Fatal(err)
			}
			defer a.close()
			at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			msgs := [][]byte{beginMsg(start+0x100, xid1, at), relationMsg(oid), insertMsg(oid, "1", "a"), commitMsg(start+0x100, start+0x108, at),
				beginMsg(start+0x200, xid2, at.Add(time.Second))}
			msgs = append(msgs, tt.second...)
			msgs = append(msgs, commitMsg(start+0x200, start+0x208, at.Add(time.Second)))
			for _, m := range msgs {
				if err := a.handle(m); err != nil {
					t.Fatalf("message %q: %v", m[0], err)
				}
			}
			if err := a.finish(); err != nil {
				t.Fatal(err)
			}

			if got := durable.Load(); got != start+0x208 {
				t.Errorf("durable position %x, want %x", got, start+0x208)
			}
			if src.described != 2 {
				t.Errorf("DescribeRelation called %d times, want once per Relation message (2)", src.described)
			}
			// Each lookup waits for its transaction to end on the source
			// first, or it may read the catalogs from before its commit.
			if !slices.Equal(src.ended, []uint32{xid1, xid2}) || !slices.Equal(src.endedSeen, []int{1, 2}) {
				t.Errorf("AwaitEnded for %v, seen by the lookups as %v; want each transaction awaited before its lookup", src.ended, src.endedSeen)
			}
			s, err := cat.Summarize(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if s.Tables != 1 || s.Transactions != 2 {
				t.Errorf("archive holds %d tables and %d transactions, want 1 and 2", s.Tables, s.Transactions)
			}
			refs, err := cat.Tables(ctx)
			if err != nil || len(refs) != 1 {
				t.Fatalf("tables %v, %v", refs, err)
			}
			versions, err := cat.SchemaVersions(ctx, refs[0].ID)
			if err != nil || len(versions) != 1 {
				t.Fatalf("schema versions %v, %v", versions, err)
			}
			def := versions[0].Table
			if def.Columns[0].TypeName != "integer" || def.Columns[1].TypeName != "text" || strings.Join(def.PrimaryKey, ",") != "id" || def.Columns[1].AttNum != 2 {
				t.Errorf("schema version does not hold what the source described: %+v", def)
			}
			gaps, err := cat.TableGaps(ctx, refs[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(gaps) != tt.gaps {
				t.Fatalf("%d inexact spans, want %d: %+v", len(gaps), tt.gaps, gaps)
			}
			if tt.gaps > 0 && (!strings.Contains(gaps[0].Reason, "rewritten") || gaps[0].SeenLSN != start+0x200) {
				t.Errorf("span %+v, want one seen at %x for rewritten rows", gaps[0], start+0x200)
			}
		})
	}
}
