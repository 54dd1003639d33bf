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
	}
}

func TestMetadata_RoundTrip(t *testing.T) {
	tests := map[string]catalog.Metadata{
		"empty": {},
		"full":  sampleMetadata(),
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
	})
}
