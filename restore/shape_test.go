package restore

import (
	"slices"
	"testing"

	"lbt/catalog"
	"lbt/schema"
)

func cols(spec ...string) schema.Table {
	// spec: "name:oid"
	t := schema.Table{Schema: "public", Name: "t", ReplicaIdentity: 'd'}
	for _, s := range spec {
		var c schema.Column
		for i := 0; i < len(s); i++ {
			if s[i] == ':' {
				c.Name = s[:i]
				for _, d := range s[i+1:] {
					c.TypeOID = c.TypeOID*10 + uint32(d-'0')
				}
				break
			}
		}
		t.Columns = append(t.Columns, c)
	}
	return t
}

func TestStepMatch(t *testing.T) {
	tests := []struct {
		name string
		a, b schema.Table
		want []int
	}{
		{"same", cols("id:23", "v:25"), cols("id:23", "v:25"), []int{0, 1}},
		{"add column", cols("id:23"), cols("id:23", "n:23"), []int{0, -1}},
		{"drop column", cols("id:23", "x:25", "v:25"), cols("id:23", "v:25"), []int{0, 2}},
		{"rename", cols("id:23", "x:25", "v:25"), cols("id:23", "y:25", "v:25"), []int{0, 1, 2}},
		{"rename and type change is a new column", cols("id:23", "x:25"), cols("id:23", "y:20"), []int{0, -1}},
		{"type change keeps the column", cols("id:23", "x:23"), cols("id:23", "x:1700"), []int{0, 1}},
		{"new name while the old one stays is not a rename", cols("id:23", "x:25"), cols("id:23", "y:25", "x:25"), []int{0, -1, 1}},
		{"swap of names by position", cols("id:23", "a:25", "b:25"), cols("id:23", "b:25", "a:25"), []int{0, 2, 1}},
		// With the source's attnums.
		{"attnum: rename after a drop shifted positions", attnums(cols("id:23", "x:25", "v:25"), 1, 2, 3), attnums(cols("id:23", "w:25"), 1, 3), []int{0, 2}},
		{"attnum: dropped and added again under its name", attnums(cols("id:23", "v:25"), 1, 2), attnums(cols("id:23", "v:25"), 1, 3), []int{0, -1}},
		{"attnum: rename and type change", attnums(cols("id:23", "x:23"), 1, 2), attnums(cols("id:23", "y:20"), 1, 2), []int{0, 1}},
		{"attnum unknown before: by name", cols("id:23", "v:25"), attnums(cols("id:23", "v:25"), 1, 3), []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stepMatch(tt.a, tt.b); !slices.Equal(got, tt.want) {
				t.Errorf("stepMatch = %v, want %v", got, tt.want)
			}
		})
	}
}

func attnums(t schema.Table, nums ...int16) schema.Table {
	for i := range t.Columns {
		t.Columns[i].AttNum = nums[i]
	}
	return t
}

// Rows from before ADD COLUMN ... DEFAULT 'new' read the fast default, as
// the shape that first has the column records it; a column added without
// one is NULL there.
func TestBuildShapes_MissingValues(t *testing.T) {
	def := cols("id:23")
	added := cols("id:23", "status:25", "note:25")
	added.Columns[1].HasMissing, added.Columns[1].Missing = true, "new"
	later := cols("id:23", "status:25", "note:25") // rewritten since: no missing value any more
	versions := []catalog.SchemaVersion{
		{Version: 1, FromLSN: 10, Table: cols("id:23")},
		{Version: 2, FromLSN: 200, Table: added},
		{Version: 3, FromLSN: 300, Table: later},
	}
	s, err := buildShapes(versions, def, 100, 350)
	if err != nil {
		t.Fatal(err)
	}
	if m := s.missing; len(m) != 3 || m[0].kind != catalog.ValueNull || m[1].kind != catalog.ValueText || string(m[1].data) != "new" || m[2].kind != catalog.ValueNull {
		t.Errorf("missing values %+v", m)
	}
}

func TestBuildShapes_ChainComposes(t *testing.T) {
	// v1 (id, a, b) before the basebackup; the basebackup sees a renamed to
	// c; after it, b is dropped (v2 from 200), then d is added (v3 from
	// 300). v4 from 400 is after the target.
	def := cols("id:23", "c:25", "b:25")
	versions := []catalog.SchemaVersion{
		{Version: 1, FromLSN: 10, Table: cols("id:23", "a:25", "b:25")},
		{Version: 2, FromLSN: 200, Table: cols("id:23", "c:25")},
		{Version: 3, FromLSN: 300, Table: cols("id:23", "c:25", "d:20")},
		{Version: 4, FromLSN: 400, Table: cols("id:23", "c:25", "d:20", "e:20")},
	}
	s, err := buildShapes(versions, def, 100, 350)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(s.target.Columns); got != 3 {
		t.Fatalf("target has %d columns, want 3 (id, c, d)", got)
	}
	want := map[int][]int{1: {0, 1, -1}, 2: {0, 1, -1}, 3: {0, 1, 2}}
	for v, w := range want {
		if got := s.versions[v].cols; !slices.Equal(got, w) {
			t.Errorf("version %d maps %v, want %v", v, got, w)
		}
	}
	if _, ok := s.versions[4]; ok {
		t.Error("version 4 is after the target")
	}
	if !slices.Equal(s.def, []int{0, 1, -1}) {
		t.Errorf("basebackup maps %v", s.def)
	}
	// A target before any later version is the basebackup's shape.
	s, err = buildShapes(versions, def, 100, 150)
	if err != nil {
		t.Fatal(err)
	}
	if s.target.Columns[1].Name != "c" || len(s.target.Columns) != 3 || !slices.Equal(s.versions[1].cols, []int{0, 1, 2}) {
		t.Errorf("target %+v, v1 %v", s.target.Columns, s.versions[1].cols)
	}
}

func TestKeyColumns(t *testing.T) {
	full := cols("a:25", "b:25")
	full.ReplicaIdentity = 'f'
	full.Columns[0].Key, full.Columns[1].Key = true, true
	if k := keyColumns(full); k != nil {
		t.Errorf("FULL without a primary key: key %v, want none", k)
	}
	full.PrimaryKey = []string{"b"}
	if k := keyColumns(full); !slices.Equal(k, []int{1}) {
		t.Errorf("FULL with a primary key: key %v", k)
	}
	// A basebackup's definition does not keep the replica identity: FULL
	// shows as every column being part of the key.
	full.PrimaryKey, full.ReplicaIdentity = nil, 0
	if k := keyColumns(full); k != nil {
		t.Errorf("every column a key, no primary key: key %v, want none", k)
	}
	none := cols("a:25")
	if k := keyColumns(none); k != nil {
		t.Errorf("no identity: key %v", k)
	}
}
