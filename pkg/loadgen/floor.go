package loadgen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// floorOK and floorCheckOK are the replies FloorServer gives. Sharing them
// across goroutines is safe: gRPC only marshals them, and proto marshalling
// only reads a message (its size cache is updated atomically).
var (
	floorOK      = &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}
	floorCheckOK = &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: 0},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}
	// The minimal CONTINUE answers of ext_proc, one per message kind.
	floorRequestHeaders   = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	floorResponseHeaders  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
	floorRequestBody      = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	floorResponseBody     = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
	floorRequestTrailers  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	floorResponseTrailers = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
)

// FloorHit is the immediate_response a FloorServer with Hit set answers
// request headers with: status 200, the headers a cache hit carries
// (content-type, content-length, cache-control, etag, age, cache-status)
// and a body of bodyBytes bytes, so that it is the floor of a hit.
func FloorHit(bodyBytes int) *extprocv3.ProcessingResponse {
	set := func(name, value string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: name, RawValue: []byte(value)},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode_OK},
		Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
			set("content-type", "application/json"),
			set("content-length", strconv.Itoa(bodyBytes)),
			set("cache-control", "max-age=60"),
			set("etag", `"floor"`),
			set("age", "1"),
			set("cache-status", "floodgate; hit; ttl=59"),
		}},
		Body:    bytes.Repeat([]byte("x"), bodyBytes),
		Details: "floor_hit",
	}}}
}

// FloorServer is an RLS v3 service, an ext_authz v3 Authorization service
// and an ext_proc v3 ExternalProcessor that answers OK (or CONTINUE) to
// every request without looking at it. Served by a grpc.Server with
// default options, it is the floor a real service is compared against:
// what gRPC itself costs per call on this machine. Register it as all three
// (rlsv3.RegisterRateLimitServiceServer, authv3.RegisterAuthorizationServer,
// extprocv3.RegisterExternalProcessorServer).
type FloorServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
	authv3.UnimplementedAuthorizationServer
	extprocv3.UnimplementedExternalProcessorServer
	// Hit, when set, answers every stream's request headers (and ends the
	// stream), as a cache hit does; see FloorHit. Set it before serving.
	Hit    *extprocv3.ProcessingResponse
	served atomic.Uint64
}

var (
	_ rlsv3.RateLimitServiceServer      = (*FloorServer)(nil)
	_ authv3.AuthorizationServer        = (*FloorServer)(nil)
	_ extprocv3.ExternalProcessorServer = (*FloorServer)(nil)
)

// ShouldRateLimit answers OK. The one atomic increment is the only work, so
// that CPU time can be divided by calls served.
func (f *FloorServer) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	f.served.Add(1)
	return floorOK, nil
}

// Check answers OK (an empty ok_response), counted with the
// ShouldRateLimit calls in Served.
func (f *FloorServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.served.Add(1)
	return floorCheckOK, nil
}

// Process answers each message of a stream with the minimal CONTINUE of
// its kind (request headers with Hit instead, when set), until the client
// half-closes. A stream, one HTTP request, counts once in Served.
func (f *FloorServer) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	f.served.Add(1)
	for {
		req, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var resp *extprocv3.ProcessingResponse
		switch req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			if f.Hit != nil {
				// Envoy sends nothing more after an immediate response.
				return s.Send(f.Hit)
			}
			resp = floorRequestHeaders
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = floorResponseHeaders
		case *extprocv3.ProcessingRequest_RequestBody:
			resp = floorRequestBody
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = floorResponseBody
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = floorRequestTrailers
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = floorResponseTrailers
		default:
			return status.Error(codes.InvalidArgument, "ProcessingRequest: no message")
		}
		if err := s.Send(resp); err != nil {
			return err
		}
	}
}

// Served is the number of calls (ShouldRateLimit, Check and Process
// streams) answered so far.
func (f *FloorServer) Served() uint64 { return f.served.Load() }
