package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
)

// reloadConfig is a config whose probe limit the reload tests change; the
// client limit is high enough that the load never reaches it.
func reloadConfig(probe int) string {
	return fmt.Sprintf(`domain: reload
descriptors:
  - key: client
    rate_limit: {unit: hour, requests_per_unit: 1000000}
  - key: probe
    rate_limit: {unit: hour, requests_per_unit: %d, name: probe}
`, probe)
}

func entry(k, v string) *rlv3.RateLimitDescriptor {
	return &rlv3.RateLimitDescriptor{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: k, Value: v}}}
}

// reloadLoad keeps a few clients calling while the config changes.
func reloadLoad(sc *sidecar) *load {
	return startLoad(sc, loadOpts{
		workers: 3, maxCalls: 20000, maxTime: 60 * time.Second, pace: 2 * time.Millisecond,
		request: func(w, _ int) *rlsv3.RateLimitRequest {
			return &rlsv3.RateLimitRequest{Domain: "reload", Descriptors: []*rlv3.RateLimitDescriptor{entry("client", fmt.Sprint("w", w))}}
		},
	})
}

// probeLimit asks once with a fresh probe value (so nothing counted before
// matters) and returns the limit in force.
func probeLimit(sc *sidecar, seq *atomic.Int64) (uint32, error) {
	resp, err := sc.call(&rlsv3.RateLimitRequest{Domain: "reload", Descriptors: []*rlv3.RateLimitDescriptor{entry("probe", fmt.Sprint("p", seq.Add(1)))}})
	if err != nil {
		return 0, err
	}
	return resp.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit(), nil
}

// waitLimit polls until the probe limit in force is want.
func waitLimit(t *testing.T, sc *sidecar, seq *atomic.Int64, want uint32) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("probe limit %d in force", want), func() error {
		got, err := probeLimit(sc, seq)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("probe limit is %d", got)
		}
		return nil
	})
}

// enforced checks that a fresh probe value admits exactly n calls.
func enforced(t *testing.T, sc *sidecar, n int) {
	t.Helper()
	d := []*rlv3.RateLimitDescriptor{entry("probe", fmt.Sprintf("enforced-%d", n))}
	for i := 0; i <= n; i++ {
		resp, err := sc.call(&rlsv3.RateLimitRequest{Domain: "reload", Descriptors: d})
		if err != nil {
			t.Fatalf("enforcing %d: call %d: %v", n, i, err)
		}
		want := rlsv3.RateLimitResponse_OK
		if i == n {
			want = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		if got := resp.GetOverallCode(); got != want {
			t.Fatalf("enforcing %d: call %d: %s, want %s", n, i, got, want)
		}
	}
}

// checkLoad fails the test unless every call of the load got an answer.
func checkLoad(t *testing.T, l *load) {
	t.Helper()
	r := l.in(0)
	if r.total() == 0 {
		t.Fatal("the load sent no calls")
	}
	if r.codes[codes.OK] != r.total() || r.overLimit != 0 || r.decided != r.total() {
		t.Errorf("under reload, want every call answered OK with a limit: %s", r)
	}
	t.Logf("load during reloads: %s", r)
}

// TestReloadFileEdit edits the config file in place while clients call:
// the new limit takes effect without a failed call, a broken edit keeps the
// previous config serving (and says why), and fixing it reloads again.
func TestReloadFileEdit(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "limits.yaml", reloadConfig(3))
	sc := startSidecar(t, "sidecar", "--config", path, "--reload-interval", "50ms")
	l := reloadLoad(sc)
	defer l.stop()
	var seq atomic.Int64

	waitLimit(t, sc, &seq, 3)
	l.waitCalls(t, 0, 100, 10*time.Second)

	// os.WriteFile truncates then writes, as many editors do: the reloader
	// may see the empty file first, fail, and must then load the full one.
	writeFile(t, dir, "limits.yaml", reloadConfig(7))
	waitLimit(t, sc, &seq, 7)
	enforced(t, sc, 7)

	// A broken edit: the old config keeps serving; /debug/config says why.
	broken := strings.Replace(reloadConfig(9), "unit: hour, requests_per_unit: 9", "unit: fortnight, requests_per_unit: 9", 1)
	writeFile(t, dir, "limits.yaml", broken)
	// (A reload may also have failed on a half-written file earlier, so
	// wait for this error itself.)
	var lastErr string
	eventually(t, 10*time.Second, "the broken edit reported", func() error {
		var dbg struct {
			LastReloadError string `json:"last_reload_error"`
		}
		_, body, err := sc.get("/debug/config")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(body), &dbg); err != nil {
			return fmt.Errorf("/debug/config: %w: %s", err, body)
		}
		if !strings.Contains(dbg.LastReloadError, "fortnight") {
			return fmt.Errorf("last_reload_error %q", dbg.LastReloadError)
		}
		lastErr = dbg.LastReloadError
		return nil
	})
	if !strings.Contains(lastErr, "limits.yaml:6:") {
		t.Errorf("last_reload_error = %q, want it to name limits.yaml:6", lastErr)
	}
	if v := sc.mustMetric(`floodgate_config_reloads_total{result="error",source="limits"}`); v < 1 {
		t.Errorf("failed reloads = %v, want at least 1", v)
	}
	if got, err := probeLimit(sc, &seq); err != nil || got != 7 {
		t.Errorf("after a broken edit the probe limit is %d (%v), want 7 still", got, err)
	}

	writeFile(t, dir, "limits.yaml", reloadConfig(4))
	waitLimit(t, sc, &seq, 4)
	enforced(t, sc, 4)

	// The load went on after the last reload too.
	l.waitCalls(t, 0, l.in(0).total()+50, 10*time.Second)
	l.stop()
	checkLoad(t, l)
	if v := sc.mustMetric(`floodgate_config_reloads_total{result="success",source="limits"}`); v < 2 {
		t.Errorf("successful reloads = %v, want at least 2", v)
	}
}

