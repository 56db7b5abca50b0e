package shareddata

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB whose Skip and Fatal end only the goroutine that
// calls Dir, and record what was said.
type recorder struct {
	testing.TB
	outcome string // "", "skip" or "fatal"
	msg     string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) { r.end("skip", fmt.Sprintf(format, args...)) }
func (r *recorder) Skip(args ...any)                 { r.end("skip", fmt.Sprint(args...)) }
func (r *recorder) Fatal(args ...any)                { r.end("fatal", fmt.Sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.end("fatal", fmt.Sprintf(format, args...))
}

func (r *recorder) end(outcome, msg string) {
	r.outcome, r.msg = outcome, msg
	runtime.Goexit()
}

// call runs Dir on a recorder and returns what it returned or said.
func call(t *testing.T, rel ...string) (dir string, r *recorder) {
	r = &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		dir = Dir(r, rel...)
	}()
	<-done
	return dir, r
}

// clone lays out <tmp>/repo/pkg/x with a go.mod in repo, moves the test into
// pkg/x, and returns <tmp>.
func clone(t *testing.T) string {
	top := t.TempDir()
	pkg := filepath.Join(top, "repo", "pkg", "x")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "repo", "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(pkg)
	return top
}

func TestDir(t *testing.T) {
	for _, tc := range []struct {
		name       string
		withShared bool
		ci         string
		env        string // "" leaves FLOODGATE_SHARED_DATA unset; "data" points it at <tmp>/data
		outcome    string
		msg        string
	}{
		{name: "beside the clone", withShared: true, outcome: ""},
		{name: "beside the clone under CI", withShared: true, ci: "true", outcome: ""},
		{name: "missing", outcome: "skip", msg: "../shared not found: compatibility files are not beside this clone"},
		{name: "missing, CI=false", ci: "false", outcome: "skip", msg: "../shared not found"},
		{name: "missing under CI", ci: "true", outcome: "fatal", msg: "CI=true requires the shared data"},
		{name: "from the variable", env: "data", outcome: ""},
		{name: "variable names nothing", env: "nowhere", outcome: "fatal", msg: Env + "="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := clone(t)
			if tc.withShared {
				if err := os.MkdirAll(filepath.Join(top, "shared", "data", "suite"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("CI", tc.ci)
			t.Setenv(Env, "")
			want := filepath.Join(top, "shared", "data", "suite")
			if tc.env != "" {
				if err := os.MkdirAll(filepath.Join(top, "data", "suite"), 0o755); err != nil {
					t.Fatal(err)
				}
				t.Setenv(Env, filepath.Join(top, tc.env))
				want = filepath.Join(top, "data", "suite")
			}
			got, r := call(t, "suite")
			if r.outcome != tc.outcome || !strings.Contains(r.msg, tc.msg) {
				t.Fatalf("Dir: outcome %q %q, want %q containing %q", r.outcome, r.msg, tc.outcome, tc.msg)
			}
			if tc.outcome == "" && got != want {
				t.Errorf("Dir = %s, want %s", got, want)
			}
			if strings.Contains(r.msg, "\n") {
				t.Errorf("message is more than one line: %q", r.msg)
			}
		})
	}
}
