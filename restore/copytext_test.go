package restore

import (
	"bytes"
	"testing"
)

func TestCopyText_EscapeRoundTrip(t *testing.T) {
	for _, v := range []string{
		"", "plain", `back\slash`, "tab\there", "new\nline", "cr\rlf", "\b\f\v", `\N`, "ünïcödé", "a\\\t\nz",
	} {
		esc := appendEscaped(nil, []byte(v))
		if bytes.ContainsAny(esc, "\t\n\r") {
			t.Errorf("%q escaped to %q, which breaks the framing", v, esc)
		}
		if isNullField(esc) {
			t.Errorf("%q escaped to NULL", v)
		}
		got, err := unescapeField(nil, esc)
		if err != nil || string(got) != v {
			t.Errorf("%q -> %q -> %q, %v", v, esc, got, err)
		}
	}
}

func TestCopyText_Unescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{`a\tb`, "a\tb"},
		{`\101\x42\x4`, "AB\x04"},
		{`\q`, "q"},
		{`\\N`, `\N`},
	}
	for _, tt := range tests {
		got, err := unescapeField(nil, []byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("unescape %q = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := unescapeField(nil, []byte(`ends\`)); err == nil {
		t.Error("a trailing backslash must be an error")
	}
}

func TestCopyText_SplitFields(t *testing.T) {
	got := splitFields(nil, []byte("1\t\\N\t\ta\\tb"))
	want := []string{"1", `\N`, "", `a\tb`}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("field %d = %q, want %q", i, got[i], want[i])
		}
	}
	if !isNullField(got[1]) || isNullField(got[2]) {
		t.Error("NULL detection")
	}
}

func TestParseInt(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "42": 42, "-7": -7, "9223372036854775807": 9223372036854775807} {
		if v, ok := parseInt([]byte(in)); !ok || v != want {
			t.Errorf("parseInt(%q) = %d, %v", in, v, ok)
		}
	}
	for _, in := range []string{"", "-", "1.5", "abc", "12345678901234567890"} {
		if _, ok := parseInt([]byte(in)); ok {
			t.Errorf("parseInt(%q) accepted", in)
		}
	}
}

// FuzzCopyText_Unescape: unescapeField never panics on any field, and any
// value escaped by appendEscaped unescapes to itself and keeps the line's
// framing (no tab, newline or carriage return, never NULL's \N).
func FuzzCopyText_Unescape(f *testing.F) {
	for _, s := range []string{``, `a\tb`, `\101\x42\x4`, `\q`, `\\N`, `ends\`, `\x`, `\777`, `\xfg`, "tab\there", "\x00\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		unescapeField(nil, b)
		esc := appendEscaped(nil, b)
		if bytes.ContainsAny(esc, "\t\n\r") || isNullField(esc) {
			t.Fatalf("%q escaped to %q, which breaks the framing", b, esc)
		}
		got, err := unescapeField(nil, esc)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%q -> %q -> %q, %v", b, esc, got, err)
		}
		if fields := splitFields(nil, esc); len(fields) != 1 {
			t.Fatalf("%q escaped to %q, which splits into %d fields", b, esc, len(fields))
		}
	})
}
