package retention

import (
	"slices"
	"testing"
	"time"

	"lbt/catalog"
)

func TestRetention_KeepFrom(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	// Basebackups at LSN 100, 200, 300, finished at hours 1, 2, 3.
	bases := []catalog.Basebackup{{LSN: 100, FinishedAt: at(1)}, {LSN: 200, FinishedAt: at(2)}, {LSN: 300, FinishedAt: at(3)}}
	for _, tc := range []struct {
		name string
		r    retention
		want int
	}{
		{"nothing set keeps all", retention{}, -1},
		{"window after all basebackups and commits", retention{window: true, windowStart: at(5), windowLSN: 301}, 2},
		{"window after all, but the last commit before it precedes the newest basebackup", retention{window: true, windowStart: at(5), windowLSN: 251}, 1},
		{"no commit before the window", retention{window: true, windowStart: at(5), windowLSN: 0}, -1},
		{"window at the second basebackup's end", retention{window: true, windowStart: at(2), windowLSN: 200}, 1},
		{"window just before the second basebackup ends", retention{window: true, windowStart: at(2).Add(-time.Second), windowLSN: 200}, 0},
		{"window before every basebackup", retention{window: true, windowStart: t0, windowLSN: 50}, -1},
		{"keep 1", retention{keep: 1}, 2},
		{"keep 3", retention{keep: 3}, 0},
		{"keep 4: fewer exist", retention{keep: 4}, -1},
		{"window reaches further back than keep", retention{window: true, windowStart: at(1), windowLSN: 150, keep: 1}, 0},
		{"keep reaches further back than window", retention{window: true, windowStart: at(5), windowLSN: 400, keep: 2}, 1},
		{"window unreachable wins over keep", retention{window: true, windowStart: t0, windowLSN: 50, keep: 1}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.keepFrom(bases); got != tc.want {
				t.Errorf("keepFrom = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPlanSegments(t *testing.T) {
	const h = catalog.SegmentHeaderSize
	blob := func(id, table int64, last uint64, length int64) catalog.Blob {
		return catalog.Blob{ID: id, TableID: table, LastLSN: last, Length: length}
	}
	segs := []catalog.SegmentBlobs{
		// all of table 1's blobs before its cutoff: removed
		{ID: 1, Size: h + 300, Blobs: []catalog.Blob{blob(1, 1, 10, 100), blob(2, 1, 20, 200)}},
		// one small live blob of table 2 left: rewritten
		{ID: 2, Size: h + 1000, Blobs: []catalog.Blob{blob(3, 1, 30, 900), blob(4, 2, 5, 100)}},
		// half live exactly: kept
		{ID: 3, Size: h + 1000, Blobs: []catalog.Blob{blob(5, 1, 40, 500), blob(6, 1, 60, 500)}},
		// all live: kept
		{ID: 4, Size: h + 100, Blobs: []catalog.Blob{blob(7, 1, 70, 100)}},
		// empty already (a rewrite's reserved segment after a crash): removed
		{ID: -1, Size: h},
		// another mostly dead one: joins the first rewrite group
		{ID: 5, Size: h + 1000, Blobs: []catalog.Blob{blob(8, 1, 41, 800), blob(9, 3, 1, 50)}},
	}
	p := planSegments(segs, map[int64]uint64{1: 50})
	if !slices.Equal(p.remove, []int64{1, -1}) {
		t.Errorf("remove %v, want [1 -1]", p.remove)
	}
	if len(p.rewrite) != 1 || len(p.rewrite[0]) != 2 || p.rewrite[0][0].ID != 2 || p.rewrite[0][1].ID != 5 {
		t.Fatalf("rewrite %+v, want one group of segments 2 and 5", p.rewrite)
	}
	if b := p.rewrite[0][0].Blobs; len(b) != 1 || b[0].ID != 4 {
		t.Errorf("segment 2 live blobs %+v, want blob 4 only", b)
	}
	// removed: 300+h and h; rewritten: (1000+h-100) + (1000+h-50) - h
	if want := int64(300+h+h) + (1000 + h - 100) + (1000 + h - 50) - h; p.freed != want {
		t.Errorf("freed %d, want %d", p.freed, want)
	}

	if p := planSegments(segs[3:4], nil); len(p.remove)+len(p.rewrite) != 0 || p.freed != 0 {
		t.Errorf("a full segment is left alone, got %+v", p)
	}
}
