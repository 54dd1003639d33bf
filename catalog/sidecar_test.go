package catalog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/schema"
	"lbt/storage"
)

func sampleBasebackup() catalog.Basebackup {
	at := time.Date(2026, 12, 2, 10, 0, 0, 5000, time.UTC)
	return catalog.Basebackup{
		TableID: 4, LSN: 0x16B374D848, Path: catalog.BasebackupName(4, 0x16B374D848), Rows: 100, Bytes: 1234, RawBytes: 5678, CRC: 0xdeadbeef,
		Definition: schema.Definition{Table: schema.Table{Schema: "public", Name: "t", ReplicaIdentity: 'd',
			Columns: []schema.Column{{Name: "id", TypeOID: 23, TypeMod: -1, TypeName: "integer", Key: true}}, PrimaryKey: []string{"id"}}},
		Reason: "request", StartedAt: at, FinishedAt: at.Add(time.Second),
	}
}

func TestSidecar_RoundTrip(t *testing.T) {
	dir := t.TempDir()
	b := sampleBasebackup()
	err := catalog.WriteSidecar(context.Background(), storage.NewLocal(storage.OS{}, dir), nil, b, catalog.SidecarTable{OID: 16384, Relfilenode: 16390})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, catalog.SidecarName(b.Path)))
	if err != nil {
		t.Fatal(err)
	}
	got, tbl, err := catalog.ParseSidecar(data)
	if err != nil {
		t.Fatal(err)
	}
	if tbl != (catalog.SidecarTable{OID: 16384, Relfilenode: 16390}) || !reflect.DeepEqual(got, b) {
		t.Errorf("round trip:\n got %+v (%+v)\nwant %+v", got, tbl, b)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "base", "*", "*.partial")); len(m) > 0 {
		t.Errorf("left %v", m)
	}
}

func TestParseSidecar_Refuses(t *testing.T) {
	good, _ := catalog.EncodeSidecar(sampleBasebackup(), catalog.SidecarTable{OID: 1})
	tests := map[string]string{
		"not JSON":       "{",
		"other format":   strings.Replace(string(good), fmt.Sprintf(`"format_version": %d`, catalog.FormatVersion), `"format_version": 2`, 1),
		"path elsewhere": strings.Replace(string(good), `"path": "base/4/`, `"path": "base/5/`, 1),
		"negative rows":  strings.Replace(string(good), `"rows": 100`, `"rows": -1`, 1),
	}
	for name, data := range tests {
		if data == string(good) {
			t.Fatalf("%s: the edit did not apply", name)
		}
		if _, _, err := catalog.ParseSidecar([]byte(data)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func FuzzParseSidecar(f *testing.F) {
	good, _ := catalog.EncodeSidecar(sampleBasebackup(), catalog.SidecarTable{OID: 1})
	f.Add(good)
	f.Add([]byte(`{"format_version":4,"table_id":1,"lsn":0,"path":"base/1/0000000000000000.copy.lz4"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, _, err := catalog.ParseSidecar(data)
		if err != nil {
			return
		}
		if b.TableID <= 0 || b.Path != catalog.BasebackupName(b.TableID, b.LSN) {
			t.Fatalf("accepted a sidecar of table %d at %q", b.TableID, b.Path)
		}
	})
}
