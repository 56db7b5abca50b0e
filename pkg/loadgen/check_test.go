package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// serveAuth starts an Authorization server (and, when rls is set, an RLS
// one beside it) on a free loopback port and returns its address.
func serveAuth(t *testing.T, auth authv3.AuthorizationServer, rls rlsv3.RateLimitServiceServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, auth)
	if rls != nil {
		rlsv3.RegisterRateLimitServiceServer(s, rls)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// checkOptions is a small bounded Check run against addr.
func checkOptions(addr string, requests uint64) Options {
	o := DefaultOptions()
	o.Addr = addr
	o.Mode = ModeCheck
	o.Concurrency = 8
	o.Connections = 2
	o.Duration = 0
	o.Requests = requests
	o.Seed = 1
	return o
}

func TestCheckAgainstFloor(t *testing.T) {
	t.Parallel()
	floor := &FloorServer{}
	addr := serveAuth(t, floor, floor)
	o := checkOptions(addr, 300)
	o.Headers = []Header{{"x-api-key", "key-{n}"}}
	o.Keys = 50
	o.PID = os.Getpid()
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 300 || res.OK != 300 || res.OverLimit != 0 || res.DeniedTotal != 0 || res.ErrorsTotal != 0 {
		t.Errorf("requests %d ok %d over %d denied %v errors %v, want 300 OK", res.Requests, res.OK, res.OverLimit, res.Denied, res.Errors)
	}
	if floor.Served() != 300 {
		t.Errorf("floor served %d Checks, want 300", floor.Served())
	}
	if res.Mode != ModeCheck || res.Request != "GET api.example.com /v1/things" || !reflect.DeepEqual(res.Headers, []string{"x-api-key"}) {
		t.Errorf("mode %q request %q headers %v", res.Mode, res.Request, res.Headers)
	}
	// The ShouldRateLimit face of the same floor still works.
	rl := testOptions(addr, 20)
	if res, err := Run(t.Context(), rl); err != nil || res.OK != 20 {
		t.Fatalf("ratelimit against the floor: %+v, %v", res, err)
	}
	if floor.Served() != 320 {
		t.Errorf("floor served %d, want 320", floor.Served())
	}

	var buf bytes.Buffer
	if err := res.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mode=check keys=50", "request     GET api.example.com /v1/things", "headers     x-api-key",
		"ok 300  over_limit 0  denied 0  errors 0"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, buf.String())
		}
	}
	if strings.Contains(buf.String(), "key-") {
		t.Errorf("text output shows a header value:\n%s", buf.String())
	}
	buf.Reset()
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var decoded map[string]any
	if err := json.Unmarshal(buf.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"mode", "request", "headers", "ok", "over_limit", "unknown", "errors", "server_cpu"} {
		if _, ok := decoded[key]; !ok {
			t.Errorf("JSON lacks %q: %s", key, buf.String())
		}
	}
}

// scriptedAuth answers by the x-api-key header and records what it saw.
type scriptedAuth struct {
	authv3.UnimplementedAuthorizationServer
	mu       sync.Mutex
	seen     []*authv3.CheckRequest
	answered map[codes.Code]uint64
}

func (s *scriptedAuth) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, req)
	code := map[string]codes.Code{
		"k0": codes.OK, "k1": codes.ResourceExhausted, "k2": codes.Unauthenticated, "k3": codes.PermissionDenied,
	}[req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-api-key"]]
	s.answered[code]++
	if code == codes.OK {
		// No status at all reads as OK, as Envoy reads it.
		return &authv3.CheckResponse{}, nil
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code), Message: "scripted"},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Body: "no"}}}, nil
}

