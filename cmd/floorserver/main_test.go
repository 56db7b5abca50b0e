package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/floodgate/floodgate/internal/extproctest"
	"github.com/floodgate/floodgate/pkg/loadgen"
)

func TestFloorServerServesAndReports(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdoutR, stdoutW := io.Pipe()
	stderrR, stderrW := io.Pipe()
	reports := make(chan os.Signal, 1)
	exit := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"--addr", "127.0.0.1:0"}, stdoutW, stderrW, reports)
		stdoutW.Close()
		stderrW.Close()
		exit <- code
	}()

	// The listening line comes once the listener accepts.
	errLines := bufio.NewScanner(stderrR)
	if !errLines.Scan() {
		t.Fatalf("no listening line: %v", errLines.Err())
	}
	var listening struct {
		Msg  string `json:"msg"`
		GRPC string `json:"grpc"`
		PID  int    `json:"pid"`
	}
	if err := json.Unmarshal(errLines.Bytes(), &listening); err != nil || listening.Msg != "listening" || listening.PID != os.Getpid() {
		t.Fatalf("listening line %q (%v)", errLines.Text(), err)
	}
	go func() { _, _ = io.Copy(io.Discard, stderrR) }()

	o := loadgen.DefaultOptions()
	o.Addr, o.Domain = listening.GRPC, "api"
	o.Descriptors = []loadgen.Descriptor{{{Key: "k", Value: "v{n}"}}}
	o.Keys, o.Concurrency, o.Connections, o.Duration, o.Requests = 10, 4, 2, 0, 200
	res, err := loadgen.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 200 || res.ErrorsTotal != 0 {
		t.Fatalf("ok %d errors %v, want 200 OK", res.OK, res.Errors)
	}
	// The Check door of the floor, counted in served too.
	c := loadgen.DefaultOptions()
	c.Addr, c.Mode = listening.GRPC, loadgen.ModeCheck
	c.Headers = []loadgen.Header{{Name: "x-api-key", Value: "k{n}"}}
	c.Keys, c.Concurrency, c.Connections, c.Duration, c.Requests = 10, 4, 2, 0, 100
	res, err = loadgen.Run(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 100 || res.DeniedTotal != 0 || res.ErrorsTotal != 0 {
		t.Fatalf("check: ok %d denied %v errors %v, want 100 OK", res.OK, res.Denied, res.Errors)
	}

	// The ext_proc door of the floor: one stream per request, counted
	// too; CONTINUE answers, so no body is asked for.
	e := loadgen.DefaultOptions()
	e.Addr, e.Mode = listening.GRPC, loadgen.ModeExtProc
	e.Concurrency, e.Connections, e.Duration, e.Requests = 4, 2, 0, 50
	res, err = loadgen.Run(t.Context(), e)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 50 || res.Hits != 0 || res.BodiesSent != 0 || res.ErrorsTotal != 0 || res.Unknown != 0 {
		t.Fatalf("extproc: %+v, want 50 streams continued", res)
	}

	outLines := bufio.NewScanner(stdoutR)
	readReport := func() cpuReport {
		t.Helper()
		if !outLines.Scan() {
			t.Fatalf("no report line: %v", outLines.Err())
		}
		var r cpuReport
		if err := json.Unmarshal(outLines.Bytes(), &r); err != nil {
			t.Fatalf("report %q: %v", outLines.Text(), err)
		}
		return r
	}
	reports <- os.Interrupt // any value asks for a report
	mid := readReport()
	cancel()
	final := readReport()
	if code := <-exit; code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	for _, r := range []cpuReport{mid, final} {
		if r.Msg != "cpu" || r.Served != 350 || r.UserMicros+r.SystemMicros <= 0 || r.MicrosPerRequest <= 0 {
			t.Errorf("report %+v, want msg cpu, 350 served and CPU time spent", r)
		}
	}
	if final.UserMicros+final.SystemMicros < mid.UserMicros+mid.SystemMicros {
		t.Errorf("CPU time went backwards: %+v then %+v", mid, final)
	}
}

// TestFloorServerHit: with --extproc-hit-bytes every stream is answered
// with an immediate_response carrying that many bytes of body.
func TestFloorServerHit(t *testing.T) {
	t.Parallel()
	m := &Main{Addr: "127.0.0.1:0", HitBytes: 1024}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	conn, err := grpc.NewClient(m.BoundAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := extproctest.New(conn).Do(t.Context(), extproctest.Request{Authority: "api.example.com", Path: "/v1/x"}, extproctest.Response{Status: 500})
	if err != nil {
		t.Fatal(err)
	}
	if res.Immediate == nil || res.Status != 200 || len(res.Body) != 1024 || res.Get("content-length") != "1024" || res.Messages != 1 {
		t.Errorf("a stream of the hit floor: status %d, %d bytes, headers %v, %d messages; want an immediate 200 with 1024 bytes",
			res.Status, len(res.Body), res.Header, res.Messages)
	}
	o := loadgen.DefaultOptions()
	o.Addr, o.Mode = m.BoundAddr(), loadgen.ModeExtProc
	o.Concurrency, o.Connections, o.Duration, o.Requests = 4, 2, 0, 100
	lr, err := loadgen.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if lr.OK != 100 || lr.Hits != 100 || lr.ErrorsTotal != 0 || m.Served() != 101 {
		t.Errorf("loadgen on the hit floor: %+v, served %d; want 100 hits", lr, m.Served())
	}
}

func TestFloorServerBadArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args    []string
		want    int
		wantErr string
	}{
		{args: []string{"--nope"}, want: 2, wantErr: "-nope"},
		{args: []string{"extra"}, want: 2, wantErr: `unexpected argument "extra"`},
		{args: []string{"--addr", "256.0.0.1:0"}, want: 1, wantErr: "--addr 256.0.0.1:0"},
		{args: []string{"--extproc-hit-bytes", "-1"}, want: 2, wantErr: "--extproc-hit-bytes -1"},
	}
	for _, tc := range tests {
		var stdout, stderr strings.Builder
		if got := run(t.Context(), tc.args, &stdout, &stderr, nil); got != tc.want || !strings.Contains(stderr.String(), tc.wantErr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, got, stderr.String(), tc.want, tc.wantErr)
		}
	}
}
