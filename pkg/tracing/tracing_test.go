package tracing_test

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/floodgate/floodgate/internal/otlptest"
	"github.com/floodgate/floodgate/pkg/tracing"
)

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		protocol, raw string
		insecure      bool
		want          tracing.Endpoint
		err           string
	}{
		{"http", "", false, tracing.Endpoint{}, ""},
		{"grpc", "", true, tracing.Endpoint{Insecure: true}, ""},
		{"", "collector:4318", false, tracing.Endpoint{HostPort: "collector:4318", Path: "/v1/traces"}, ""},
		{"http", "127.0.0.1:4318", true, tracing.Endpoint{HostPort: "127.0.0.1:4318", Path: "/v1/traces", Insecure: true}, ""},
		{"grpc", "[::1]:4317", true, tracing.Endpoint{HostPort: "[::1]:4317", Insecure: true}, ""},
		// URLs read as OTEL_EXPORTER_OTLP_ENDPOINT: the scheme says TLS,
		// HTTP appends the signal's path.
		{"http", "http://otel.observability:4318", false, tracing.Endpoint{HostPort: "otel.observability:4318", Path: "/v1/traces", Insecure: true}, ""},
		{"http", "http://otel:4318/", false, tracing.Endpoint{HostPort: "otel:4318", Path: "/v1/traces", Insecure: true}, ""},
		{"http", "https://otel:4318/prefix", false, tracing.Endpoint{HostPort: "otel:4318", Path: "/prefix/v1/traces"}, ""},
		{"http", "http://otel:4318", true, tracing.Endpoint{HostPort: "otel:4318", Path: "/v1/traces", Insecure: true}, ""},
		{"grpc", "http://otel:4317", false, tracing.Endpoint{HostPort: "otel:4317", Insecure: true}, ""},
		{"grpc", "https://otel:4317/", false, tracing.Endpoint{HostPort: "otel:4317"}, ""},

		{"zipkin", "", false, tracing.Endpoint{}, "must be grpc or http"},
		{"http", "otel", false, tracing.Endpoint{}, "must be host:port or an http:// or https:// URL"},
		{"http", ":4318", false, tracing.Endpoint{}, "must be host:port"},
		{"http", "ftp://otel:21", false, tracing.Endpoint{}, "scheme must be http or https"},
		{"http", "http://:4318", false, tracing.Endpoint{}, "has no host"},
		{"http", "http://otel:4318?x=1", false, tracing.Endpoint{}, "must not have a query"},
		{"http", "http://user:pw@otel:4318", false, tracing.Endpoint{}, "credentials"},
		{"http", "https://otel:4318", true, tracing.Endpoint{}, "not plaintext"},
		{"grpc", "http://otel:4317/v1/traces", false, tracing.Endpoint{}, "a gRPC endpoint has no path"},
	}
	for _, tt := range tests {
		got, err := tracing.ParseEndpoint(tt.protocol, tt.raw, tt.insecure)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseEndpoint(%q, %q, %v) err = %v, want one saying %q", tt.protocol, tt.raw, tt.insecure, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseEndpoint(%q, %q, %v) = %+v, %v; want %+v", tt.protocol, tt.raw, tt.insecure, got, err, tt.want)
		}
	}
}

