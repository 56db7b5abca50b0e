package cacheconfig

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/yamlconf"
)

// Fixtures under testdata/errors are one config error case each. Comments
// in the file state what Load must report:
//
//	# want LINE: TEXT      a problem at LINE whose text ("FIELD: MSG")
//	                       contains TEXT
//
// Load must report exactly the wanted problems, no more. Fixtures under
// testdata/valid must load.

var wantComment = regexp.MustCompile(`^#\s*want (\d+): (.*)$`)

type wantProblem struct {
	line int
	text string
}

func fixtureExpectations(t *testing.T, path string) []wantProblem {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wants []wantProblem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := wantComment.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			n, _ := strconv.Atoi(m[1])
			wants = append(wants, wantProblem{line: n, text: m[2]})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return wants
}

func fixtures(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures in %s (%v)", dir, err)
	}
	return paths
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
			var got yamlconf.Problems
			if !errors.As(err, &got) {
				t.Fatalf("Load error is %T, want Problems: %v", err, err)
			}
			checkProblems(t, path, got, wants)
		})
	}
}

// checkProblems matches each wanted problem to a distinct problem got.
func checkProblems(t *testing.T, file string, got yamlconf.Problems, wants []wantProblem) {
	t.Helper()
	used := make([]bool, len(got))
	for _, w := range wants {
		found := false
		for i, p := range got {
			text := p.Msg
			if p.Field != "" {
				text = p.Field + ": " + p.Msg
			}
			if !used[i] && p.File == file && p.Line == w.line && strings.Contains(text, w.text) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing problem %s:%d: …%s…", file, w.line, w.text)
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
