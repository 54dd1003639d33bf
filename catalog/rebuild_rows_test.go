package catalog

import "testing"

// Records of a rel_life row merge as SetTableCreated and SetTableDropped
// change the row, whatever order the segments give them in.
func TestMergeLife(t *testing.T) {
	created := MetaLife{TableID: 1, Created: true, CreatedLSN: 10, CreatedAt: 100, CreatedExact: true}
	inexactCreated := MetaLife{TableID: 1, Created: true, CreatedLSN: 10, CreatedAt: 100}
	foundGone := MetaLife{TableID: 1, CreatedExact: true, Dropped: true, DroppedLSN: 50, DroppedAt: 500, AliveLSN: 30, AliveAt: 300}
	exactDrop := MetaLife{TableID: 1, CreatedExact: true, Dropped: true, DroppedLSN: 40, DroppedAt: 400, AliveLSN: 39, AliveAt: 399, DropExact: true}
	both := MetaLife{TableID: 1, Created: true, CreatedLSN: 10, CreatedAt: 100, CreatedExact: true,
		Dropped: true, DroppedLSN: 40, DroppedAt: 400, AliveLSN: 39, AliveAt: 399, DropExact: true}
	tests := []struct {
		name    string
		records []MetaLife
		want    MetaLife
	}{
		{"one", []MetaLife{created}, created},
		{"inexact then exact creation", []MetaLife{inexactCreated, created}, created},
		{"exact creation stays", []MetaLife{created, inexactCreated}, created},
		{"created then dropped", []MetaLife{created, both}, both},
		{"a drop record alone keeps the creation", []MetaLife{created, exactDrop}, both},
		{"an exact drop replaces a found one", []MetaLife{created, foundGone, exactDrop}, both},
		{"a found drop does not replace an exact one", []MetaLife{both, foundGone}, both},
		{"a rewrite's copy after the newer record", []MetaLife{both, created}, both},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got MetaLife
			for _, l := range tc.records {
				got = mergeLife(got, l)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
