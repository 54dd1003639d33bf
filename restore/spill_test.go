package restore

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"lbt/catalog"
)

// streamGen makes random change streams over a basebackup, with a model of
// the table that says what a restore must give.
type streamGen struct {
	rnd     *rand.Rand
	keyed   bool
	noTrunc bool // no TRUNCATE: the basebackup is read
	bad     bool // a change may not add up
	invalid bool // the stream holds a change that does not add up
	base    []string
	changes []catalog.Change
	lsn     uint64

	rows map[string][3]*string // keyed: id -> (id, a, big)
	bag  [][2]*string          // keyless: the rows, duplicates allowed
}

func str(s string) *string { return &s }

// copyEscape writes a value as a COPY text field.
func copyEscape(v *string) string {
	if v == nil {
		return `\N`
	}
	return strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`).Replace(*v)
}

func (g *streamGen) value() *string {
	switch g.rnd.IntN(8) {
	case 0:
		return nil
	case 1:
		return str("tab\there \\ back")
	default:
		return str(fmt.Sprintf("v%d", g.rnd.IntN(1000)))
	}
}

func tupOf(vals ...*string) catalog.Tuple {
	var t catalog.Tuple
	for _, v := range vals {
		if v == nil {
			t = append(t, catalog.Value{Kind: catalog.ValueNull})
		} else {
			t = append(t, catalog.Value{Kind: catalog.ValueText, Data: []byte(*v)})
		}
	}
	return t
}

// newStream makes a basebackup of nbase rows and n changes after it.
func newStream(seed uint64, keyed bool, nbase, n int) *streamGen {
	g := &streamGen{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), keyed: keyed, rows: map[string][3]*string{}, lsn: 100}
	g.noTrunc, g.bad = seed%2 == 0, seed%5 == 3
	for i := range nbase {
		if keyed {
			row := [3]*string{str(fmt.Sprint(i + 1)), g.value(), g.value()}
			g.rows[*row[0]] = row
			g.base = append(g.base, copyEscape(row[0])+"\t"+copyEscape(row[1])+"\t"+copyEscape(row[2]))
		} else {
			row := [2]*string{str(fmt.Sprint("t", g.rnd.IntN(nbase/2+1))), g.value()}
			g.bag = append(g.bag, row)
			g.base = append(g.base, copyEscape(row[0])+"\t"+copyEscape(row[1]))
		}
	}
	for range n {
		if g.rnd.IntN(3) == 0 {
			g.lsn++ // several changes share a transaction
		}
		if keyed {
			g.keyedChange(nbase)
		} else {
			g.keylessChange(nbase)
		}
	}
	return g
}

func (g *streamGen) existing() (string, bool) {
	if len(g.rows) == 0 {
		return "", false
	}
	keys := make([]string, 0, len(g.rows))
	for k := range g.rows {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys[g.rnd.IntN(len(keys))], true
}

func (g *streamGen) freeKey(nbase int) string {
	for {
		k := fmt.Sprint(g.rnd.IntN(3*nbase+2*len(g.rows)+10) + 1)
		if _, ok := g.rows[k]; !ok {
			return k
		}
	}
}

func (g *streamGen) keyedChange(nbase int) {
	key := func(id string) catalog.Tuple { return tupOf(str(id), nil, nil) }
	add := func(c catalog.Change) { c.CommitLSN, c.Schema = g.lsn, 1; g.changes = append(g.changes, c) }
	id, ok := g.existing()
	op := g.rnd.IntN(100)
	if g.noTrunc && op >= 96 && op < 98 || !g.bad && op >= 98 {
		op = 50
	}
	if !ok && op >= 30 && op < 98 {
		op = 0
	}
	switch {
	case op < 30: // insert
		row := [3]*string{str(g.freeKey(nbase)), g.value(), g.value()}
		g.rows[*row[0]] = row
		add(catalog.Change{Tag: catalog.TagInsert, New: tupOf(row[:]...)})
	case op < 75: // update, the key changed or not, TOAST unchanged or not
		old := g.rows[id]
		row := [3]*string{old[0], g.value(), g.value()}
		c := catalog.Change{Tag: catalog.TagUpdate, OldKind: catalog.OldNone}
		if g.rnd.IntN(3) == 0 {
			row[0] = str(g.freeKey(nbase))
			c.OldKind, c.Old = catalog.OldKey, key(id)
		}
		if g.rnd.IntN(6) == 0 {
			c.OldKind, c.Old = catalog.OldFull, tupOf(old[:]...)
		}
		c.New = tupOf(row[:]...)
		if g.rnd.IntN(2) == 0 {
			c.New[2] = catalog.Value{Kind: catalog.ValueUnchanged}
			row[2] = old[2]
		}
		delete(g.rows, id)
		g.rows[*row[0]] = row
		add(c)
	case op < 96: // delete
		delete(g.rows, id)
		add(catalog.Change{Tag: catalog.TagDelete, OldKind: catalog.OldKey, Old: key(id)})
	case op < 98:
		g.rows = map[string][3]*string{}
		add(catalog.Change{Tag: catalog.TagTruncate})
	default: // a change of a row that is not there
		g.invalid = true
		add(catalog.Change{Tag: catalog.TagUpdate, OldKind: catalog.OldNone, New: tupOf(str(g.freeKey(nbase)), g.value(), nil)})
		g.changes[len(g.changes)-1].New[2] = catalog.Value{Kind: catalog.ValueUnchanged}
	}
}

func (g *streamGen) keylessChange(nbase int) {
	add := func(c catalog.Change) { c.CommitLSN, c.Schema = g.lsn, 1; g.changes = append(g.changes, c) }
	op := g.rnd.IntN(100)
	if g.noTrunc && op >= 96 && op < 98 || !g.bad && op >= 98 {
		op = 50
	}
	if len(g.bag) == 0 && op >= 30 && op < 98 {
		op = 0
	}
	newRow := func() [2]*string { return [2]*string{str(fmt.Sprint("t", g.rnd.IntN(nbase/2+3))), g.value()} }
	i := 0
	if len(g.bag) > 0 {
		i = g.rnd.IntN(len(g.bag))
	}
	switch {
	case op < 35:
		row := newRow()
		g.bag = append(g.bag, row)
		add(catalog.Change{Tag: catalog.TagInsert, New: tupOf(row[:]...)})
	case op < 70:
		old := g.bag[i]
		row := newRow()
		c := catalog.Change{Tag: catalog.TagUpdate, OldKind: catalog.OldFull, Old: tupOf(old[:]...), New: tupOf(row[:]...)}
		if g.rnd.IntN(2) == 0 {
			c.New[1] = catalog.Value{Kind: catalog.ValueUnchanged}
			row[1] = old[1]
		}
		g.bag[i] = row
		add(c)
	case op < 96:
		old := g.bag[i]
		g.bag = slices.Delete(g.bag, i, i+1)
		add(catalog.Change{Tag: catalog.TagDelete, OldKind: catalog.OldFull, Old: tupOf(old[:]...)})
	case op < 98:
		g.bag = nil
		add(catalog.Change{Tag: catalog.TagTruncate})
	default:
		g.invalid = true
		add(catalog.Change{Tag: catalog.TagDelete, OldKind: catalog.OldFull, Old: tupOf(str("nowhere"), nil)})
	}
}

// want renders the model's table as restoreRows does.
func (g *streamGen) want() []string {
	render := func(vals []*string) string {
		var parts []string
		for _, v := range vals {
			if v == nil {
				parts = append(parts, "NULL")
			} else {
				parts = append(parts, *v)
			}
		}
		return strings.Join(parts, "|")
	}
	var out []string
	for _, r := range g.rows {
		out = append(out, render(r[:]))
	}
	for _, r := range g.bag {
		out = append(out, render(r[:]))
	}
	slices.Sort(out)
	return out
}

// checkStream reduces a stream in memory and spilling under each
// configuration: the results must be equal, and equal to the model when the
// stream adds up.
func checkStream(t *testing.T, g *streamGen, configs []spillConfig) {
	t.Helper()
	width, keyCols := 2, []int(nil)
	if g.keyed {
		width, keyCols = 3, []int{0}
	}
	maps := map[int]versionMap{1: identity(width)}
	if g.keyed {
		maps[1].key[0] = true
	}
	want, wantNulls, err := reduceRows(t, width, keyCols, maps, g.base, g.changes, spillConfig{})
	if !g.invalid {
		if err != nil {
			t.Fatalf("in memory: %v", err)
		}
		if m := g.want(); !slices.Equal(want, m) {
			t.Fatalf("in memory: rows\n%s\nthe model\n%s", strings.Join(want, "\n"), strings.Join(m, "\n"))
		}
	}
	for _, sc := range configs {
		got, nulls, serr := reduceRows(t, width, keyCols, maps, g.base, g.changes, sc)
		switch {
		case (err == nil) != (serr == nil):
			t.Errorf("spilling (%+v): error %v, in memory: %v", sc, serr, err)
		case err == nil && !slices.Equal(got, want):
			t.Errorf("spilling (%+v): %d rows\n%s\nin memory %d\n%s", sc, len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
		case err == nil && !slices.Equal(nulls, wantNulls):
			t.Errorf("spilling (%+v): NULL columns %v, in memory %v", sc, nulls, wantNulls)
		}
	}
}

// Random streams of inserts, updates with and without key changes and
// unchanged TOAST values, deletes and truncates, keyed and keyless, give
// the same rows spilled as in memory.
func TestSpill_RandomStreams(t *testing.T) {
	small := append([]spillConfig{{budget: 2 << 10, mask: 15}}, spillConfigs...)
	// Spills of a few KiB: many of them, and candidates sorted in runs.
	large := []spillConfig{{budget: 2 << 10}, {budget: 8 << 10, mask: 7}, {budget: 64 << 10}}
	for _, keyed := range []bool{true, false} {
		for seed := range uint64(20) {
			name := fmt.Sprintf("keyed=%v/seed=%d", keyed, seed)
			t.Run(name, func(t *testing.T) {
				if seed%10 == 0 {
					checkStream(t, newStream(seed, keyed, 300, 3000), large)
					return
				}
				checkStream(t, newStream(seed, keyed, 20, 200), small)
			})
		}
	}
}

func FuzzSpill(f *testing.F) {
	f.Add(uint64(1), true, uint16(50), uint16(300), uint16(1), uint8(0))
	f.Add(uint64(2), false, uint16(50), uint16(300), uint16(1), uint8(3))
	f.Add(uint64(3), true, uint16(10), uint16(1000), uint16(4096), uint8(1))
	f.Fuzz(func(t *testing.T, seed uint64, keyed bool, nbase, n, budget uint16, mask uint8) {
		nbase, n = nbase%500+1, n%2000
		checkStream(t, newStream(seed, keyed, int(nbase), int(n)), []spillConfig{{budget: int64(budget) + 1, mask: uint64(mask)}})
	})
}

// The external sort gives every entry back, in order, from memory, from
// runs, and from more runs than are merged at once.
func TestSpill_Sorter(t *testing.T) {
	for _, n := range []int{0, 10, 500, 20000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(uint64(n), 1))
			s := newSorter(t.TempDir(), 4<<10)
			defer s.close()
			var want []string
			for range n {
				e := entry{h: rnd.Uint64() & 7, key: []byte(fmt.Sprint(rnd.IntN(n/2 + 1))), row: []byte(fmt.Sprint("r", rnd.IntN(9))), count: int64(rnd.IntN(5) - 2)}
				if err := s.add(&e); err != nil {
					t.Fatal(err)
				}
				want = append(want, fmt.Sprintf("%d %s %s %d", e.h, e.key, e.row, e.count))
			}
			if n == 20000 && len(s.runs) <= maxFanIn {
				t.Fatalf("%d runs: the test needs more than %d", len(s.runs), maxFanIn)
			}
			it, err := s.iter()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var last entry
			for {
				e, ok, err := it.next()
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				if len(got) > 0 && less(e.h, e.key, last.h, last.key) < 0 {
					t.Fatalf("entry %d (%d %s) before the one before it (%d %s)", len(got), e.h, e.key, last.h, last.key)
				}
				last = entry{h: e.h, key: append([]byte(nil), e.key...)}
				got = append(got, fmt.Sprintf("%d %s %s %d", e.h, e.key, e.row, e.count))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%d entries back, %d added, or they differ", len(got), len(want))
			}
		})
	}
}
