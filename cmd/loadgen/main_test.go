package main

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/floodgate/floodgate/pkg/loadgen"
)

func startFloor(t *testing.T) (string, *loadgen.FloorServer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	floor := &loadgen.FloorServer{}
	s := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(s, floor)
	authv3.RegisterAuthorizationServer(s, floor)
	extprocv3.RegisterExternalProcessorServer(s, floor)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String(), floor
}

func TestRunJSON(t *testing.T) {
	t.Parallel()
	addr, floor := startFloor(t)
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{
		"--addr", addr, "--domain", "api",
		"--descriptor", "remote_address=10.0.{n}", "--descriptor", "tenant=a,user=u{n}",
		"--keys", "1000", "--concurrency", "4", "--connections", "2", "--requests", "300", "--json",
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, stderr.String())
	}
	var res loadgen.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout.String())
	}
	if res.Requests != 300 || res.OK != 300 || res.ErrorsTotal != 0 || floor.Served() != 300 {
		t.Errorf("requests %d ok %d errors %d served %d, want 300 OK, no errors",
			res.Requests, res.OK, res.ErrorsTotal, floor.Served())
	}
	if len(res.Descriptors) != 2 || res.Keys != 1000 {
		t.Errorf("descriptors %v keys %d, want both descriptors and 1000", res.Descriptors, res.Keys)
	}
}

func TestRunCheckJSON(t *testing.T) {
	t.Parallel()
	addr, floor := startFloor(t)
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{
		"--addr", addr, "--mode", "check", "--path", "/v1/x", "--header", "x-api-key: fgk_{n}",
		"--source", "10.0.0.{n}", "--keys", "100", "--concurrency", "4", "--connections", "2", "--requests", "200", "--json",
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, stderr.String())
	}
	var res loadgen.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout.String())
	}
	if res.Mode != "check" || res.Requests != 200 || res.OK != 200 || res.ErrorsTotal != 0 || floor.Served() != 200 {
		t.Errorf("mode %q requests %d ok %d errors %d served %d, want 200 OK Checks",
			res.Mode, res.Requests, res.OK, res.ErrorsTotal, floor.Served())
	}
	if strings.Contains(stdout.String(), "fgk_") {
		t.Errorf("the JSON shows a header value: %s", stdout.String())
	}
}

func TestRunText(t *testing.T) {
	t.Parallel()
	addr, _ := startFloor(t)
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"--addr", addr, "--domain", "api", "--descriptor", "k=v",
		"--concurrency", "2", "--connections", "1", "--requests", "50"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "ok 50  over_limit 0  unknown 0  errors 0") {
		t.Errorf("text output:\n%s", stdout.String())
	}
}

func TestRunExtProc(t *testing.T) {
	t.Parallel()
	addr, floor := startFloor(t)
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{
		"--addr", addr, "--mode", "extproc", "--path", "/v1/items/{n}", "--cache-load", "miss",
		"--concurrency", "4", "--connections", "2", "--requests", "120",
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, stderr.String())
	}
	if floor.Served() != 120 || !strings.Contains(stdout.String(), "mode=extproc cache_load=miss body=1024B") ||
		!strings.Contains(stdout.String(), "streams 120  hits 0  bodies_sent 0  skipped 0  unexpected 0  errors 0") {
		t.Errorf("served %d; stdout:\n%s", floor.Served(), stdout.String())
	}
}

func TestRunBadCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{args: []string{"-h"}, wantCode: 0, wantErr: "-descriptor"},
		{args: []string{"--domain", "api"}, wantCode: 2, wantErr: "--descriptor"},
		{args: []string{"--domain", "api", "--descriptor", "x"}, wantCode: 2, wantErr: `--descriptor "x"`},
		{args: []string{"--domain", "api", "--descriptor", "a=b", "--keys", "9"}, wantCode: 2, wantErr: "--keys 9"},
		{args: []string{"--bogus"}, wantCode: 2, wantErr: "-bogus"},
		{args: []string{"--mode", "check", "--header", "x"}, wantCode: 2, wantErr: `--header "x"`},
		{args: []string{"--mode", "extproc", "--cache-load", "miss"}, wantCode: 2, wantErr: "--cache-load miss: no --header, --host or --path contains {n}"},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tc.args, &stdout, &stderr)
		if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantErr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.wantCode, tc.wantErr)
		}
	}
}