// configMap lays out a directory as a Kubernetes ConfigMap volume does:
// each version in a hidden timestamped directory, ..data a symlink to the
// current one, and each file a symlink through ..data.
type configMap struct {
	t       *testing.T
	dir     string
	version int
}

func newConfigMap(t *testing.T, files map[string]string) *configMap {
	c := &configMap{t: t, dir: t.TempDir()}
	c.update(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(c.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// update writes a new version and swaps ..data to it atomically, by
// renaming a fresh symlink over it, as the kubelet does; the old version's
// directory is then removed.
func (c *configMap) update(files map[string]string) {
	c.t.Helper()
	old := ""
	if c.version > 0 {
		old = filepath.Join(c.dir, fmt.Sprintf("..2026_11_27_00_00_%02d.v%d", c.version, c.version))
	}
	c.version++
	vdir := fmt.Sprintf("..2026_11_27_00_00_%02d.v%d", c.version, c.version)
	if err := os.Mkdir(filepath.Join(c.dir, vdir), 0o755); err != nil {
		c.t.Fatal(err)
	}
	for name, content := range files {
		writeFile(c.t, filepath.Join(c.dir, vdir), name, content)
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(vdir, tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			c.t.Fatal(err)
		}
	}
}

// TestReloadConfigMapSwap mounts the config as a ConfigMap directory and
// swaps its ..data link while clients call: the new limit takes effect and
// no call fails.
func TestReloadConfigMapSwap(t *testing.T) {
	cm := newConfigMap(t, map[string]string{"limits.yaml": reloadConfig(3)})
	sc := startSidecar(t, "sidecar", "--config", cm.dir, "--reload-interval", "50ms")
	l := reloadLoad(sc)
	defer l.stop()
	var seq atomic.Int64

	waitLimit(t, sc, &seq, 3)
	l.waitCalls(t, 0, 100, 10*time.Second)

	cm.update(map[string]string{"limits.yaml": reloadConfig(6)})
	waitLimit(t, sc, &seq, 6)
	enforced(t, sc, 6)

	// A second swap, and one that adds a file (a new domain).
	cm.update(map[string]string{"limits.yaml": reloadConfig(2), "more.yaml": "domain: more\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 1}\n"})
	if err := os.Symlink(filepath.Join("..data", "more.yaml"), filepath.Join(cm.dir, "more.yaml")); err != nil {
		t.Fatal(err)
	}
	waitLimit(t, sc, &seq, 2)
	eventually(t, 10*time.Second, "domain more loaded", func() error {
		resp, err := sc.call(&rlsv3.RateLimitRequest{Domain: "more", Descriptors: []*rlv3.RateLimitDescriptor{entry("k", "x")}})
		if err != nil {
			return err
		}
		if resp.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit() != 1 {
			return fmt.Errorf("domain more not in force: %v", resp)
		}
		return nil
	})

	l.waitCalls(t, 0, l.in(0).total()+50, 10*time.Second)
	l.stop()
	checkLoad(t, l)
}
