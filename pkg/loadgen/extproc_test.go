package loadgen

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

func serveExtProc(t *testing.T, s extprocv3.ExternalProcessorServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(g, s)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

// toyCache answers a path it has stored with an immediate response, asks
// for the body of every other GET's response and stores the path once the
// whole body came. It records what it saw.
type toyCache struct {
	extprocv3.UnimplementedExternalProcessorServer
	mu       sync.Mutex
	stored   map[string]bool
	paths    map[string]int
	bodies   []int
	requests []*extprocv3.ProcessingRequest
}

func (c *toyCache) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	var path string
	for {
		req, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.requests = append(c.requests, req)
		var resp *extprocv3.ProcessingResponse
		switch m := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			for _, h := range m.RequestHeaders.GetHeaders().GetHeaders() {
				if h.GetKey() == ":path" {
					path = string(h.GetRawValue())
				}
			}
			c.paths[path]++
			if c.stored[path] {
				c.mu.Unlock()
				return s.Send(FloorHit(16))
			}
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = &extprocv3.ProcessingResponse{
				Response:     &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}},
				ModeOverride: &procmodev3.ProcessingMode{ResponseBodyMode: procmodev3.ProcessingMode_BUFFERED},
			}
		case *extprocv3.ProcessingRequest_ResponseBody:
			c.bodies = append(c.bodies, len(m.ResponseBody.GetBody()))
			if m.ResponseBody.GetEndOfStream() {
				c.stored[path] = true
			}
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
		}
		c.mu.Unlock()
		if err := s.Send(resp); err != nil {
			return err
		}
	}
}

func extprocOptions(addr string, requests uint64) Options {
	o := DefaultOptions()
	o.Addr, o.Mode = addr, ModeExtProc
	o.Concurrency, o.Connections, o.Duration, o.Requests, o.Seed = 1, 1, 0, requests, 1
	return o
}

func TestExtProcHitAndMiss(t *testing.T) {
	t.Parallel()
	c := &toyCache{stored: map[string]bool{}, paths: map[string]int{}}
	addr := serveExtProc(t, c)

	o := extprocOptions(addr, 50)
	o.Path = "/v1/items/7?x=1"
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 50 || res.OK != 50 || res.Hits != 49 || res.BodiesSent != 1 || res.Unknown != 0 || res.ErrorsTotal != 0 {
		t.Errorf("hit load: %+v, want 50 streams, 49 hits, 1 body", res)
	}
	if res.Mode != ModeExtProc || res.CacheLoad != CacheHit || res.Request != "GET api.example.com /v1/items/7?x=1" || res.BodyBytes != 1024 {
		t.Errorf("mode %q load %q request %q body %d", res.Mode, res.CacheLoad, res.Request, res.BodyBytes)
	}
	if len(c.bodies) != 1 || c.bodies[0] != 1024 {
		t.Errorf("bodies %v, want one of 1024 bytes", c.bodies)
	}
	// What Envoy sends: raw_value headers, the request ends with its
	// headers, the response headers carry the status and the freshness.
	first := c.requests[0].GetRequestHeaders()
	if !first.GetEndOfStream() {
		t.Error("a GET's request_headers without end_of_stream")
	}
	got := map[string]string{}
	for _, h := range first.GetHeaders().GetHeaders() {
		if h.GetValue() != "" {
			t.Errorf("header %s in value, want raw_value", h.GetKey())
		}
		got[h.GetKey()] = string(h.GetRawValue())
	}
	for k, v := range map[string]string{":method": "GET", ":authority": "api.example.com", ":path": "/v1/items/7?x=1", ":scheme": "http"} {
		if got[k] != v {
			t.Errorf("request header %s = %q, want %q", k, got[k], v)
		}
	}
	rh := c.requests[1].GetResponseHeaders()
	got = map[string]string{}
	for _, h := range rh.GetHeaders().GetHeaders() {
		got[h.GetKey()] = string(h.GetRawValue())
	}
	if got[":status"] != "200" || got["cache-control"] != "max-age=60" || got["content-length"] != "1024" || rh.GetEndOfStream() {
		t.Errorf("response headers %v (end_of_stream %v)", got, rh.GetEndOfStream())
	}

	// Miss: a new path every time, each one stored.
	c.mu.Lock()
	c.bodies, c.paths = nil, map[string]int{}
	c.mu.Unlock()
	o = extprocOptions(addr, 40)
	o.Concurrency, o.Connections = 4, 2
	o.Path, o.CacheLoad, o.BodyBytes = "/v1/items/{n}", CacheMiss, 100
	res, err = Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 40 || res.Hits != 0 || res.BodiesSent != 40 || res.ErrorsTotal != 0 || res.Unknown != 0 {
		t.Errorf("miss load: %+v, want 40 streams, 40 bodies, no hit", res)
	}
	if len(c.paths) != 40 {
		t.Errorf("%d distinct paths, want 40", len(c.paths))
	}
	for p, n := range c.paths {
		if n != 1 || !strings.HasPrefix(p, "/v1/items/") || len(p) != len("/v1/items/")+uniqueDigits {
			t.Errorf("path %q sent %d times", p, n)
		}
	}
}

