package sidecar_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/floodgate/floodgate/internal/yamlconf"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

// A breakage is one way a config file goes wrong, applied to the file at
// path (whose good content is good).
type breakage struct {
	name string
	// apply breaks the file; it returns false when the case cannot be
	// made here (permissions while running as root).
	apply func(t *testing.T, path, good string) bool
	// line: the error must name a line of the file (FILE:LINE).
	line bool
}

// bad returns a breakage that writes body over the file, atomically.
func bad(name, body string, line bool) breakage {
	return breakage{name: name, line: line, apply: func(t *testing.T, path, _ string) bool {
		writeFile(t, path, body)
		return true
	}}
}

// commonBreakages are the breakages every file source meets; content
// breakages are given per source.
var commonBreakages = []breakage{
	{name: "truncated mid-write", apply: func(t *testing.T, path, good string) bool {
		// What a reader sees of a file written in place: a prefix, cut
		// mid-line. (Written here atomically, so that the poll sees one
		// change.)
		writeFile(t, path, good[:len(good)*2/3])
		return true
	}},
	bad("empty", "", false),
	{name: "replaced by a directory", apply: func(t *testing.T, path, _ string) bool {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(path, 0o755); err != nil {
			t.Fatal(err)
		}
		return true
	}},
	{name: "removed", apply: func(t *testing.T, path, _ string) bool {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		return true
	}},
	{name: "permission denied", apply: func(t *testing.T, path, _ string) bool {
		if os.Geteuid() == 0 {
			return false
		}
		if err := os.Chmod(path, 0); err != nil {
			t.Fatal(err)
		}
		return true
	}},
	{name: "huge", apply: func(t *testing.T, path, good string) bool {
		// Valid YAML up to a long comment: only its size is wrong.
		body := good + "# " + strings.Repeat("x", yamlconf.MaxFileSize) + "\n"
		writeFile(t, path, body)
		return true
	}},
}

// A brokenSource is a config source of the sidecar, set up in a directory
// with good files, and the file of it that the cases break.
type brokenSource struct {
	name   string            // the metric's source label and ConfigInForce's name
	files  map[string]string // name in the directory -> good content
	target string            // the file broken
	args   func(dir string) []string
	// content are the breakages of the file's content (invalid YAML, a
	// wrong field type, an unknown field), which name a line.
	content []breakage
	// gone lists the breakages that are no error, at start or on reload,
	// and why: the config loads without the file.
	gone map[string]string
}

func goodJWKS(t *testing.T) string {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	jk, err := jwk.Import(&ec.PublicKey)
	must(t, err)
	must(t, jk.Set(jwk.KeyIDKey, "ec-1"))
	set := jwk.NewSet()
	must(t, set.AddKey(jk))
	b, err := json.Marshal(set)
	must(t, err)
	return string(b)
}

