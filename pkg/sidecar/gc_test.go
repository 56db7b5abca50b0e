package sidecar

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"268435456\n":         268435456,
		"max\n":               0,
		"9223372036854771712": 0, // cgroup v1's "unlimited"
		"":                    0,
		"-1":                  0,
		"12abc":               0,
		"  1073741824  \n":    1073741824,
	} {
		if got := parseMemoryLimit(in); got != want {
			t.Errorf("parseMemoryLimit(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestContainerMemoryLimitReadsFirstPresentFile(t *testing.T) {
	dir := t.TempDir()
	v2 := filepath.Join(dir, "memory.max")
	v1 := filepath.Join(dir, "memory.limit_in_bytes")
	if err := os.WriteFile(v1, []byte("1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := containerMemoryLimit([]string{v2, v1}); got != 1000 {
		t.Fatalf("v1 only: got %d, want 1000", got)
	}
	if err := os.WriteFile(v2, []byte("max\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := containerMemoryLimit([]string{v2, v1}); got != 0 {
		t.Fatalf("v2 says max: got %d, want 0 (v2 decides when present)", got)
	}
}

func TestTuneGCLeavesOperatorChoices(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	limitBefore := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(limitBefore)

	env := map[string]string{"GOGC": "150", "GOMEMLIMIT": "100MiB"}
	got := TuneGC(func(k string) string { return env[k] })
	if got != (GCTuning{}) {
		t.Fatalf("with GOGC and GOMEMLIMIT set, TuneGC set %+v", got)
	}
	if p := debug.SetGCPercent(100); p != 100 {
		t.Fatalf("GC percent changed to %d though GOGC is set", p)
	}

	got = TuneGC(func(string) string { return "" })
	if got.Percent != GCPercent {
		t.Fatalf("without GOGC: percent %d, want %d", got.Percent, GCPercent)
	}
	if p := debug.SetGCPercent(100); p != GCPercent {
		t.Fatalf("runtime GC percent is %d, want %d", p, GCPercent)
	}
}