func TestExtProcAgainstFloor(t *testing.T) {
	t.Parallel()
	for _, hit := range []bool{false, true} {
		floor := &FloorServer{}
		if hit {
			floor.Hit = FloorHit(1024)
		}
		addr := serveExtProc(t, floor)
		o := extprocOptions(addr, 100)
		o.Concurrency, o.Connections = 4, 2
		res, err := Run(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		wantHits := uint64(0)
		if hit {
			wantHits = 100
		}
		if res.OK != 100 || res.Hits != wantHits || res.BodiesSent != 0 || res.ErrorsTotal != 0 || floor.Served() != 100 {
			t.Errorf("floor hit=%v: %+v served %d, want 100 streams, %d hits", hit, res, floor.Served(), wantHits)
		}
	}
	b, err := proto.Marshal(FloorHit(1024))
	if err != nil {
		t.Fatal(err)
	}
	var r rawProcessingResponse
	if err := decodeProcessingResponse(b, &r); err != nil || r.kind != fieldImmediateResponse || r.immediateHTTPStatus != 200 {
		t.Errorf("FloorHit decodes as %+v (%v)", r, err)
	}
}

func TestExtProcDecode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		msg  *extprocv3.ProcessingResponse
		want rawProcessingResponse
	}{
		{&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
			ModeOverride: &procmodev3.ProcessingMode{ResponseHeaderMode: procmodev3.ProcessingMode_SKIP}},
			rawProcessingResponse{kind: fieldRequestHeaders, skipResponseHeaders: true}},
		{&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}},
			ModeOverride: &procmodev3.ProcessingMode{ResponseBodyMode: procmodev3.ProcessingMode_BUFFERED_PARTIAL}},
			rawProcessingResponse{kind: fieldResponseHeaders, responseBodyMode: 3}},
		{&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}},
			rawProcessingResponse{kind: fieldResponseBody}},
		// Dynamic metadata and a message timeout after the oneof do not
		// change its kind.
		{&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
			DynamicMetadata:        &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStringValue("b")}},
			OverrideMessageTimeout: durationpb.New(time.Second)},
			rawProcessingResponse{kind: fieldRequestHeaders}},
	} {
		b, err := proto.Marshal(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		var got rawProcessingResponse
		if err := decodeProcessingResponse(b, &got); err != nil || got != tc.want {
			t.Errorf("decode %v = %+v (%v), want %+v", tc.msg, got, err, tc.want)
		}
	}
}

func TestExtProcValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		edit func(*Options)
		want string
	}{
		{func(o *Options) { o.CacheLoad = "warm" }, `--cache-load "warm"`},
		{func(o *Options) { o.CacheLoad = CacheMiss }, "--cache-load miss: no --header, --host or --path contains {n}"},
		{func(o *Options) { o.CacheLoad, o.Path, o.Keys = CacheMiss, "/a/{n}", 10 }, "--keys and --sequential"},
		{func(o *Options) { o.Domain = "api" }, "--domain: not used with --mode extproc"},
		{func(o *Options) { o.Keys = 5 }, "--keys 5: no --header"},
		{func(o *Options) { o.BodyBytes = -1 }, "--body-bytes -1"},
		{func(o *Options) { o.MaxAge = 0 }, "--max-age 0s"},
		{func(o *Options) {
			o.Mode, o.CacheLoad, o.Domain, o.Descriptors = ModeRateLimit, CacheMiss, "d", []Descriptor{{{Key: "k"}}}
		}, "--cache-load: only with --mode extproc"},
		{func(o *Options) { o.Mode, o.CacheLoad = ModeCheck, CacheMiss }, "--cache-load: only with --mode extproc"},
	} {
		o := extprocOptions("127.0.0.1:1", 1)
		tc.edit(&o)
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want %q", err, tc.want)
		}
	}
	o := extprocOptions("127.0.0.1:1", 1)
	o.CacheLoad, o.Path = CacheMiss, "/a/{n}"
	if err := o.Validate(); err != nil {
		t.Errorf("a miss load: %v", err)
	}
}
