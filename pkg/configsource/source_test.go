package configsource_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/pkg/configsource"
)

// loadInt is a Loader of the simplest config: a file holding one number.
func loadInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s:1: %w", path, err)
	}
	return n, nil
}

// writeFile replaces path's content atomically (written beside, renamed
// over), as editors and the kubelet do.
func writeFile(t *testing.T, path, body string) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds, failing after a generous bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// received records what a subscriber was given.
type received struct {
	mu   sync.Mutex
	cfgs []int
}

func (r *received) add(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfgs = append(r.cfgs, n)
}

func (r *received) last() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cfgs) == 0 {
		return -1
	}
	return r.cfgs[len(r.cfgs)-1]
}

// run starts src.Run and stops it at the end of the test.
func run[T any](t *testing.T, src *configsource.Source[T]) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestFileReloadsAndKeepsTheConfigOnError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "n")
	writeFile(t, path, "1")
	reg := prometheus.NewRegistry()
	m := configsource.NewMetrics(reg)
	src := configsource.New(configsource.NewFile(path, 5*time.Millisecond, loadInt), configsource.Options[int]{Metrics: m})
	var got received
	src.Subscribe(got.add)
	if err := src.Load(); err != nil {
		t.Fatal(err)
	}
	if got.last() != 1 || src.Snapshot().Config != 1 || !src.Snapshot().Loaded {
		t.Fatalf("after Load: subscriber %d, snapshot %+v; want 1", got.last(), src.Snapshot())
	}
	run(t, src)

	writeFile(t, path, "2")
	eventually(t, "the edited config", func() bool { return got.last() == 2 })
	writeFile(t, path, "two")
	eventually(t, "the reload error", func() bool { return src.Snapshot().Err != nil })
	if snap := src.Snapshot(); snap.Config != 2 || !strings.Contains(snap.Err.Error(), path+":1:") {
		t.Errorf("after a bad edit: %+v, want config 2 and an error naming %s:1", snap, path)
	}
	if st := src.Status(); st.Path != path || st.Config != 2 || !strings.Contains(st.LastReloadError, "invalid syntax") {
		t.Errorf("status %+v", st)
	}
	writeFile(t, path, "3")
	eventually(t, "the fixed config", func() bool { return got.last() == 3 })
	if err := src.Snapshot().Err; err != nil {
		t.Errorf("a good reload leaves the error %v", err)
	}

	for result, want := range map[string]float64{"success": 2, "error": 1} {
		if got := reloads(t, reg, result); got != want {
			t.Errorf("reloads{result=%q} = %v, want %v", result, got, want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "floodgate_config_last_reload_success_timestamp_seconds" {
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v < float64(time.Now().Add(-time.Minute).Unix()) {
				t.Errorf("last success at %v, want about now", v)
			}
		}
	}
}

func TestLoadFailsOnABadConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "n")
	writeFile(t, path, "x")
	src := configsource.New(configsource.NewFile(path, time.Hour, loadInt), configsource.Options[int]{})
	if err := src.Load(); err == nil || !strings.Contains(err.Error(), path+":1:") {
		t.Fatalf("Load: %v, want an error naming %s:1", err, path)
	}
	if snap := src.Snapshot(); snap.Loaded || snap.Err != nil {
		t.Errorf("a failed Load published %+v", snap)
	}
}

// TestWatchWithoutLoad: a watcher that is not asked to Load first (as an
// xDS stream never is) publishes its first config through Run, and that
// first config counts as a load, not a reload.
func TestWatchWithoutLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "n")
	writeFile(t, path, "5")
	reg := prometheus.NewRegistry()
	src := configsource.New(configsource.NewFile(path, time.Hour, loadInt), configsource.Options[int]{Metrics: configsource.NewMetrics(reg)})
	var got received
	src.Subscribe(got.add)
	if src.Snapshot().Loaded || src.Status().Config != nil {
		t.Fatalf("before Run: %+v", src.Snapshot())
	}
	run(t, src)
	eventually(t, "the first config", func() bool { return got.last() == 5 })
	if n := reloads(t, reg, "success"); n != 0 {
		t.Errorf("the first config counted as %v reloads, want 0", n)
	}
}

