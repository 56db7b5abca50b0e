package descriptors

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Fixtures under testdata/errors are one config error case each: a file, or
// a directory of files loaded together. Comments in them state what Load
// must report:
//
//	# want LINE: TEXT      a problem in this file at LINE whose text
//	                       ("FIELD: MSG") contains TEXT
//	# options: merge_domains
//
// Load must report exactly the wanted problems, no more. Fixtures under
// testdata/valid must load.

var (
	wantComment    = regexp.MustCompile(`^#\s*want (\d+): (.*)$`)
	optionsComment = regexp.MustCompile(`^#\s*options: (.*)$`)
)

type wantProblem struct {
	file string
	line int
	text string
}

// fixtureExpectations reads the want and options comments of a fixture
// file or of every YAML file in a fixture directory.
func fixtureExpectations(t *testing.T, path string) ([]wantProblem, Options) {
	t.Helper()
	files := []string{path}
	if info, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if info.IsDir() {
		files = nil
		entries, err := os.ReadDir(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if isYAMLName(e.Name()) {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	var wants []wantProblem
	var opts Options
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if m := wantComment.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[1])
				wants = append(wants, wantProblem{file: file, line: n, text: m[2]})
			}
			if m := optionsComment.FindStringSubmatch(line); m != nil {
				for _, o := range strings.Fields(m[1]) {
					switch o {
					case "merge_domains":
						opts.MergeDomains = true
					default:
						t.Fatalf("%s: unknown fixture option %q", file, o)
					}
				}
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return wants, opts
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
			wants, opts := fixtureExpectations(t, path)
			if len(wants) == 0 {
				t.Fatalf("fixture has no '# want LINE: TEXT' comment")
			}
			cfg, err := Load(path, opts)
			if err == nil {
				t.Fatalf("Load succeeded (%d domains), want problems %v", len(cfg.Domains()), wants)
			}
			var got Problems
			if !errors.As(err, &got) {
				t.Fatalf("Load error is %T, want Problems: %v", err, err)
			}
			checkProblems(t, got, wants)
		})
	}
}

// checkProblems matches each wanted problem to a distinct problem got.
func checkProblems(t *testing.T, got Problems, wants []wantProblem) {
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
			_, opts := fixtureExpectations(t, path)
			if _, err := Load(path, opts); err != nil {
				t.Fatalf("Load: %v", err)
			}
		})
	}
}

// The Error text of every problem is "FILE:LINE: FIELD: MSG", one per line,
// so that editors and CI can jump to it.
func TestProblemsErrorFormat(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join("testdata", "errors", "several_problems.yaml"), Options{})
	if err == nil {
		t.Fatal("Load succeeded")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`testdata/errors/several_problems.yaml:9: descriptors[0].rate_limit.unit: unknown unit "minutes"; allowed: second, minute, hour, day, week, month, year (any letter case)`,
		`testdata/errors/several_problems.yaml:12: descriptors[2].key: must not be empty`,
		`testdata/errors/several_problems.yaml:17: descriptors[3].rate_limit.requests_per_unit: must not be negative, found -3 (0 blocks every request)`,
		`testdata/errors/several_problems.yaml:19: descriptors[4].ratelimit: unknown field "ratelimit" in a descriptor (did you mean "rate_limit"?); allowed: key, value, rate_limit, descriptors, shadow_mode, quota_mode, detailed_metric, value_to_metric, share_threshold, metadata`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}
