package catalog

import (
	"fmt"
	"testing"
)

func TestParseDataSubset(t *testing.T) {
	cases := []struct {
		in   string
		want DataSubset
		ok   bool
	}{
		{"10%", DataSubset{Fraction: 0.1}, true},
		{"100%", DataSubset{Fraction: 1}, true},
		{"2/7", DataSubset{Part: 2, Parts: 7}, true},
		{"1/1", DataSubset{Part: 1, Parts: 1}, true},
		{"0%", DataSubset{}, false},
		{"101%", DataSubset{}, false},
		{"0/3", DataSubset{}, false},
		{"4/3", DataSubset{}, false},
		{"x/3", DataSubset{}, false},
		{"3", DataSubset{}, false},
		{"", DataSubset{}, false},
	}
	for _, tc := range cases {
		got, err := ParseDataSubset(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseDataSubset(%q) = %+v, %v; want %+v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// The parts of n/t cover every file exactly once.
func TestDataSubset_PartsCoverEveryFileOnce(t *testing.T) {
	const parts = 7
	for i := 0; i < 500; i++ {
		name := fmt.Sprintf("segments/%08d.lbs", i)
		n := 0
		for p := 1; p <= parts; p++ {
			d := DataSubset{Part: p, Parts: parts}
			if d.picks(name) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s is in %d of the %d parts", name, n, parts)
		}
	}
}