// TestSubscribeLate: a subscriber that comes after the first config gets it
// at once.
func TestSubscribeLate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "n")
	writeFile(t, path, "4")
	src := configsource.New(configsource.NewFile(path, time.Hour, loadInt), configsource.Options[int]{})
	if err := src.Load(); err != nil {
		t.Fatal(err)
	}
	var got received
	src.Subscribe(got.add)
	if got.last() != 4 {
		t.Errorf("late subscriber got %d, want 4", got.last())
	}
}

// TestConfigMapSymlinkSwap reproduces how the kubelet updates a mounted
// ConfigMap: files are links into ..data, and ..data is swapped atomically.
// Name, size and time of the link named by --config do not change, so only
// the ..data target tells.
func TestConfigMapSymlinkSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for v, body := range map[string]string{"..v1": "10", "..v2": "20"} {
		must(t, os.Mkdir(filepath.Join(dir, v), 0o755))
		writeFile(t, filepath.Join(dir, v, "n"), body)
	}
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(t, os.Symlink(filepath.Join("..data", "n"), filepath.Join(dir, "n")))
	loadDir := func(path string) (int, error) { return loadInt(filepath.Join(path, "n")) }
	src := configsource.New(configsource.NewFile(dir, 5*time.Millisecond, loadDir), configsource.Options[int]{})
	must(t, src.Load())
	run(t, src)
	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	eventually(t, "the swapped ConfigMap", func() bool { return src.Snapshot().Config == 20 })
}

// TestStatusWhileALoadIsHeld: /debug/config answers, with the config in
// force, while a reload is stuck in its loader.
func TestStatusWhileALoadIsHeld(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "n")
	writeFile(t, path, "1")
	entered, release := make(chan struct{}), make(chan struct{})
	load := func(p string) (int, error) {
		n, err := loadInt(p)
		if n == 2 {
			close(entered)
			<-release
		}
		return n, err
	}
	src := configsource.New(configsource.NewFile(path, 5*time.Millisecond, load), configsource.Options[int]{
		Describe: func(n int) any { return map[string]int{"n": n} },
	})
	must(t, src.Load())
	run(t, src)
	srv := httptest.NewServer(configsource.Handler(src.Status))
	defer srv.Close()

	writeFile(t, path, "2")
	<-entered
	// The loader now holds the reload. Each answer must come while it does.
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 3; i++ {
		resp, err := client.Get(srv.URL)
		if err != nil {
			close(release)
			t.Fatalf("GET /debug/config while a load is held: %v", err)
		}
		var st struct {
			Path   string         `json:"path"`
			Config map[string]int `json:"config"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || st.Path != path || st.Config["n"] != 1 {
			t.Errorf("while held: %+v (%v), want path %s and the config in force, n=1", st, err, path)
		}
	}
	close(release)
	eventually(t, "the held config once released", func() bool { return src.Snapshot().Config == 2 })
}

// TestPublishOrder: a subscriber has a config before the snapshot shows it.
func TestPublishOrder(t *testing.T) {
	t.Parallel()
	w := &chanWatcher{ch: make(chan result)}
	src := configsource.New[int](w, configsource.Options[int]{})
	var bad []string
	src.Subscribe(func(n int) {
		if src.Snapshot().Config == n {
			bad = append(bad, fmt.Sprint("snapshot showed ", n, " before the subscriber had it"))
		}
	})
	run(t, src)
	for n := 1; n <= 3; n++ {
		w.ch <- result{cfg: n}
	}
	w.ch <- result{err: errors.New("broken")}
	eventually(t, "the error", func() bool { return src.Snapshot().Err != nil })
	if len(bad) > 0 || src.Snapshot().Config != 3 {
		t.Errorf("%v; config %d, want 3", bad, src.Snapshot().Config)
	}
}

type result struct {
	cfg int
	err error
}

// chanWatcher publishes what the test sends it: a stand-in for an xDS
// stream.
type chanWatcher struct{ ch chan result }

func (w *chanWatcher) Origin() string { return "chan" }

func (w *chanWatcher) Watch(ctx context.Context, publish func(int, error)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-w.ch:
			publish(r.cfg, r.err)
		}
	}
}

// reloads is floodgate_config_reloads_total{result} in reg.
func reloads(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "floodgate_config_reloads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no floodgate_config_reloads_total{result=%q}", result)
	return 0
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
