package restore

import (
	"errors"
	"slices"
	"testing"
	"time"

	"lbt/catalog"
	"lbt/schema"
)

func TestPresenceAt(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	exact := catalog.TableLife{DroppedLSN: 500, DroppedAt: at(50), AliveLSN: 499, AliveAt: at(50).Add(-time.Microsecond), DropExact: true}
	found := catalog.TableLife{DroppedLSN: 700, DroppedAt: at(70), AliveLSN: 300, AliveAt: at(30)}
	created := catalog.TableLife{CreatedLSN: 200, CreatedAt: at(20), CreatedExact: true}
	firstChange := catalog.TableLife{CreatedLSN: 200, CreatedAt: at(20)}
	tests := []struct {
		name  string
		life  catalog.TableLife
		upto  uint64
		until time.Time
		want  presence
	}{
		{"nothing known", catalog.TableLife{}, 100, time.Time{}, existed},
		{"before its creation", created, 199, time.Time{}, notCreated},
		{"at its creation", created, 200, time.Time{}, existed},
		{"before its first change, created unseen", firstChange, 199, time.Time{}, createdUnknown},
		{"at its first change, created unseen", firstChange, 200, time.Time{}, existed},
		{"before an exact drop", exact, 499, time.Time{}, existed},
		{"at an exact drop", exact, 500, time.Time{}, wasDropped},
		{"time before an exact drop, placed by upto", exact, 499, at(60), existed},
		{"before a drop found late", found, 300, time.Time{}, existed},
		{"inside the span of a drop found late", found, 301, time.Time{}, maybeDropped},
		{"after a drop found late", found, 700, time.Time{}, wasDropped},
		{"time before a drop found late", found, 999, at(30), existed},
		{"time inside the span", found, 0, at(31), maybeDropped},
		{"time after a drop found late", found, 0, at(70), wasDropped},
	}
	for _, tt := range tests {
		if got := presenceAt(tt.life, tt.upto, tt.until); got != tt.want {
			t.Errorf("%s: presence %d, want %d", tt.name, got, tt.want)
		}
	}
}

// pickTable resolves a name to the table that had it at the target.
func TestPickTable(t *testing.T) {
	version := func(id int64, from uint64, name string) catalog.SchemaVersion {
		return catalog.SchemaVersion{TableID: id, Version: 1, FromLSN: from, Table: schema.Table{Schema: "public", Name: name}}
	}
	// zz2 (table 1) from LSN 100, dropped exactly at 500; a new zz2
	// (table 2) first archived at 600.
	old := nameCandidate{id: 1, versions: []catalog.SchemaVersion{version(1, 100, "zz2")},
		life: catalog.TableLife{DroppedLSN: 500, DroppedAt: time.Unix(500, 0), AliveLSN: 499, DropExact: true}}
	newer := nameCandidate{id: 2, versions: []catalog.SchemaVersion{version(2, 600, "zz2")}}
	createdNewer := newer
	createdNewer.life = catalog.TableLife{CreatedLSN: 550, CreatedExact: true}
	foundLate := old
	foundLate.life = catalog.TableLife{DroppedLSN: 650, DroppedAt: time.Unix(650, 0), AliveLSN: 300, AliveAt: time.Unix(300, 0)}
	renamed := nameCandidate{id: 3, versions: []catalog.SchemaVersion{version(3, 100, "zz2"), version(3, 400, "zz3")}}
	tests := []struct {
		name  string
		cands []nameCandidate
		upto  uint64
		want  int64      // table id; 0 for an error
		gone  []presence // with want 0: the goneError's presences; nil for another error
		warn  bool
	}{
		{name: "latest: the new table", cands: []nameCandidate{newer, old}, upto: 900, want: 2},
		{name: "before the drop: the old table", cands: []nameCandidate{newer, old}, upto: 300, want: 1},
		{name: "just before the drop", cands: []nameCandidate{newer, old}, upto: 499, want: 1},
		{name: "after the drop, the new table's creation unknown", cands: []nameCandidate{newer, old}, upto: 520, gone: []presence{wasDropped, createdUnknown}},
		{name: "after the drop, before the new table's creation", cands: []nameCandidate{createdNewer, old}, upto: 520, gone: []presence{notCreated, wasDropped}},
		{name: "after the new table's creation", cands: []nameCandidate{createdNewer, old}, upto: 560, want: 2},
		{name: "dropped, name never reused", cands: []nameCandidate{old}, upto: 900, gone: []presence{wasDropped}},
		{name: "found late: before its last sign of life", cands: []nameCandidate{newer, foundLate}, upto: 300, want: 1},
		{name: "found late: inside the span", cands: []nameCandidate{foundLate}, upto: 400, gone: []presence{maybeDropped}},
		{name: "found late: the new table after it", cands: []nameCandidate{newer, foundLate}, upto: 900, want: 2},
		{name: "renamed away: found by the old name with a warning", cands: []nameCandidate{renamed}, upto: 900, want: 3, warn: true},
		{name: "renamed away, and the name dropped since", cands: []nameCandidate{renamed, old}, upto: 900, want: 3, warn: true},
		{name: "two tables named so at the target: the one that showed the name last", cands: []nameCandidate{{id: 4, versions: []catalog.SchemaVersion{version(4, 100, "zz2")}}, {id: 5, versions: []catalog.SchemaVersion{version(5, 200, "zz2")}}}, upto: 900, want: 5},
		{name: "two tables named so at the target: before the second one", cands: []nameCandidate{{id: 4, versions: []catalog.SchemaVersion{version(4, 100, "zz2")}}, {id: 5, versions: []catalog.SchemaVersion{version(5, 200, "zz2")}}}, upto: 150, want: 4},
		{name: "two tables named so from the same LSN", cands: []nameCandidate{{id: 4, versions: []catalog.SchemaVersion{version(4, 100, "zz2")}}, {id: 5, versions: []catalog.SchemaVersion{version(5, 100, "zz2")}}}, upto: 900},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, warn, err := pickTable(tt.cands, "public", "zz2", tt.upto, time.Time{})
			if tt.want != 0 {
				if err != nil || c.id != tt.want || (warn != "") != tt.warn {
					t.Fatalf("got table %d, warning %q, error %v; want table %d, warning %v", c.id, warn, err, tt.want, tt.warn)
				}
				return
			}
			var g *goneError
			if err == nil {
				t.Fatalf("got table %d, want an error", c.id)
			}
			if errors.As(err, &g) != (tt.gone != nil) {
				t.Fatalf("error %v; want a goneError: %v", err, tt.gone != nil)
			}
			if g != nil && !slices.Equal(g.pres, tt.gone) {
				t.Fatalf("presences %v, want %v", g.pres, tt.gone)
			}
		})
	}
}

func TestClipToLife(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ws := []window{{from: 100, to: 200, toAt: t0.Add(200)}, {from: 300, to: 900, toAt: t0.Add(900)}, {from: 700, to: 900}}
	got := clipToLife(ws, catalog.TableLife{DroppedLSN: 600, AliveLSN: 599, AliveAt: t0.Add(599), DropExact: true})
	if len(got) != 2 || got[0].to != 200 || got[1].to != 599 || !got[1].toAt.Equal(t0.Add(599)) {
		t.Errorf("clipped windows %+v", got)
	}
	if got := clipToLife(ws, catalog.TableLife{}); len(got) != 3 {
		t.Errorf("a live table's windows clipped: %+v", got)
	}
}