func TestCheckCountsByStatusAndSendsWhatEnvoySends(t *testing.T) {
	t.Parallel()
	srv := &scriptedAuth{answered: map[codes.Code]uint64{}}
	addr := serveAuth(t, srv, nil)
	o := checkOptions(addr, 400)
	o.Keys = 4
	o.Method, o.Host, o.Path = "POST", "api.example.com:10000", "/v1/things/{n}?q=1"
	o.Source = "10.1.0.{n}"
	o.Headers = []Header{{"X-Api-Key", "k{n}"}, {"x-multi", "a"}, {"x-multi", "b{n}"}}
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	a := srv.answered
	if res.OK != a[codes.OK] || res.OverLimit != a[codes.ResourceExhausted] ||
		res.Denied["Unauthenticated"] != a[codes.Unauthenticated] || res.Denied["PermissionDenied"] != a[codes.PermissionDenied] ||
		len(res.Denied) != 2 || res.ErrorsTotal != 0 || res.Unknown != 0 {
		t.Errorf("counted ok %d over %d denied %v errors %v; server answered %v", res.OK, res.OverLimit, res.Denied, res.Errors, a)
	}
	if res.Requests != 400 || res.DeniedTotal != a[codes.Unauthenticated]+a[codes.PermissionDenied] {
		t.Errorf("requests %d denied_total %d", res.Requests, res.DeniedTotal)
	}
	for _, c := range []codes.Code{codes.OK, codes.ResourceExhausted, codes.Unauthenticated, codes.PermissionDenied} {
		if a[c] == 0 {
			t.Errorf("no request got %v: %v", c, a)
		}
	}
	for _, req := range srv.seen {
		h := req.GetAttributes().GetRequest().GetHttp()
		n := strings.TrimPrefix(h.GetHeaders()["x-api-key"], "k")
		src := req.GetAttributes().GetSource().GetAddress().GetSocketAddress()
		want := map[string]string{
			":authority": "api.example.com:10000", ":method": "POST", ":path": "/v1/things/" + n + "?q=1", ":scheme": "http",
			"x-forwarded-proto": "http", "x-api-key": "k" + n, "x-multi": "a,b" + n,
		}
		if h.GetMethod() != "POST" || h.GetHost() != "api.example.com:10000" || h.GetPath() != "/v1/things/"+n+"?q=1" ||
			h.GetScheme() != "http" || h.GetProtocol() != "HTTP/1.1" || !reflect.DeepEqual(h.GetHeaders(), want) ||
			src.GetAddress() != "10.1.0."+n || src.GetPortValue() == 0 ||
			req.GetAttributes().GetDestination().GetAddress().GetSocketAddress().GetAddress() == "" {
			t.Fatalf("request %v, want key index %s everywhere and headers %v", req, n, want)
		}
	}
	var buf bytes.Buffer
	if err := res.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "denied      PermissionDenied ") || !strings.Contains(buf.String(), "denied      Unauthenticated ") {
		t.Errorf("text output lacks the denials:\n%s", buf.String())
	}
}

func TestCheckKeyFileSequential(t *testing.T) {
	t.Parallel()
	srv := &scriptedAuth{answered: map[codes.Code]uint64{}}
	addr := serveAuth(t, srv, nil)
	lines := []string{"tok-a", "tok-b", "tok-c", "tok-d", "tok-e"}
	o := checkOptions(addr, 5)
	o.KeyLines, o.Keys, o.Sequential = lines, len(lines), true
	o.Headers = []Header{{"authorization", "Bearer {key}"}}
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 5 || res.OK != 5 || !res.Sequential {
		t.Errorf("requests %d ok %d sequential %v, want 5 OK (no x-api-key)", res.Requests, res.OK, res.Sequential)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	got := map[string]int{}
	for _, req := range srv.seen {
		got[req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]]++
	}
	for _, l := range lines {
		if got["Bearer "+l] != 1 {
			t.Errorf("sent %v, want each line of the key file exactly once", got)
			break
		}
	}
}

func TestCheckStatusCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		resp *authv3.CheckResponse
		want int32
	}{
		{&authv3.CheckResponse{}, 0},
		{&authv3.CheckResponse{Status: &rpcstatus.Status{}}, 0},
		{&authv3.CheckResponse{Status: &rpcstatus.Status{Code: 16, Message: "who?"},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Body: "x"}}}, 16},
		{floorCheckOK, 0},
	} {
		b, err := proto.Marshal(tc.resp)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := checkStatusCode(b); err != nil || got != tc.want {
			t.Errorf("checkStatusCode(%v) = %d, %v; want %d", tc.resp, got, err, tc.want)
		}
	}
	// A repeated status merges: a later one without a code keeps the code.
	b1, _ := proto.Marshal(&authv3.CheckResponse{Status: &rpcstatus.Status{Code: 7}})
	b2, _ := proto.Marshal(&authv3.CheckResponse{Status: &rpcstatus.Status{Message: "m"}})
	if got, err := checkStatusCode(append(b1, b2...)); err != nil || got != 7 {
		t.Errorf("merged status: %d, %v; want 7", got, err)
	}
	if _, err := checkStatusCode([]byte{0x0a, 0x05, 0x08}); err == nil {
		t.Error("a truncated status parsed")
	}
}

func TestParseHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    Header
		wantErr string
	}{
		{in: "x-api-key: fgk_abc", want: Header{"x-api-key", "fgk_abc"}},
		{in: "authorization:Bearer a:b", want: Header{"authorization", "Bearer a:b"}},
		{in: ":authority: api.example.com", want: Header{":authority", "api.example.com"}},
		{in: "x-empty:", want: Header{"x-empty", ""}},
		{in: "novalue", wantErr: "no ':'"},
		{in: ": v", wantErr: "no ':'"},
		{in: " : v", wantErr: "empty name"},
	} {
		got, err := ParseHeader(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "--header") {
				t.Errorf("ParseHeader(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseHeader(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseArgsCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(keyFile, []byte("t1\n\nt2\r\nt3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := []string{"--mode", "check"}
	with := func(extra ...string) []string { return append(append([]string{}, check...), extra...) }
	tests := []struct {
		name    string
		args    []string
		want    func(*Options)
		wantErr string
	}{
		{name: "defaults", args: check, want: func(*Options) {}},
		{
			name: "everything",
			args: with("--method", "POST", "--host", "h.example", "--path", "/v1/x", "--source", "10.0.0.{n}",
				"--header", "x-api-key: k{n}", "--header", "x-b: 2", "--keys", "200", "--sequential"),
			want: func(o *Options) {
				o.Method, o.Host, o.Path, o.Source = "POST", "h.example", "/v1/x", "10.0.0.{n}"
				o.Headers = []Header{{"x-api-key", "k{n}"}, {"x-b", "2"}}
				o.Keys, o.Sequential = 200, true
			},
		},
		{
			name: "key file sets keys",
			args: with("--header", "authorization: Bearer {key}", "--key-file", keyFile),
			want: func(o *Options) {
				o.Headers = []Header{{"authorization", "Bearer {key}"}}
				o.KeyLines, o.Keys = []string{"t1", "t2", "t3"}, 3
			},
		},
		{
			name: "key file, fewer keys",
			args: with("--header", "authorization: Bearer {key}", "--key-file", keyFile, "--keys", "2"),
			want: func(o *Options) {
				o.Headers = []Header{{"authorization", "Bearer {key}"}}
				o.KeyLines, o.Keys = []string{"t1", "t2", "t3"}, 2
			},
		},
		{name: "bad mode", args: []string{"--mode", "nope"}, wantErr: `--mode "nope"`},
		{name: "domain in check", args: with("--domain", "api"), wantErr: "--domain: not used with --mode check"},
		{name: "descriptor in check", args: with("--descriptor", "a=b"), wantErr: "--descriptor: not used"},
		{name: "hits in check", args: with("--hits", "2"), wantErr: "--hits"},
		{name: "bad header", args: with("--header", "oops"), wantErr: `--header "oops"`},
		{name: "bad path", args: with("--path", "v1"), wantErr: `--path "v1"`},
		{name: "empty method", args: with("--method", ""), wantErr: "--method"},
		{name: "empty source", args: with("--source", ""), wantErr: "--source"},
		{name: "keys without placeholder", args: with("--header", "a: b", "--keys", "3"), wantErr: "--keys 3: no --header"},
		{name: "{key} without a file", args: with("--header", "a: {key}"), wantErr: "--key-file: required"},
		{name: "file without {key}", args: with("--header", "a: {n}", "--key-file", keyFile), wantErr: "--key-file: given"},
		{name: "more keys than lines", args: with("--header", "a: {key}", "--key-file", keyFile, "--keys", "4"), wantErr: "--keys 4: more than the 3 lines"},
		{name: "missing key file", args: with("--header", "a: {key}", "--key-file", filepath.Join(dir, "nope")), wantErr: "--key-file"},
		{name: "empty key file", args: with("--header", "a: {key}", "--key-file", empty), wantErr: "no non-empty line"},
		{name: "header in ratelimit", args: []string{"--domain", "d", "--descriptor", "a=b", "--header", "a: b"}, wantErr: "--header and --key-file: only with --mode check"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, _, err := ParseArgs(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseArgs(%q) error = %v, want one containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", tc.args, err)
			}
			want := DefaultOptions()
			want.Mode = ModeCheck
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ParseArgs(%q) =\n %+v\nwant\n %+v", tc.args, got, want)
			}
		})
	}
	var usage strings.Builder
	if _, _, err := ParseArgs([]string{"-h"}, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	for _, name := range []string{"-mode", "-header", "-path", "-source", "-key-file", "-sequential"} {
		if !strings.Contains(usage.String(), name) {
			t.Errorf("usage lacks %s", name)
		}
	}
}
