// Package shareddata finds, for tests, the project's shared data: the
// directory shared/data kept beside a clone of the repository (../shared
// from the repository root), which holds files this repository does not
// ship, such as envoyproxy/ratelimit's config files for the compatibility
// suite.
//
// A clone without ../shared beside it (a new contributor's) still passes
// `make test`: the tests that need the data skip, each with one line. Under
// CI=true a missing directory fails the test instead, so CI cannot go green
// by skipping the compatibility suite.
package shareddata

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Env names a variable that, when set, is used as the shared data directory
// instead of <repository root>/../shared/data.
const Env = "FLOODGATE_SHARED_DATA"

// Dir returns the directory rel (slash-free path elements, relative to the
// shared data directory: <repository root>/../shared/data, or $FLOODGATE_SHARED_DATA).
// When that directory is missing, Dir skips the test with one line, or fails
// it when CI is true or $FLOODGATE_SHARED_DATA was set explicitly.
func Dir(t testing.TB, rel ...string) string {
	t.Helper()
	dir, ok := locate(t, rel)
	if !ok {
		t.Skipf("../shared not found: compatibility files are not beside this clone (no %s)", dir)
	}
	return dir
}

// Lookup is Dir for optional data, such as fuzz seeds: when the directory
// is missing it returns false instead of skipping, so the caller goes on
// without it. Under CI=true, or with $FLOODGATE_SHARED_DATA set, a missing
// directory still fails the test.
func Lookup(t testing.TB, rel ...string) (string, bool) {
	t.Helper()
	return locate(t, rel)
}

// locate returns the directory rel and whether it exists; it fails t
// when a missing one is an error (CI, or an explicit $FLOODGATE_SHARED_DATA).
func locate(t testing.TB, rel []string) (string, bool) {
	t.Helper()
	base, explicit := os.Getenv(Env), true
	if base == "" {
		explicit = false
		root, err := repoRoot()
		if err != nil {
			t.Fatal(err)
		}
		base = filepath.Join(filepath.Dir(root), "shared", "data")
	}
	dir := filepath.Join(append([]string{base}, rel...)...)
	if info, err := os.Stat(dir); err == nil && info.IsDir() {
		return dir, true
	}
	switch {
	case explicit:
		t.Fatalf("%s=%s: %s is not a directory", Env, base, dir)
	case inCI():
		t.Fatalf("../shared not found: %s is missing, and CI=true requires the shared data beside the clone", dir)
	}
	return dir, false
}

// inCI reports whether $CI says this is a CI run (CI=true, as CI services set it).
func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// repoRoot returns the first directory at or above the working directory (a
// test's package directory) that holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errNoModule
		}
		dir = parent
	}
}

var errNoModule = errors.New("no go.mod above the test's directory: cannot find the repository root")
