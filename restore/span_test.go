package restore

import (
	"testing"
	"time"

	"lbt/catalog"
)

// The rules by which a target is inside an inexact span or a gap between
// epochs, and by which a basebackup's range to a target crosses one.
func TestSpanAndGapRules(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 14, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	closed := catalog.TableGap{FromLSN: 100, FromTime: at(10), SeenLSN: 150, ToLSN: 200, ToTime: at(20)}
	open := catalog.TableGap{FromLSN: 100, FromTime: at(10), SeenLSN: 150}
	for _, tt := range []struct {
		name string
		got  bool
		want bool
	}{
		{"span: right after the last change before it", inSpanLSN(closed, 99), false},
		{"span: its first position", inSpanLSN(closed, 100), true},
		{"span: just before the basebackup's point", inSpanLSN(closed, 198), true},
		{"span: the state the basebackup holds", inSpanLSN(closed, 199), false},
		{"span: after it", inSpanLSN(closed, 500), false},
		{"open span: anything after its start", inSpanLSN(open, 1<<40), true},
		{"span time: the last change's commit time", inSpanTime(closed, at(10)), false},
		{"span time: after it", inSpanTime(closed, at(11)), true},
		{"span time: the basebackup finished", inSpanTime(closed, at(20)), false},
		{"open span time: long after", inSpanTime(open, at(1000)), true},
		{"span: basebackup before it, target after it", spanCrosses(closed, 50, 301), true},
		{"span: basebackup before it, target before it", spanCrosses(closed, 50, 100), false},
		{"span: the closing basebackup, target after it", spanCrosses(closed, 200, 301), false},
		{"span: the closing basebackup, target before the span", spanCrosses(closed, 90, 200), true},
		{"span: a basebackup inside it", spanCrosses(closed, 150, 301), true},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}

	g := gap{lastLSN: 100, lastAt: at(10), startLSN: 200, startAt: at(20)}
	for _, tt := range []struct {
		name string
		got  bool
		want bool
	}{
		{"gap: the old epoch's last transaction", g.inLSN(100), false},
		{"gap: after it", g.inLSN(101), true},
		{"gap: just before the new epoch", g.inLSN(198), true},
		{"gap: the state at the new epoch's start", g.inLSN(199), false},
		{"gap time: the last commit", g.inTime(at(10)), false},
		{"gap time: after it", g.inTime(at(15)), true},
		{"gap time: the new epoch started", g.inTime(at(20)), false},
		{"gap: old basebackup to the last transaction", g.crosses(50, 101), false},
		{"gap: old basebackup into the gap", g.crosses(50, 102), true},
		{"gap: old basebackup to the new epoch's start", g.crosses(50, 200), true},
		{"gap: new basebackup, target after", g.crosses(200, 301), false},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}
