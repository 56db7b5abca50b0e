// Package otlptest runs an OTLP trace collector on loopback for tests: the
// OTLP/gRPC TraceService and OTLP/HTTP's POST /v1/traces (protobuf), each on
// a listener of its own, recording every span they are sent and counting
// the connections made to them.
package otlptest

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is one span received, with what its resource said.
type Span struct {
	TraceID, SpanID, ParentSpanID string // hex
	Name                          string
	Kind                          tracepb.Span_SpanKind
	// Attributes are the span's, Resource its resource's, as strings.
	Attributes, Resource map[string]string
	// Via is "grpc" or "http": how it was sent.
	Via string
}

// Collector receives spans until the test ends.
type Collector struct {
	collectorpb.UnimplementedTraceServiceServer

	grpcLn, httpLn *countingListener

	mu    sync.Mutex
	spans []Span
}

// Start runs a collector on 127.0.0.1 random ports, stopped by t.Cleanup.
func Start(t testing.TB) *Collector {
	t.Helper()
	c := &Collector{}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		gl.Close()
		t.Fatal(err)
	}
	c.grpcLn, c.httpLn = &countingListener{Listener: gl}, &countingListener{Listener: hl}

	gs := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(gs, c)
	go gs.Serve(c.grpcLn)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", c.serveHTTP)
	mux.HandleFunc("POST /custom/v1/traces", c.serveHTTP)
	hs := &http.Server{Handler: mux}
	go hs.Serve(c.httpLn)

	t.Cleanup(func() {
		gs.Stop()
		hs.Close()
	})
	return c
}

// GRPCAddr is the OTLP/gRPC listener's host:port.
func (c *Collector) GRPCAddr() string { return c.grpcLn.Addr().String() }

// HTTPAddr is the OTLP/HTTP listener's host:port; it serves /v1/traces and
// /custom/v1/traces.
func (c *Collector) HTTPAddr() string { return c.httpLn.Addr().String() }

// Connections is how many connections both listeners have accepted.
func (c *Collector) Connections() int64 { return c.grpcLn.accepted.Load() + c.httpLn.accepted.Load() }

// Spans is every span received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// Export is the OTLP/gRPC TraceService.
func (c *Collector) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	c.record(req, "grpc")
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (c *Collector) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectorpb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.record(&req, "http")
	out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (c *Collector) record(req *collectorpb.ExportTraceServiceRequest, via string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, Span{
					TraceID:      hex.EncodeToString(s.GetTraceId()),
					SpanID:       hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
					Name:         s.GetName(),
					Kind:         s.GetKind(),
					Attributes:   attrs(s.GetAttributes()),
					Resource:     res,
					Via:          via,
				})
			}
		}
	}
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = x.StringValue
		default:
			m[kv.GetKey()] = v.String()
		}
	}
	return m
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return conn, err
}
