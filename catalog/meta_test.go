package catalog_test

import (
	"reflect"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/schema"
)

func sampleMetadata() catalog.Metadata {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123000, time.UTC)
	return catalog.Metadata{
		Archive:  &catalog.ArchiveRecord{SystemID: "7312345678901234567", Database: "app", ServerVersion: "150004", CreatedAt: "2026-12-02T10:00:00Z"},
		Position: &catalog.MetaPosition{Epoch: 1, EndLSN: 0x2228, At: at.Add(2 * time.Second)},
		Epochs:   []catalog.EpochRecord{{Epoch: catalog.Epoch{ID: 1, StartLSN: 0x1000, Slot: "lbt", Reason: "new archive"}, StartedAt: at}},
		Schemas: []catalog.MetaSchema{{
			SchemaVersion: catalog.SchemaVersion{TableID: 3, Version: 2, FromLSN: 0x2000, Table: schema.Table{
				Schema: "public", Name: "t", ReplicaIdentity: 'd', PrimaryKey: []string{"id"},
				Columns: []schema.Column{{Name: "id", TypeOID: 23, TypeMod: -1, TypeName: "integer", Key: true}, {Name: "v", TypeOID: 25, TypeMod: -1, TypeName: "text"}},
			}},
			OID: 16384, RelFirstLSN: 0x1800,
		}},
		Blobs: []catalog.MetaBlob{{Offset: 16, ID: 9}, {Offset: 100, ID: 7}, {Offset: 180, ID: 10}},
		Txs: []catalog.MetaTx{
			{CommitLSN: 0x2000, EndLSN: 0x2030, Xid: 700, CommitTime: at},
			{CommitLSN: 0x2100, EndLSN: 0x2130, Xid: 701, CommitTime: at.Add(-time.Millisecond), Origin: "sub", Explicit: true},
			{CommitLSN: 0x2200, EndLSN: 0x2228, Xid: 4294967295, CommitTime: at.Add(time.Second)},
			{CommitLSN: 0x2300, EndLSN: 0x2300, Xid: 9, CommitTime: time.UnixMicro(0).UTC(), Purged: true},
		},
		Messages: []catalog.MetaMessage{{CommitLSN: 0x2100, Seq: 0, Prefix: "lbt.actor", Content: []byte(`{"user":"a"}`)}, {CommitLSN: 0x2100, Seq: 1, Prefix: "lbt.ddl", Content: []byte{}}},
		Carries:  true,
		Gaps: []catalog.MetaGap{
			{ID: 1, TableID: 3, FromLSN: 0x1801, FromTime: at.UnixMicro(), SeenLSN: 0x2000, Reason: "column v changed type"},
			{ID: 7, TableID: 3, FromLSN: 0x2100, SeenLSN: 0x2100, Reason: ""}, // from the description: no time
		},
		Storage: []catalog.MetaStorage{{TableID: 3, Relfilenode: 4294967295, Description: `{"schema":"public","name":"t"}`}},
		Lives: []catalog.MetaLife{
			{TableID: 3, Created: true, CreatedLSN: 0x1800, CreatedAt: at.UnixMicro(), CreatedExact: true},
			{TableID: 4, CreatedExact: true, Dropped: true, DroppedLSN: 0x2200, DroppedAt: at.UnixMicro() + 5, AliveLSN: 0x2100, AliveAt: at.UnixMicro() - 9},
			{TableID: 5, Created: true, CreatedLSN: 0x10, CreatedAt: -3, Dropped: true, DroppedLSN: 0x20, DroppedAt: 7, AliveLSN: 0x1f, AliveAt: 6, DropExact: true},
		},
		Partitions: []catalog.MetaPartition{
			{ID: 2, Root: 16400, FromLSN: 0x1900, ToLSN: 0x2200, FromTime: at.UnixMicro(), ToTime: at.UnixMicro() + 60e6, ViaRoot: true, Nodes: `[{"oid":16400,"schema":"public","name":"m"}]`},
			{ID: 3, Root: 16400, FromLSN: 0x2300, ToLSN: 0x2300, FromTime: 1, ToTime: 1, Nodes: `[]`},
		},
		RunEnds: []catalog.MetaRunEnd{{ID: 2, ToLSN: 0x2400, ToTime: at.UnixMicro() + 90e6}, {ID: 1, ToLSN: 1, ToTime: -1}},
	}
}

