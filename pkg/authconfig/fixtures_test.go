package authconfig

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/pkg/descriptors"
)

// Fixtures under testdata/errors are one config error case each: an auth
// file, or a directory loaded as --auth-config (its keys files live in a
// keys/ subdirectory, which Load does not read as auth files). Comments in
// any YAML file of the fixture state what Load must report:
//
//	# want LINE: TEXT      a problem in this file at LINE whose text
//	                       ("FIELD: MSG") contains TEXT
//
// Load must report exactly the wanted problems, no more. Fixtures under
// testdata/valid must load.

var wantComment = regexp.MustCompile(`^#\s*want (\d+): (.*)$`)

type wantProblem struct {
	file string
	line int
	text string
}

func fixtureExpectations(t *testing.T, path string) []wantProblem {
	t.Helper()
	var wants []wantProblem
	err := filepath.WalkDir(path, func(file string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isYAMLName(file) {
			return err
		}
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if m := wantComment.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
				n, _ := strconv.Atoi(m[1])
				wants = append(wants, wantProblem{file: file, line: n, text: m[2]})
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return wants
}

func fixtures(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() || isYAMLName(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	if len(out) == 0 {
		t.Fatalf("no fixtures in %s", dir)
	}
	return out
}

func TestErrorFixtures(t *testing.T) {
	t.Parallel()
	for _, path := range fixtures(t, filepath.Join("testdata", "errors")) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			wants := fixtureExpectations(t, path)
			if len(wants) == 0 {
				t.Fatalf("fixture has no '# want LINE: TEXT' comment")
			}
			cfg, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded (%s), want problems %v", cfg.Summary(), wants)
			}
			var got descriptors.Problems
			if !errors.As(err, &got) {
				t.Fatalf("Load error is %T, want Problems: %v", err, err)
			}
			checkProblems(t, got, wants)
		})
	}
}

// checkProblems matches each wanted problem to a distinct problem got.
func checkProblems(t *testing.T, got descriptors.Problems, wants []wantProblem) {
	t.Helper()
	used := make([]bool, len(got))
	for _, w := range wants {
		found := false
		for i, p := range got {
			text := p.Msg
			if p.Field != "" {
				text = p.Field + ": " + p.Msg
			}
			if !used[i] && p.File == w.file && p.Line == w.line && strings.Contains(text, w.text) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing problem %s:%d: …%s…", w.file, w.line, w.text)
		}
	}
	for i, p := range got {
		if !used[i] {
			t.Errorf("unexpected problem: %v", p)
		}
	}
	if t.Failed() {
		t.Logf("all problems:\n%v", got)
	}
}

func TestValidFixtures(t *testing.T) {
	t.Parallel()
	for _, path := range fixtures(t, filepath.Join("testdata", "valid")) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			if _, err := Load(path); err != nil {
				t.Fatalf("Load: %v", err)
			}
		})
	}
}
