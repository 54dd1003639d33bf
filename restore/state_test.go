package restore

import (
	"reflect"
	"testing"
)

func TestLineWriter(t *testing.T) {
	for _, c := range []struct {
		name   string
		chunks []string
		want   [][]Field
	}{
		{"one row", []string{"1\tx\n"}, [][]Field{{{Text: "1"}, {Text: "x"}}}},
		{"split across writes", []string{"1\t", "a\\tb", "\n2\t\\N\n"}, [][]Field{{{Text: "1"}, {Text: "a\tb"}}, {{Text: "2"}, {Null: true}}}},
		{"escapes and an empty string", []string{"3\t\n4\tline\\nbreak\\\\\n"}, [][]Field{{{Text: "3"}, {Text: ""}}, {{Text: "4"}, {Text: "line\nbreak\\"}}}},
	} {
		var got [][]Field
		w := &lineWriter{width: 2, fn: func(r []Field) error { got = append(got, r); return nil }}
		for _, ch := range c.chunks {
			if _, err := w.Write([]byte(ch)); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		if err := w.finish(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	w := &lineWriter{width: 2, fn: func([]Field) error { return nil }}
	if _, err := w.Write([]byte("1\t2\t3\n")); err == nil {
		t.Error("a row of 3 columns for 2: no error")
	}
}
