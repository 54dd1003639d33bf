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

// A run of looks keeps its furthest end, whether it comes in a later
// commit's whole record, a purge's snapshot read first or last, or a run
// end record; a span is the one first recorded.
func TestRebuiltTableRows_Take(t *testing.T) {
	run := func(to uint64) MetaPartition {
		return MetaPartition{ID: 4, Root: 10, FromLSN: 100, ToLSN: to, FromTime: 1, ToTime: int64(to), Nodes: `[]`}
	}
	tests := []struct {
		name   string
		blobs  []Metadata
		wantTo uint64
	}{
		{"whole records", []Metadata{{Partitions: []MetaPartition{run(100)}}, {Partitions: []MetaPartition{run(300)}}}, 300},
		{"an older snapshot read last", []Metadata{{Partitions: []MetaPartition{run(300)}}, {Rewrite: true, Partitions: []MetaPartition{run(200)}}}, 300},
		{"a run end after the record", []Metadata{{Partitions: []MetaPartition{run(100)}}, {RunEnds: []MetaRunEnd{{ID: 4, ToLSN: 400, ToTime: 400}}}}, 400},
		{"a run end read before the record", []Metadata{{RunEnds: []MetaRunEnd{{ID: 4, ToLSN: 400, ToTime: 400}}}, {Partitions: []MetaPartition{run(100)}}}, 400},
		{"an older run end", []Metadata{{Partitions: []MetaPartition{run(300)}}, {RunEnds: []MetaRunEnd{{ID: 4, ToLSN: 200, ToTime: 200}}}}, 300},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rows rebuiltTableRows
			for i := range tc.blobs {
				rows.take(&tc.blobs[i])
			}
			if p := rows.partition(4); p.ToLSN != tc.wantTo {
				t.Errorf("run ends at %d, want %d", p.ToLSN, tc.wantTo)
			}
		})
	}
	var rows rebuiltTableRows
	rows.take(&Metadata{Gaps: []MetaGap{{ID: 1, TableID: 2, Reason: "first"}}})
	rows.take(&Metadata{Rewrite: true, Gaps: []MetaGap{{ID: 1, TableID: 2, Reason: "copy"}}})
	if g := rows.gaps[1]; g.Reason != "first" || len(rows.gaps) != 1 {
		t.Errorf("spans %+v", rows.gaps)
	}
}
