package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// binDirEnv names the environment variable that chooses the PostgreSQL
// binaries explicitly.
const binDirEnv = "LBT_PG_BINDIR"

// findBinDir returns the directory of the PostgreSQL server programs. It
// looks in $LBT_PG_BINDIR, then in PATH, then where pg_config says, then in
// Debian's /usr/lib/postgresql/<version>/bin, newest version first.
func findBinDir() (string, error) {
	return searchBinDir("/usr/lib/postgresql/*/bin")
}

// searchBinDir is findBinDir with the pattern of the Debian directories as
// a parameter, for tests.
func searchBinDir(debianPattern string) (string, error) {
	if dir := os.Getenv(binDirEnv); dir != "" {
		// An explicit choice that does not work is an error, not a
		// reason to quietly test against some other version.
		if missing := missingPrograms(dir); missing != "" {
			return "", fmt.Errorf("%s=%s lacks %s: point it at the bin directory of a PostgreSQL installation, or unset it to search PATH, pg_config and /usr/lib/postgresql (run \"make deps\" to install PostgreSQL)", binDirEnv, dir, missing)
		}
		return dir, nil
	}

	// Symbolic links in PATH, such as /usr/local/bin/postgres pointing to
	// /usr/lib/postgresql/15/bin/postgres, lead to the directory that also
	// holds the client programs.
	if path, err := exec.LookPath("postgres"); err == nil {
		if path, err := filepath.EvalSymlinks(path); err == nil {
			if dir := filepath.Dir(path); missingPrograms(dir) == "" {
				return dir, nil
			}
		}
	}

	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" && missingPrograms(dir) == "" {
			return dir, nil
		}
	}

	dirs, _ := filepath.Glob(debianPattern)
	sort.Slice(dirs, func(i, j int) bool {
		return debianVersion(dirs[i]) > debianVersion(dirs[j])
	})
	for _, dir := range dirs {
		if missingPrograms(dir) == "" {
			return dir, nil
		}
	}

	return "", fmt.Errorf("no PostgreSQL server binaries (postgres, initdb, pg_ctl) found in $%s, PATH, pg_config --bindir or %s: run \"make deps\" to install PostgreSQL, or set %s to their directory",
		binDirEnv, debianPattern, binDirEnv)
}

// missingPrograms returns the programs a cluster needs that dir lacks, or "".
func missingPrograms(dir string) string {
	var missing []string
	for _, name := range []string{"postgres", "initdb", "pg_ctl"} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	return strings.Join(missing, ", ")
}

// debianVersion returns the version in /usr/lib/postgresql/<version>/bin as
// a number that orders like the version: 9.6 before 10 before 15.
func debianVersion(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}
