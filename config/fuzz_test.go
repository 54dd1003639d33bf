package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeYAML: the config decoder never panics on any file, refuses
// with an error naming the file, and a configuration it accepts prints
// (Redacted, as --check-config does) to YAML that decodes to the same
// settings. The seeds are the sample files and a few hard cases; look for
// more with `go test ./config -run '^$' -fuzz FuzzDecodeYAML -fuzztime 3m`.
func FuzzDecodeYAML(f *testing.F) {
	for _, path := range []string{"testdata/lbt-sample.yaml", "testdata/lbt-test.yaml"} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "~", "[]", "archiveDir: /a\n", "archiveDir: /a\nretention: 1d12h\nrestoreMemory: 64MiB\n",
		"db:\n  host: h\n  port: 5433\n  runtimeParams:\n    search_path: a\n", "fsync: yes\n", "fsynk: true\n",
		"a: &x 1\nb: *x\n", "archiveDir: [1, 2]\n", "retention: -1d\n", "tables: [a, b]\n", "port: 99999999999999999999\n",
		"archiveDir: /a\narchiveDir: /b\n", "? [a]\n: b\n", "\t", "archiveDir: !!binary aGk=\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := decodeYAML(&c, "fuzz.yaml", data); err != nil {
			if !strings.HasPrefix(err.Error(), "config fuzz.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		c.Validate()
		c.normalize()
		if c.holdsPassword() {
			return // Redacted masks it: it cannot read back the same
		}
		c.TempDir = c.EffectiveTempDir()
		again := Default()
		if err := decodeYAML(&again, "again.yaml", []byte(c.Redacted())); err != nil {
			t.Fatalf("Redacted output does not decode: %v\n%s", err, c.Redacted())
		}
		again.normalize()
		c.warnings, again.warnings = nil, nil // of ignored keys, which Redacted leaves out
		if len(c.DB.RuntimeParams) == 0 && len(again.DB.RuntimeParams) == 0 {
			c.DB.RuntimeParams, again.DB.RuntimeParams = nil, nil // {} is printed for none
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("Redacted output decodes to other settings:\n%s\ngot  %+v\nwant %+v", c.Redacted(), again, c)
		}
	})
}