func brokenSources(t *testing.T) []brokenSource {
	limits := limitConfig("a", 7)
	authFiles := func() map[string]string {
		return map[string]string{
			"limits.yaml": limits,
			"auth.yaml":   fmt.Sprintf(realAuth, "a"),
			"keys.yaml":   keysFile(map[string]string{"k-1": "fg_first-key-0123456789abcdefghijklmnop"}),
			"jwks.json":   goodJWKS(t),
		}
	}
	authArgs := func(dir string) []string {
		return []string{"--config=" + filepath.Join(dir, "limits.yaml"), "--auth-config=" + filepath.Join(dir, "auth.yaml")}
	}
	limitsContent := []breakage{
		bad("invalid YAML", "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 7\n", true),
		bad("wrong field type", "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: lots}\n", true),
		bad("unknown field", "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 7, burts: 3}\n", true),
	}
	return []brokenSource{
		{
			name: "limits", files: map[string]string{"a.yaml": limits}, target: "a.yaml",
			args:    func(dir string) []string { return []string{"--config=" + filepath.Join(dir, "a.yaml")} },
			content: limitsContent,
			gone:    map[string]string{"replaced by a directory": "--config may name a directory: an empty one has no domain"},
		},
		{
			name: "limits", files: map[string]string{"a.yaml": limits, "b.yaml": limitConfig("b", 5)}, target: "a.yaml",
			args:    func(dir string) []string { return []string{"--config=" + dir} },
			content: limitsContent,
			gone: map[string]string{
				"removed":                 "a directory's domains are its files: without a.yaml, domain a is gone",
				"replaced by a directory": "subdirectories are not read: without a.yaml, domain a is gone",
			},
		},
		{
			name: "auth", files: authFiles(), target: "auth.yaml", args: authArgs,
			gone: map[string]string{"replaced by a directory": "--auth-config may name a directory: an empty one has no policies"},
			content: []breakage{
				bad("invalid YAML", "api_keys:\n  files: [keys.yaml\npolicies: []\n", true),
				bad("wrong field type", strings.Replace(fmt.Sprintf(realAuth, "a"), "requests_per_unit: 5", "requests_per_unit: five", 1), true),
				bad("unknown field", strings.Replace(fmt.Sprintf(realAuth, "a"), "auth: any", "auth: any\n    authz: all", 1), true),
			},
		},
		{
			name: "auth", files: authFiles(), target: "keys.yaml", args: authArgs,
			content: []breakage{
				bad("invalid YAML", "keys:\n  - {id: k-1, sha256: abc\n", true),
				bad("wrong field type", "keys:\n  - {id: k-1, sha256: "+strings.Repeat("ab", 32)+", tenant: acme, tier: pro, expires: soon}\n", true),
				bad("unknown field", "keys:\n  - {id: k-1, sha256: "+strings.Repeat("ab", 32)+", tenant: acme, tier: pro, secret: x}\n", true),
			},
		},
		{
			name: "auth", files: authFiles(), target: "jwks.json", args: authArgs,
			content: []breakage{
				bad("invalid YAML", `{"keys": [`, false),
				bad("wrong field type", `{"keys": "none"}`, false),
				bad("unknown field", `{"keys": [{"kty": "XX", "kid": "x"}]}`, false),
			},
		},
		{
			name: "cache", files: map[string]string{"limits.yaml": limits, "cache.yaml": cacheRules}, target: "cache.yaml",
			args: func(dir string) []string {
				return []string{"--config=" + filepath.Join(dir, "limits.yaml"), "--cache-config=" + filepath.Join(dir, "cache.yaml")}
			},
			content: []breakage{
				bad("invalid YAML", "rules:\n  - name: catalog\n    match: {path_prefix: /v1/catalog/\n", true),
				bad("wrong field type", "rules:\n  - name: catalog\n    match: {path_prefix: /v1/catalog/}\n    ttl: soon\n", true),
				bad("unknown field", "rules:\n  - name: catalog\n    match: {path_prefix: /v1/catalog/}\n    ttl: 60s\n    tll: 5s\n", true),
			},
		},
	}
}

// startErr starts a sidecar with args and returns its start-up error.
func startErr(t *testing.T, args []string) error {
	t.Helper()
	s, err := sidecar.ParseSettings(append([]string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"}, args...), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := sidecar.New(s, slog.New(slog.DiscardHandler))
	err = m.Start(context.Background())
	if err == nil {
		m.Shutdown()
	}
	return err
}

// remaining takes one hit of a=k:v and returns what remains of its limit.
func (r *running) remaining(t *testing.T) uint32 {
	t.Helper()
	resp, err := r.rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
		Domain:      "a",
		Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}},
	})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp.Statuses[0].GetLimitRemaining()
}

// metric reads one sample of the sidecar's /metrics, 0 when absent.
func (r *running) metric(t *testing.T, series string) string {
	t.Helper()
	_, body := httpGet(t, "http://"+r.main.HTTPAddr()+"/metrics")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return "0"
}

var fileLine = regexp.MustCompile(`:\d+:`)

