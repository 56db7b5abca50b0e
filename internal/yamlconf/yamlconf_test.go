package yamlconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parse reads data's top mapping with style: each field's value as a whole
// number from 0 to 10, and returns the problems.
func parse(t *testing.T, data string, style Style) string {
	t.Helper()
	var list ProblemList
	p := NewParser("f.yaml", []byte(data), &list, style)
	if root, ok := p.Root([]byte(data)); ok && root != nil {
		for _, f := range p.Fields(root, "", false) {
			p.Whole(f.Val, f.Name, 10, " (hint)")
		}
	}
	err := list.Result(map[string]int{"f.yaml": 0})
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestStyle checks the wordings a Style sets, which keep each loader's
// messages as they were.
func TestStyle(t *testing.T) {
	for _, tc := range []struct {
		data  string
		style Style
		want  string
	}{
		{"a: 1\n---\nb: 2\n", Style{SecondDocument: "one domain a file"},
			"f.yaml:3: invalid YAML: a second YAML document; one domain a file"},
		{"1: 2\n", Style{}, "f.yaml:1: field names must be strings, found \"1\""},
		{"1: 2\n", Style{KeyTag: true}, "f.yaml:1: field names must be strings, found \"1\" (int); quote it if it is meant as a name"},
		{"a: -0x10\n", Style{}, "f.yaml:1: a: must not be negative, found -16 (hint)"},
		{"a: -0x10\n", Style{NegativeAsWritten: true}, "f.yaml:1: a: must not be negative, found -0x10 (hint)"},
		{"a: -1.5\n", Style{}, "f.yaml:1: a: must not be negative, found -1.5 (hint)"},
		{"a: 11\nb: 2.5\nc: 10.0\na: 3\n", Style{},
			"f.yaml:1: a: must be a whole number from 0 to 10, found \"11\"\n" +
				"f.yaml:2: b: must be a whole number from 0 to 10, found \"2.5\"\n" +
				"f.yaml:4: a: given twice in one mapping (first at line 1)"},
	} {
		if got := parse(t, tc.data, tc.style); got != tc.want {
			t.Errorf("%q with %+v:\n got %s\nwant %s", tc.data, tc.style, got, tc.want)
		}
	}
}

func TestCheckFields(t *testing.T) {
	var list ProblemList
	data := []byte("naem: x\nunit: s\nother: 1\n")
	p := NewParser("f.yaml", data, &list, Style{})
	root, _ := p.Root(data)
	got := p.CheckFields(p.Fields(root, "r", false), "r", "a rule", []string{"name", "value"}, map[string]string{"unit": "rate_limit"})
	if !got["name"] || len(got) != 1 {
		t.Errorf("suggested %v, want name", got)
	}
	want := `f.yaml:1: r.naem: unknown field "naem" in a rule (did you mean "name"?); allowed: name, value` + "\n" +
		`f.yaml:2: r.unit: unknown field "unit" in a rule ("unit" belongs in rate_limit); allowed: name, value` + "\n" +
		`f.yaml:3: r.other: unknown field "other" in a rule; allowed: name, value`
	if err := list.Result(nil); err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestReadDir(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"b.yaml": "b: 1\n", "a.YML": "a: 1\n", ".c.yaml": "", "d.txt": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "e.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f.yaml"), make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		s := filepath.Base(f.Path) + "=" + strings.TrimSpace(string(f.Data))
		switch {
		case f.StatErr:
			s += " stat error"
		case errors.Is(f.Err, ErrTooLarge):
			s += " too large"
		case f.Err != nil:
			s += " " + f.Err.Error()
		}
		got = append(got, s)
	}
	want := "a.YML=a: 1, b.yaml=b: 1, e.yaml= stat error, f.yaml= too large"
	if strings.Join(got, ", ") != want {
		t.Errorf("got %s\nwant %s", strings.Join(got, ", "), want)
	}
}
