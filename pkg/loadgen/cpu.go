package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// CPUTime is user and system CPU time consumed by a process.
type CPUTime struct {
	User   time.Duration
	System time.Duration
}

// Total is User plus System.
func (c CPUTime) Total() time.Duration { return c.User + c.System }

// Sub returns c minus earlier, field by field.
func (c CPUTime) Sub(earlier CPUTime) CPUTime {
	return CPUTime{User: c.User - earlier.User, System: c.System - earlier.System}
}

// userHZ is the unit of the times in /proc/PID/stat. The kernel reports
// them in USER_HZ, which is 100 on every Linux architecture Go supports;
// reading it through sysconf would need cgo. It also means one reading is
// only good to 10 ms, so measure runs of seconds, not milliseconds.
const userHZ = 100

// ProcCPU reads the user and system CPU time of process pid, all of its
// threads included, from /proc/PID/stat (Linux only).
func ProcCPU(pid int) (CPUTime, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return CPUTime{}, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	return parseProcStat(b)
}

// parseProcStat extracts utime and stime (fields 14 and 15) of a
// /proc/PID/stat line. The command name (field 2) is in parentheses and may
// itself hold spaces and parentheses, so fields are counted from the last ')'.
func parseProcStat(b []byte) (CPUTime, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return CPUTime{}, fmt.Errorf("parse /proc stat: no ')' in %q", b)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), so field k is f[k-3].
	if len(f) < 13 {
		return CPUTime{}, fmt.Errorf("parse /proc stat: %d fields after the command name, want at least 13", len(f))
	}
	utime, err := strconv.ParseUint(string(f[11]), 10, 64)
	if err != nil {
		return CPUTime{}, fmt.Errorf("parse /proc stat utime: %w", err)
	}
	stime, err := strconv.ParseUint(string(f[12]), 10, 64)
	if err != nil {
		return CPUTime{}, fmt.Errorf("parse /proc stat stime: %w", err)
	}
	tick := time.Second / userHZ
	return CPUTime{User: time.Duration(utime) * tick, System: time.Duration(stime) * tick}, nil
}

// SelfCPU reads the CPU time of the calling process from getrusage, which
// is exact to the microsecond (unlike /proc's 10 ms ticks).
func SelfCPU() (CPUTime, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return CPUTime{}, fmt.Errorf("getrusage: %w", err)
	}
	return CPUTime{
		User:   time.Duration(ru.Utime.Nano()),
		System: time.Duration(ru.Stime.Nano()),
	}, nil
}
