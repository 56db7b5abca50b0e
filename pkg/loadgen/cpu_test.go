package loadgen

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	// A command name with spaces and parentheses, as a process may choose.
	const rest = " S 1 2 3 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 12345 0 0"
	tests := []struct {
		name    string
		line    string
		want    CPUTime
		wantErr string
	}{
		{name: "plain", line: "42 (floorserver)" + rest, want: CPUTime{User: 2500 * time.Millisecond, System: 750 * time.Millisecond}},
		{name: "odd comm", line: "42 (a b) c)" + rest, want: CPUTime{User: 2500 * time.Millisecond, System: 750 * time.Millisecond}},
		{name: "no paren", line: "42 floorserver S 1", wantErr: "no ')'"},
		{name: "short", line: "42 (x) S 1 2 3", wantErr: "fields"},
		{name: "bad utime", line: "42 (x) S 1 2 3 0 -1 4194560 100 0 0 0 zz 75 0", wantErr: "utime"},
	}
	for _, tc := range tests {
		got, err := parseProcStat([]byte(tc.line))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error = %v, want one containing %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestProcAndSelfCPU(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Fatalf("no /proc/self/stat (%v): the CPU reports need Linux's /proc", err)
	}
	if _, err := ProcCPU(os.Getpid()); err != nil {
		t.Errorf("ProcCPU(self): %v", err)
	}
	self, err := SelfCPU()
	if err != nil {
		t.Fatalf("SelfCPU: %v", err)
	}
	if self.Total() <= 0 {
		t.Errorf("SelfCPU = %+v, want some time spent by a running test", self)
	}
	if got := self.Sub(self); got != (CPUTime{}) {
		t.Errorf("Sub of itself = %+v, want zero", got)
	}
	if _, err := ProcCPU(1 << 30); err == nil { // above pid_max on Linux
		t.Error("ProcCPU of a pid that cannot exist succeeded")
	}
}
