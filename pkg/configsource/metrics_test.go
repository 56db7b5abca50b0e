package configsource

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestSourcesShareMetricsApart: sources sharing one Metrics count under
// their own `source` label.
func TestSourcesShareMetricsApart(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	good := filepath.Join(t.TempDir(), "good")
	if err := os.WriteFile(good, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	load := func(path string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if string(b) == "bad" {
			return "", errors.New("bad config")
		}
		return string(b), nil
	}
	a := New[string](NewFile(good, time.Hour, load), Options[string]{Metrics: m, Name: "limits"})
	b := New[string](NewFile(good, time.Hour, load), Options[string]{Metrics: m, Name: "auth"})
	a.publish("x", nil)
	a.publish("y", nil)
	b.publish("", errors.New("bad"))
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "floodgate_config_reloads_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var src, res string
			for _, l := range mt.GetLabel() {
				switch l.GetName() {
				case "source":
					src = l.GetValue()
				case "result":
					res = l.GetValue()
				}
			}
			got[src+"/"+res] = mt.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"limits/success": 1, "limits/error": 0, "auth/success": 0, "auth/error": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("reloads %s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