// TestBrokenConfig breaks each file of each config source in each way,
// before start-up and then on a hot reload. At start the process fails
// with an error naming the file (and the line, for a content error),
// unless the source says why it starts. On reload the config in force
// stays (the same pointer), a's counter goes on counting, the error is
// logged once and counted in floodgate_config_reloads_total, /readyz
// stays ready; and the good file put back reloads, with a's counter
// still going on.
func TestBrokenConfig(t *testing.T) {
	for _, src := range brokenSources(t) {
		cases := append(append([]breakage(nil), src.content...), commonBreakages...)
		for _, bk := range cases {
			t.Run(src.name+"/"+src.target+"/"+bk.name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				for name, body := range src.files {
					writeFile(t, filepath.Join(dir, name), body)
				}
				target := filepath.Join(dir, src.target)
				good := src.files[src.target]
				if !bk.apply(t, target, good) {
					t.Skip("running as root: permissions do not deny root")
				}

				// Start-up.
				err := startErr(t, src.args(dir))
				why, gone := src.gone[bk.name]
				switch {
				case gone:
					if err != nil {
						t.Errorf("start: %v; want it to start (%s)", err, why)
					}
				case err == nil:
					t.Errorf("start succeeded with %s %s", src.target, bk.name)
				case !strings.Contains(err.Error(), target):
					t.Errorf("start: %v; want the error to name %s", err, target)
				case bk.line && !fileLine.MatchString(err.Error()[strings.Index(err.Error(), target)+len(target):]):
					t.Errorf("start: %v; want FILE:LINE", err)
				}
				t.Logf("start: %v", err)

				// Hot reload: start good, count, break, count on.
				restore(t, target, good)
				r := start(t, src.args(dir)...)
				before := sidecar.ConfigInForce(r.main, src.name)
				if before == nil {
					t.Fatalf("no %s config in force", src.name)
				}
				if got := r.remaining(t); got != 6 {
					t.Fatalf("first hit: %d remaining, want 6", got)
				}
				errSeries := `floodgate_config_reloads_total{result="error",source="` + src.name + `"}`
				okSeries := `floodgate_config_reloads_total{result="success",source="` + src.name + `"}`
				if !bk.apply(t, target, good) {
					t.Fatal("could not break the file a second time")
				}
				if gone {
					eventually(t, "the reload without "+src.target, func() bool { return r.metric(t, okSeries) == "1" })
				} else {
					eventually(t, "the reload error counted", func() bool { return r.metric(t, errSeries) != "0" })
				}
				for i := 0; i < 5; i++ {
					r.remaining(t)
				}
				// Let the watcher poll a few more times (--reload-interval=20ms):
				// an unchanged broken file is not reloaded, logged nor counted
				// again.
				waitPolls(r)
				if !gone {
					// One error per change: one, or two for a breakage made in
					// two steps (removed, then a directory made) that a poll
					// may see between; and no more at later polls.
					most := "1"
					if bk.name == "replaced by a directory" {
						most = "2"
					}
					n := r.metric(t, errSeries)
					if n > most {
						t.Errorf("%s = %s, want at most %s (one error per change)", errSeries, n, most)
					}
					if logged := strings.Count(r.logs.String(), "config reload failed"); itoa(logged) != n {
						t.Errorf("%d reload failures logged, %s counted:\n%s", logged, n, r.logs)
					}
					waitPolls(r)
					if again := r.metric(t, errSeries); again != n {
						t.Errorf("%s went from %s to %s while the file stayed broken", errSeries, n, again)
					}
					if sidecar.ConfigInForce(r.main, src.name) != before {
						t.Error("the config in force changed after a failed reload")
					}
				}
				keepsCount := !gone || src.name != "limits"
				if got := r.remaining(t); keepsCount && got != 0 {
					t.Errorf("after 7 hits across the breakage: %d remaining, want 0", got)
				}
				if code, _ := httpGet(t, "http://"+r.main.HTTPAddr()+"/readyz"); code != 200 {
					t.Errorf("/readyz %d after the breakage, want 200", code)
				}

				// The good file back: a good reload that keeps the rule keeps
				// the count.
				restore(t, target, good)
				wantOK := 1
				if gone {
					wantOK = 2
				}
				// At least that: while a config is broken every poll tries it
				// again (a file it names may appear at any time), so a poll
				// that lands inside the restoring write may load the good
				// file and then reload it once more for the change it saw.
				eventuallyOr(t, "the good reload", func() bool {
					n, err := strconv.Atoi(r.metric(t, okSeries))
					return err == nil && n >= wantOK
				}, func() string {
					return fmt.Sprintf("%s = %s, %s = %s; logs:\n%s", okSeries, r.metric(t, okSeries), errSeries, r.metric(t, errSeries), r.logs)
				})
				if got := r.remaining(t); keepsCount && got != 0 {
					t.Errorf("after a good reload that keeps the rule: %d remaining, want 0 (the count goes on)", got)
				}
				if code, _ := httpGet(t, "http://"+r.main.HTTPAddr()+"/readyz"); code != 200 {
					t.Errorf("/readyz %d after the fix, want 200", code)
				}
			})
		}
	}
}

// restore puts a broken file back as it was: a directory or a mode 0
// file replaced, the good content written atomically.
func restore(t *testing.T, path, good string) {
	t.Helper()
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		if err := os.RemoveAll(path); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, path, good)
}

// waitPolls lets the file watcher poll several times (the reload interval
// is 20 ms); it asserts no duration.
func waitPolls(*running) { time.Sleep(300 * time.Millisecond) }

// eventuallyOr is eventually, saying more when it times out.
func eventuallyOr(t *testing.T, what string, cond func() bool, more func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, more())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