func TestMetadata_RoundTrip(t *testing.T) {
	tests := map[string]catalog.Metadata{
		"empty":        {},
		"full":         sampleMetadata(),
		"table rows":   {Carries: true, Lives: []catalog.MetaLife{{TableID: 1}}, Storage: []catalog.MetaStorage{{TableID: 2, Description: `null`}}},
		"carries only": {Carries: true},
	}
	for name, m := range tests {
		t.Run(name, func(t *testing.T) {
			raw, err := catalog.AppendMetadata(nil, &m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := catalog.ParseMetadata(raw)
			if err != nil {
				t.Fatal(err)
			}
			var marks []catalog.TxMark
			for _, tx := range m.Txs {
				if !tx.Explicit {
					marks = append(marks, catalog.TxMark{CommitLSN: tx.CommitLSN, Xid: tx.Xid})
				}
			}
			if err := got.ResolveTxs(marks); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
			}
		})
	}
}

func TestMetadata_ResolveTxsRefusesMismatch(t *testing.T) {
	m := sampleMetadata()
	raw, _ := catalog.AppendMetadata(nil, &m)
	tests := map[string][]catalog.TxMark{
		"too few marks":          {{CommitLSN: 0x2000, Xid: 700}},
		"too many marks":         {{CommitLSN: 0x2000, Xid: 700}, {CommitLSN: 0x2200, Xid: 1}, {CommitLSN: 0x2300, Xid: 2}, {CommitLSN: 0x2400, Xid: 3}},
		"explicit out of order":  {{CommitLSN: 0x2150, Xid: 700}, {CommitLSN: 0x2200, Xid: 1}, {CommitLSN: 0x2300, Xid: 2}},
		"marks out of the order": {{CommitLSN: 0x2000, Xid: 700}, {CommitLSN: 0x2050, Xid: 1}, {CommitLSN: 0x2300, Xid: 2}},
	}
	for name, marks := range tests {
		got, err := catalog.ParseMetadata(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := got.ResolveTxs(marks); err == nil {
			t.Errorf("%s: resolved", name)
		}
	}
}

// ParseMetadata never panics and never accepts a truncated encoding.
func FuzzParseMetadata(f *testing.F) {
	m := sampleMetadata()
	raw, _ := catalog.AppendMetadata(nil, &m)
	f.Add(raw)
	f.Add([]byte{'T', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{'B', 2, 1})
	f.Add([]byte{'L', 1, 0x0f, 1, 2, 3, 4, 5, 6})
	f.Add([]byte{'R', 1, 1, 0, 0, 0, 0, 1, 2, '[', ']'})
	f.Add([]byte{'G', 1, 1, 5, 0, 0x7f, 0})
	f.Add([]byte{'U', 1, 0x80, 1, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := catalog.ParseMetadata(b)
		if err != nil {
			return
		}
		// What parses encodes again to something that parses the same.
		re, err := catalog.AppendMetadata(nil, &got)
		if err != nil {
			return // a shape that does not encode back, e.g. an unknown replica identity
		}
		again, err := catalog.ParseMetadata(re)
		if err != nil {
			t.Fatalf("re-encoding does not parse: %v", err)
		}
		if len(again.Txs) != len(got.Txs) || len(again.Blobs) != len(got.Blobs) || len(again.Schemas) != len(got.Schemas) {
			t.Fatalf("re-encoding differs")
		}
		// The table rows are plain values: they come back exactly.
		if again.Carries != got.Carries || !reflect.DeepEqual(again.Gaps, got.Gaps) || !reflect.DeepEqual(again.Storage, got.Storage) ||
			!reflect.DeepEqual(again.Lives, got.Lives) || !reflect.DeepEqual(again.Partitions, got.Partitions) || !reflect.DeepEqual(again.RunEnds, got.RunEnds) {
			t.Fatalf("re-encoding of the table rows differs:\n got %+v\nwant %+v", again, got)
		}
	})
}
