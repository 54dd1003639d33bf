package pgtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBinDir creates dir with empty executables named like the server
// programs.
func fakeBinDir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"postgres", "initdb", "pg_ctl"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// checkFinds checks that searchBinDir, given debianPattern, finds want.
func checkFinds(t *testing.T, debianPattern, want string) {
	t.Helper()
	got, err := searchBinDir(debianPattern)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("searchBinDir = %s, want %s", got, want)
	}
}

func TestSearchBinDir(t *testing.T) {
	// With an empty PATH neither postgres nor pg_config is found there,
	// which leaves the search to the Debian-style directories.
	t.Setenv("PATH", t.TempDir())
	t.Setenv(binDirEnv, "")

	t.Run("NothingFound", func(t *testing.T) {
		_, err := searchBinDir(filepath.Join(t.TempDir(), "*", "bin"))
		if err == nil || !strings.Contains(err.Error(), `"make deps"`) {
			t.Fatalf("error = %v, want one naming \"make deps\"", err)
		}
	})

	t.Run("NewestDebianVersion", func(t *testing.T) {
		root := t.TempDir()
		for _, v := range []string{"9.6", "10", "15", "16"} {
			fakeBinDir(t, filepath.Join(root, v, "bin"))
		}
		// Incomplete installations are passed over.
		if err := os.Remove(filepath.Join(root, "16", "bin", "initdb")); err != nil {
			t.Fatal(err)
		}
		checkFinds(t, filepath.Join(root, "*", "bin"), filepath.Join(root, "15", "bin"))
	})

	t.Run("Path", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "bin")
		fakeBinDir(t, dir)
		t.Setenv("PATH", dir)
		checkFinds(t, filepath.Join(t.TempDir(), "*", "bin"), dir)
	})

	t.Run("PathSymlink", func(t *testing.T) {
		// As in /usr/local/bin/postgres -> /usr/lib/postgresql/15/bin/postgres.
		dir := filepath.Join(t.TempDir(), "bin")
		fakeBinDir(t, dir)
		links := t.TempDir()
		if err := os.Symlink(filepath.Join(dir, "postgres"), filepath.Join(links, "postgres")); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", links)
		checkFinds(t, filepath.Join(t.TempDir(), "*", "bin"), dir)
	})

	t.Run("Env", func(t *testing.T) {
		dir := t.TempDir()
		fakeBinDir(t, dir)
		t.Setenv(binDirEnv, dir)
		checkFinds(t, filepath.Join(t.TempDir(), "*", "bin"), dir)
	})

	t.Run("EnvIncomplete", func(t *testing.T) {
		// A wrong explicit choice is an error even when other binaries
		// would be found.
		root := t.TempDir()
		fakeBinDir(t, filepath.Join(root, "15", "bin"))
		t.Setenv(binDirEnv, t.TempDir())
		_, err := searchBinDir(filepath.Join(root, "*", "bin"))
		if err == nil || !strings.Contains(err.Error(), binDirEnv) {
			t.Fatalf("error = %v, want one naming %s", err, binDirEnv)
		}
	})
}

func TestDatabaseName(t *testing.T) {
	got := databaseName(7, "TestFoo/Sub-Test#01"+strings.Repeat("x", 100))
	if !strings.HasPrefix(got, "lbt_7_testfoo_sub_test_01x") {
		t.Errorf("databaseName = %q", got)
	}
	if len(got) > 63 {
		t.Errorf("databaseName is %d bytes, more than 63", len(got))
	}
}

func TestQuoteDSNValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/tmp/x", "/tmp/x"},
		{"", "''"},
		{"a b", "'a b'"},
		{`it's\`, `'it\'s\\'`},
	}
	for _, tt := range tests {
		if got := quoteDSNValue(tt.in); got != tt.want {
			t.Errorf("quoteDSNValue(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
