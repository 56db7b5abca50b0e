package extprocsvc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/cacheconfig"
	"github.com/floodgate/floodgate/pkg/cachestore"
	"github.com/floodgate/floodgate/pkg/extprocsvc"
	"github.com/floodgate/floodgate/pkg/respcache"
)

// fuzzServer serves the processor over a loopback gRPC listener, with the
// rules of the other tests and a memory store.
func fuzzServer(f *testing.F) extprocv3.ExternalProcessorClient {
	cfg, err := cacheconfig.Parse("cache.yaml", []byte(rules))
	if err != nil {
		f.Fatal(err)
	}
	store, err := cachestore.NewMemory(cachestore.MemoryOptions{})
	if err != nil {
		f.Fatal(err)
	}
	clock := backendtest.NewClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	eng, err := respcache.New(respcache.Options{Store: store, Now: clock.Now, Registerer: prometheus.NewRegistry()})
	if err != nil {
		f.Fatal(err)
	}
	eng.SetConfig(cfg)
	svc, err := extprocsvc.New(eng)
	if err != nil {
		f.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	g := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(g, svc)
	go g.Serve(ln)
	f.Cleanup(g.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

func rawHeaders(kv ...string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return hm
}

// answers says whether resp is an answer of the kind req asks for.
func answers(req *extprocv3.ProcessingRequest, resp *extprocv3.ProcessingResponse) bool {
	switch req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return resp.GetRequestHeaders() != nil || resp.GetImmediateResponse() != nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return resp.GetResponseHeaders() != nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return resp.GetResponseBody() != nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return resp.GetRequestBody() != nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return resp.GetRequestTrailers() != nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return resp.GetResponseTrailers() != nil
	}
	return false
}

// FuzzProcess drives real ext_proc streams: each input is up to three
// ProcessingRequest messages (fuzzed proto bytes), sent in order on one
// stream over loopback gRPC. Every message is answered with the matching
// kind of response (request headers may be answered from the cache, which
// ends the stream), or the stream ends with INVALID_ARGUMENT and a reason;
// never a crash, another code or a stream left hanging.
func FuzzProcess(f *testing.F) {
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{extprocsvc.AuthzNamespace: {Fields: map[string]*structpb.Value{
		"tenant": structpb.NewStringValue("acme"), "user": structpb.NewStringValue("u1"), "auth": structpb.NewStringValue("jwt")}}}}
	reqHeaders := func(path string, kv ...string) *extprocv3.ProcessingRequest {
		return &extprocv3.ProcessingRequest{MetadataContext: md, Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: rawHeaders(append([]string{":method", "GET", ":authority", "api.example.com", ":path", path, ":scheme", "http"}, kv...)...), EndOfStream: true}}}
	}
	respHeaders := func(kv ...string) *extprocv3.ProcessingRequest {
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: rawHeaders(kv...)}}}
	}
	body := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte("hello"), EndOfStream: true}}}
	for _, seq := range [][]*extprocv3.ProcessingRequest{
		{reqHeaders("/v1/catalog/items?b=2&a=1&utm_source=x", "accept", "text/plain"), respHeaders(":status", "200", "cache-control", "max-age=60", "etag", `"v1"`, "content-length", "5"), body},
		{reqHeaders("/v1/catalog/items?a=1&b=2", "accept", "text/plain", "if-none-match", `"v1"`), respHeaders(":status", "200"), body},
		{reqHeaders("/v1/users/me", "vary", "x"), respHeaders(":status", "200", "cache-control", "private, max-age=5", "vary", "accept"), body},
		{reqHeaders("/v1/search/q", "cache-control", "no-cache"), respHeaders(":status", "204"), {}},
		{reqHeaders("/other"), respHeaders(":status", "abc"), body},
		{respHeaders(":status", "200"), reqHeaders("/v1/teams/x"), reqHeaders("/v1/teams/x")},
		{{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: rawHeaders("", "x")}}}, body, body},
	} {
		var in [3][]byte
		for i, m := range seq {
			b, err := proto.Marshal(m)
			if err != nil {
				f.Fatal(err)
			}
			in[i] = b
		}
		f.Add(in[0], in[1], in[2])
	}
	client := fuzzServer(f)
	f.Fuzz(func(t *testing.T, m1, m2, m3 []byte) {
		var msgs []*extprocv3.ProcessingRequest
		for _, b := range [][]byte{m1, m2, m3} {
			m := &extprocv3.ProcessingRequest{}
			if proto.Unmarshal(b, m) != nil {
				return // the gRPC server would have refused it
			}
			msgs = append(msgs, m)
		}
		// A guard against a stream that hangs, not a timed assertion:
		// the stream is answered at once or it is a bug.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := client.Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			if err := s.Send(m); err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("message %d: send: %v", i, err)
			}
			resp, err := s.Recv()
			if err != nil {
				if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() == "" {
					t.Fatalf("message %d %v: %v; want an answer or INVALID_ARGUMENT with a reason", i, m, err)
				}
				return
			}
			if !answers(m, resp) {
				t.Fatalf("message %d %v: answered %v", i, m, resp)
			}
			if resp.GetImmediateResponse() != nil {
				if _, err := s.Recv(); !errors.Is(err, io.EOF) {
					t.Fatalf("after an immediate response: %v, want the stream's end", err)
				}
				return
			}
		}
		s.CloseSend()
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last message: %v, want the stream's end", err)
		}
	})
}
