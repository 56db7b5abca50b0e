package sidecar

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// GCPercent is the garbage collector's target the sidecar runs with when
// GOGC is not set: the heap may grow to 5 times what is live between
// collections instead of Go's default 2. A sidecar's live heap is small
// (a few MB with the Redis backend), and collecting less often was worth
// 13-26 % of its CPU per decision under load (docs/benchmarks.md).
const GCPercent = 400

// memoryLimitShare is the part of the container's memory limit the heap is
// held under (as a soft limit, see runtime/debug.SetMemoryLimit) when
// GOMEMLIMIT is not set: near the limit the collector runs as often as it
// must, whatever GCPercent says, so a large memory backend cannot be
// OOM-killed by the higher GCPercent alone.
const memoryLimitShare = 0.8

// RuntimeTuning is what TuneRuntime set; zero fields were left to Go.
type RuntimeTuning struct {
	GCPercent   int   // set GC percent, 0 when GOGC is set
	MemoryLimit int64 // set soft memory limit in bytes, 0 when none
	MaxProcs    int   // set GOMAXPROCS, 0 when left to Go
}

// TuneRuntime sets Go's runtime for serving, unless the operator chose:
//   - GC percent GCPercent, unless GOGC is set;
//   - a soft memory limit of 80 % of the container's memory limit, unless
//     GOMEMLIMIT is set or there is no limit;
//   - GOMAXPROCS 1 when the container's CPU limit is at most one CPU,
//     unless GOMAXPROCS is set. Go itself never goes below 2; a sidecar
//     held to one CPU (k8s/ gives it a limit of 1) then runs two threads
//     against a one-CPU quota, and measured 6-34 % more CPU per decision
//     than with one (docs/benchmarks.md).
//
// cgroupRoot is where cgroup file systems are mounted (/sys/fs/cgroup) and
// self the process's /proc/self/cgroup.
func TuneRuntime(getenv func(string) string, cgroupRoot, self string) RuntimeTuning {
	var t RuntimeTuning
	cg := readCgroups(cgroupRoot, self)
	if getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
		t.GCPercent = GCPercent
	}
	if getenv("GOMEMLIMIT") == "" {
		if limit := cg.memoryLimit(); limit > 0 {
			t.MemoryLimit = int64(float64(limit) * memoryLimitShare)
			debug.SetMemoryLimit(t.MemoryLimit)
		}
	}
	if getenv("GOMAXPROCS") == "" {
		if cpus := cg.cpuLimit(); cpus > 0 && cpus <= 1 {
			runtime.GOMAXPROCS(1)
			t.MaxProcs = 1
		}
	}
	return t
}

// cgroups is where the process's own cgroups are, as /proc/self/cgroup
// tells, to find their limit files in.
type cgroups struct {
	root string
	v2   string            // the process's cgroup v2 path, "" when none
	v1   map[string]string // controller -> the process's path in it
}

// readCgroups reads /proc/self/cgroup (its path is self) into cgroups.
func readCgroups(root, self string) cgroups {
	cg := cgroups{root: root, v1: map[string]string{}}
	b, err := os.ReadFile(self)
	if err != nil {
		return cg
	}
	for _, line := range strings.Split(string(b), "\n") {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			cg.v2 = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			cg.v1[c] = parts[2]
		}
	}
	return cg
}

// v2Files returns where a cgroup v2 file may be, and v1Dirs where a v1
// controller's directory may be: the process's own cgroup first, then the
// mount's root (inside a container without a cgroup namespace,
// /proc/self/cgroup shows the host's path while the mount's root is the
// container's cgroup).
func (cg cgroups) v2Files(name string) []string {
	if cg.v2 == "" {
		return nil
	}
	return []string{filepath.Join(cg.root, cg.v2, name), filepath.Join(cg.root, name)}
}

func (cg cgroups) v1Dirs(controller string) []string {
	p, ok := cg.v1[controller]
	if !ok {
		return nil
	}
	dir := filepath.Join(cg.root, controller)
	return []string{filepath.Join(dir, p), dir}
}

// firstFile returns the content of the first of files that can be read.
func firstFile(files ...string) (string, bool) {
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			return string(b), true
		}
	}
	return "", false
}

// memoryLimit returns the memory limit in bytes, 0 when there is none.
func (cg cgroups) memoryLimit() int64 {
	files := cg.v2Files("memory.max")
	for _, d := range cg.v1Dirs("memory") {
		files = append(files, filepath.Join(d, "memory.limit_in_bytes"))
	}
	s, ok := firstFile(files...)
	if !ok {
		return 0
	}
	return parseMemoryLimit(s)
}

// parseMemoryLimit reads a cgroup memory limit file's content.
func parseMemoryLimit(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		// "max", garbage, or v1's page-rounded 2^63-1: no limit.
		return 0
	}
	return n
}

// cpuLimit returns the CPU limit in CPUs, 0 when there is none.
func (cg cgroups) cpuLimit() float64 {
	if s, ok := firstFile(cg.v2Files("cpu.max")...); ok {
		// "max 100000" or "QUOTA PERIOD"
		if f := strings.Fields(s); len(f) == 2 {
			return ratio(f[0], f[1])
		}
		return 0
	}
	for _, d := range cg.v1Dirs("cpu") {
		q, ok1 := firstFile(filepath.Join(d, "cpu.cfs_quota_us"))
		p, ok2 := firstFile(filepath.Join(d, "cpu.cfs_period_us"))
		if ok1 && ok2 {
			return ratio(strings.TrimSpace(q), strings.TrimSpace(p))
		}
	}
	return 0
}

// ratio returns quota/period, 0 when either is not a positive number
// ("max", or v1's -1).
func ratio(quota, period string) float64 {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0
	}
	return q / p
}
