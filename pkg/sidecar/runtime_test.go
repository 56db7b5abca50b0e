package sidecar

import (
	"os"
	"path/filepath"
	"runtime"
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

// cgroupTree writes files (path relative to a new root -> content) and
// returns the root and the path of a /proc/self/cgroup holding self.
func cgroupTree(t *testing.T, self string, files map[string]string) (root, selfPath string) {
	t.Helper()
	root = t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	selfPath = filepath.Join(t.TempDir(), "cgroup")
	if err := os.WriteFile(selfPath, []byte(self), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, selfPath
}

func TestCgroupLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		self  string
		files map[string]string
		mem   int64
		cpus  float64
	}{{
		name: "v2, namespaced (the container's cgroup is the mount's root)",
		self: "0::/\n",
		files: map[string]string{
			"memory.max": "268435456\n",
			"cpu.max":    "100000 100000\n",
		},
		mem: 268435456, cpus: 1,
	}, {
		name: "v2, the process's own cgroup below the root",
		self: "0::/kubepods/pod1/c1\n",
		files: map[string]string{
			"memory.max":                  "max\n",
			"cpu.max":                     "max 100000\n",
			"kubepods/pod1/c1/memory.max": "134217728\n",
			"kubepods/pod1/c1/cpu.max":    "50000 100000\n",
		},
		mem: 134217728, cpus: 0.5,
	}, {
		name:  "v2 without limits",
		self:  "0::/\n",
		files: map[string]string{"memory.max": "max\n", "cpu.max": "max 100000\n"},
	}, {
		name: "v1, host path shown, limits at the mount's root",
		self: "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
		files: map[string]string{
			"memory/memory.limit_in_bytes": "536870912\n",
			"cpu/cpu.cfs_quota_us":         "200000\n",
			"cpu/cpu.cfs_period_us":        "100000\n",
		},
		mem: 536870912, cpus: 2,
	}, {
		name: "v1, own cgroup below the root, unlimited",
		self: "4:memory:/p/x\n1:cpu:/p/x\n",
		files: map[string]string{
			"memory/p/x/memory.limit_in_bytes": "9223372036854771712\n",
			"cpu/p/x/cpu.cfs_quota_us":         "-1\n",
			"cpu/p/x/cpu.cfs_period_us":        "100000\n",
		},
	}, {
		name: "no cgroups at all",
		self: "",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			root, self := cgroupTree(t, tc.self, tc.files)
			cg := readCgroups(root, self)
			if got := cg.memoryLimit(); got != tc.mem {
				t.Errorf("memory limit %d, want %d", got, tc.mem)
			}
			if got := cg.cpuLimit(); got != tc.cpus {
				t.Errorf("CPU limit %v, want %v", got, tc.cpus)
			}
		})
	}
}

func TestTuneRuntime(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))

	root, self := cgroupTree(t, "0::/\n", map[string]string{
		"memory.max": "1000000\n",
		"cpu.max":    "100000 100000\n",
	})

	// The operator's choices stand.
	env := map[string]string{"GOGC": "150", "GOMEMLIMIT": "100MiB", "GOMAXPROCS": "2"}
	procs := runtime.GOMAXPROCS(0)
	if got := TuneRuntime(func(k string) string { return env[k] }, root, self); got != (RuntimeTuning{}) {
		t.Fatalf("with GOGC, GOMEMLIMIT and GOMAXPROCS set, TuneRuntime set %+v", got)
	}
	if p := debug.SetGCPercent(100); p != 100 {
		t.Fatalf("GC percent changed to %d though GOGC is set", p)
	}
	if p := runtime.GOMAXPROCS(0); p != procs {
		t.Fatalf("GOMAXPROCS changed to %d though GOMAXPROCS is set", p)
	}

	got := TuneRuntime(func(string) string { return "" }, root, self)
	want := RuntimeTuning{GCPercent: GCPercent, MemoryLimit: 800000, MaxProcs: 1}
	if got != want {
		t.Fatalf("TuneRuntime = %+v, want %+v", got, want)
	}
	if p := debug.SetGCPercent(100); p != GCPercent {
		t.Errorf("runtime GC percent is %d, want %d", p, GCPercent)
	}
	if l := debug.SetMemoryLimit(-1); l != 800000 {
		t.Errorf("runtime memory limit is %d, want 800000", l)
	}
	if p := runtime.GOMAXPROCS(0); p != 1 {
		t.Errorf("GOMAXPROCS is %d, want 1", p)
	}

	// Above one CPU, Go's own choice stands.
	root2, self2 := cgroupTree(t, "0::/\n", map[string]string{"cpu.max": "150000 100000\n"})
	if got := TuneRuntime(func(string) string { return "" }, root2, self2); got.MaxProcs != 0 || got.MemoryLimit != 0 {
		t.Fatalf("1.5 CPUs, no memory limit: TuneRuntime = %+v, want GOMAXPROCS and memory left alone", got)
	}
}