func TestCheckSamplingRate(t *testing.T) {
	t.Parallel()
	for _, r := range []float64{0, 0.1, 1} {
		if err := tracing.CheckSamplingRate(r); err != nil {
			t.Errorf("CheckSamplingRate(%g) = %v, want nil", r, err)
		}
	}
	zero := 0.0
	for _, r := range []float64{-0.1, 1.5, zero / zero} {
		if err := tracing.CheckSamplingRate(r); err == nil {
			t.Errorf("CheckSamplingRate(%g) = nil, want an error", r)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []tracing.Options{
		{Protocol: "thrift", SamplingRate: 1},
		{SamplingRate: 2},
		{Endpoint: "no-port", SamplingRate: 1},
	} {
		if p, err := tracing.New(context.Background(), o); err == nil {
			p.Shutdown(context.Background())
			t.Errorf("New(%+v) = nil error, want one", o)
		}
	}
}

// export sends one span through a Provider for o and returns what the
// collector received, after the flush of Shutdown.
func export(t *testing.T, c *otlptest.Collector, o tracing.Options, parent trace.SpanContext) []otlptest.Span {
	t.Helper()
	p, err := tracing.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	_, span := p.TracerProvider().Tracer("test").Start(ctx, "op", trace.WithSpanKind(trace.SpanKindServer))
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	return c.Spans()
}

func TestExportsOverBothProtocols(t *testing.T) {
	t.Parallel()
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, tt := range []struct {
		name string
		o    func(c *otlptest.Collector) tracing.Options
		via  string
	}{
		{"grpc host:port", func(c *otlptest.Collector) tracing.Options {
			return tracing.Options{Protocol: "grpc", Endpoint: c.GRPCAddr(), Insecure: true, SamplingRate: 1}
		}, "grpc"},
		{"grpc URL", func(c *otlptest.Collector) tracing.Options {
			return tracing.Options{Protocol: "grpc", Endpoint: "http://" + c.GRPCAddr(), SamplingRate: 1}
		}, "grpc"},
		{"http host:port", func(c *otlptest.Collector) tracing.Options {
			return tracing.Options{Protocol: "http", Endpoint: c.HTTPAddr(), Insecure: true, SamplingRate: 1}
		}, "http"},
		{"http URL with a path", func(c *otlptest.Collector) tracing.Options {
			return tracing.Options{Protocol: "http", Endpoint: "http://" + c.HTTPAddr() + "/custom", SamplingRate: 1,
				ServiceName: "rl", ServiceNamespace: "gateway", ServiceInstanceID: "pod-1"}
		}, "http"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := otlptest.Start(t)
			o := tt.o(c)
			spans := export(t, c, o, trace.SpanContext{})
			if len(spans) != 1 {
				t.Fatalf("collector got %d spans, want 1: %+v", len(spans), spans)
			}
			s := spans[0]
			if s.Via != tt.via || s.Name != "op" || s.ParentSpanID != "" {
				t.Errorf("span = %+v, want op via %s without parent", s, tt.via)
			}
			wantName := o.ServiceName
			if wantName == "" {
				wantName = tracing.DefaultServiceName
			}
			if got := s.Resource["service.name"]; got != wantName {
				t.Errorf("service.name = %q, want %q", got, wantName)
			}
			if got := s.Resource["service.namespace"]; got != o.ServiceNamespace {
				t.Errorf("service.namespace = %q, want %q", got, o.ServiceNamespace)
			}
			id := s.Resource["service.instance.id"]
			if o.ServiceInstanceID != "" && id != o.ServiceInstanceID || o.ServiceInstanceID == "" && !uuid.MatchString(id) {
				t.Errorf("service.instance.id = %q, want %q or a random UUID", id, o.ServiceInstanceID)
			}
		})
	}
}

func TestSamplerFollowsTheParent(t *testing.T) {
	t.Parallel()
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled, Remote: true})
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, Remote: true})
	for _, tt := range []struct {
		name   string
		rate   float64
		parent trace.SpanContext
		want   int
	}{
		{"rate 0, no parent: dropped", 0, trace.SpanContext{}, 0},
		{"rate 0, sampled parent: kept", 0, sampled, 1},
		{"rate 1, unsampled parent: dropped", 1, unsampled, 0},
		{"rate 1, no parent: kept", 1, trace.SpanContext{}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := otlptest.Start(t)
			spans := export(t, c, tracing.Options{Protocol: "grpc", Endpoint: c.GRPCAddr(), Insecure: true, SamplingRate: tt.rate}, tt.parent)
			if len(spans) != tt.want {
				t.Fatalf("collector got %d spans, want %d", len(spans), tt.want)
			}
			if tt.want == 1 && tt.parent.IsValid() {
				if s := spans[0]; s.TraceID != traceID.String() || s.ParentSpanID != spanID.String() {
					t.Errorf("span trace %s parent %s, want %s and %s", s.TraceID, s.ParentSpanID, traceID, spanID)
				}
			}
		})
	}
}

func TestPropagatorReadsTraceparentAndBaggage(t *testing.T) {
	t.Parallel()
	p, err := tracing.New(context.Background(), tracing.Options{Endpoint: "127.0.0.1:1", Insecure: true, SamplingRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	carrier := propagation.MapCarrier{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"baggage":     "tenant=acme",
	}
	ctx := p.Propagator().Extract(context.Background(), carrier)
	if id, ok := tracing.TraceID(ctx); !ok || id != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("TraceID = %q, %v; want the traceparent's", id, ok)
	}
	out := propagation.MapCarrier{}
	p.Propagator().Inject(ctx, out)
	if out["baggage"] != "tenant=acme" {
		t.Errorf("baggage = %q, want tenant=acme carried on", out["baggage"])
	}
}

func TestTraceIDOnlyForSampledSpans(t *testing.T) {
	t.Parallel()
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	if _, ok := tracing.TraceID(context.Background()); ok {
		t.Error("TraceID of a context without a span: ok")
	}
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID}))
	if _, ok := tracing.TraceID(unsampled); ok {
		t.Error("TraceID of an unsampled span: ok")
	}
}

// A collector that accepts connections and never answers (a stalled
// one) holds Shutdown no longer than its context: it returns an error.
func TestShutdownWithStalledCollectorIsBounded(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // never accepted: the kernel completes handshakes
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p, err := tracing.New(context.Background(), tracing.Options{Protocol: "grpc", Endpoint: ln.Addr().String(), Insecure: true, SamplingRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "op")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); err == nil {
		t.Error("Shutdown with a stalled collector = nil, want the flush's error")
	}
}
