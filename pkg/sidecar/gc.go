package sidecar

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// GCPercent is the garbage collector's target the sidecar runs with when
// GOGC is not set: the heap may grow to 5 times what is live between
// collections instead of Go's default 2. A sidecar's live heap is small
// (a few MB with the Redis backend), and collecting less often was worth
// 15-25 % of its CPU per decision under load (docs/benchmarks.md).
const GCPercent = 400

// memoryLimitShare is the part of the container's memory limit the heap is
// held under (as a soft limit, see runtime/debug.SetMemoryLimit) when
// GOMEMLIMIT is not set: near the limit the collector runs as often as it
// must, whatever GCPercent says, so a large memory backend cannot be
// OOM-killed by the higher GCPercent alone.
const memoryLimitShare = 0.8

// cgroupMemoryFiles hold the container's memory limit: cgroup v2, then v1.
var cgroupMemoryFiles = []string{
	"/sys/fs/cgroup/memory.max",
	"/sys/fs/cgroup/memory/memory.limit_in_bytes",
}

// GCTuning is what TuneGC set; zero fields were left to Go's defaults.
type GCTuning struct {
	Percent     int   // set GC percent, 0 when GOGC is set
	MemoryLimit int64 // set soft memory limit in bytes, 0 when none
}

// TuneGC sets the collector for serving, unless the operator chose: GC
// percent GCPercent unless GOGC is set, and a soft memory limit of 80 % of
// the container's memory limit unless GOMEMLIMIT is set or there is no
// limit to read.
func TuneGC(getenv func(string) string) GCTuning {
	var t GCTuning
	if getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
		t.Percent = GCPercent
	}
	if getenv("GOMEMLIMIT") == "" {
		if limit := containerMemoryLimit(cgroupMemoryFiles); limit > 0 {
			t.MemoryLimit = int64(float64(limit) * memoryLimitShare)
			debug.SetMemoryLimit(t.MemoryLimit)
		}
	}
	return t
}

// containerMemoryLimit returns the memory limit in the first of files that
// holds one, or 0 when none does ("max", a missing file, or cgroup v1's
// huge "unlimited" value).
func containerMemoryLimit(files []string) int64 {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		return parseMemoryLimit(string(b))
	}
	return 0
}

// parseMemoryLimit reads a cgroup memory limit file's content.
func parseMemoryLimit(s string) int64 {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		// "max", garbage, or v1's page-rounded 2^63-1: no limit.
		return 0
	}
	return n
}
