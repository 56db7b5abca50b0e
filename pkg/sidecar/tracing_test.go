package sidecar_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/floodgate/floodgate/internal/otlptest"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

// Envoy's traceparent for the calls: its trace and its span (the parent of
// the sidecar's server span), sampled.
const (
	envoyTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	envoySpan   = "00f067aa0ba902b7"
	traceparent = "00-" + envoyTrace + "-" + envoySpan + "-01"
	rlsMethod   = "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
)

// openMetrics fetches /metrics in the OpenMetrics format, as Prometheus
// asks for it when it scrapes exemplars.
func openMetrics(t *testing.T, r *running) (contentType, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+r.main.HTTPAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0;charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Header.Get("Content-Type"), string(b)
}

// decisionExemplar matches a bucket of the decision histogram carrying an
// exemplar with a trace id.
var decisionExemplar = regexp.MustCompile(`(?m)^floodgate_ratelimit_decision_seconds_bucket\{le="[^"]+"\} \d+ # \{trace_id="([0-9a-f]{32})"\} `)

// decisionCount is the decision histogram's sample count line.
var decisionCount = regexp.MustCompile(`(?m)^floodgate_ratelimit_decision_seconds_count [1-9]`)

// callUntil sends ShouldRateLimit with ctx until done says so (checked
// every 10 calls), at most 3000 calls: one call in 8 is timed, drawn at
// random, so a timed one comes within a few dozen.
func callUntil(t *testing.T, r *running, ctx context.Context, done func() bool) {
	t.Helper()
	req := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}}}
	for i := 1; i <= 3000; i++ {
		if _, err := r.rls.ShouldRateLimit(ctx, req); err != nil {
			t.Fatalf("ShouldRateLimit: %v", err)
		}
		if i%10 == 0 && done() {
			return
		}
	}
	t.Fatal("condition not met after 3000 calls")
}

func TestTracingContinuesEnvoysTrace(t *testing.T) {
	t.Parallel()
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			c := otlptest.Start(t)
			endpoint := c.GRPCAddr()
			if protocol == "http" {
				endpoint = "http://" + c.HTTPAddr()
			}
			file := filepath.Join(t.TempDir(), "api.yaml")
			writeFile(t, file, limitConfig("api", 1_000_000))
			args := []string{"--config=" + file, "--tracing-enabled", "--tracing-protocol=" + protocol, "--tracing-endpoint=" + endpoint,
				"--tracing-service-name=rl-test", "--tracing-service-namespace=gateway", "--tracing-service-instance-id=pod-7"}
			if protocol == "grpc" {
				args = append(args, "--tracing-insecure")
			}
			r := start(t, args...)
			if !sidecar.Tracing(r.main) {
				t.Fatal("--tracing-enabled built no tracer provider")
			}
			// Health probes are not traced.
			if _, err := healthpb.NewHealthClient(r.conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}

			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent, "baggage", "tenant=acme")
			var body string
			callUntil(t, r, ctx, func() bool {
				_, body = openMetrics(t, r)
				return decisionExemplar.MatchString(body)
			})
			for _, m := range decisionExemplar.FindAllStringSubmatch(body, -1) {
				if m[1] != envoyTrace {
					t.Errorf("exemplar names trace %s, want Envoy's %s", m[1], envoyTrace)
				}
			}
			if ct, _ := openMetrics(t, r); !strings.HasPrefix(ct, "application/openmetrics-text") {
				t.Errorf("Content-Type %q asking for OpenMetrics, want application/openmetrics-text", ct)
			}
			// A scraper that does not ask gets the text format, without
			// exemplars.
			resp, err := http.Get("http://" + r.main.HTTPAddr() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || strings.Contains(string(plain), "# {trace_id") {
				t.Errorf("plain GET /metrics: Content-Type %q, exemplars in it: %v; want the text format without", ct, strings.Contains(string(plain), "# {trace_id"))
			}
			if _, sdk := otel.GetTracerProvider().(*sdktrace.TracerProvider); sdk {
				t.Error("the global tracer provider was set; the sidecar passes its own")
			}

			// Shutdown flushes the spans still queued.
			if err := r.main.Shutdown(); err != nil {
				t.Fatal(err)
			}
			spans := c.Spans()
			var served int
			for _, s := range spans {
				if strings.Contains(s.Name, "grpc.health") {
					t.Errorf("a health check was traced: %+v", s)
				}
				if s.Name != rlsMethod {
					continue
				}
				served++
				if s.TraceID != envoyTrace || s.ParentSpanID != envoySpan || s.Kind != tracepb.Span_SPAN_KIND_SERVER {
					t.Errorf("server span trace %s parent %s kind %v, want Envoy's trace %s, parent %s, SERVER", s.TraceID, s.ParentSpanID, s.Kind, envoyTrace, envoySpan)
				}
				if s.Via != protocol {
					t.Errorf("span came over %s, want %s", s.Via, protocol)
				}
				for k, want := range map[string]string{"service.name": "rl-test", "service.namespace": "gateway", "service.instance.id": "pod-7"} {
					if got := s.Resource[k]; got != want {
						t.Errorf("resource %s = %q, want %q", k, got, want)
					}
				}
			}
			if served == 0 {
				t.Fatalf("no %s span among the %d exported", rlsMethod, len(spans))
			}
		})
	}
}

// Without --tracing-enabled nothing of OpenTelemetry runs: no handler, no
// exporter (so OTEL_EXPORTER_OTLP_ENDPOINT is never read and the collector
// it names sees no connection), no exemplar. With it and no
// --tracing-endpoint, the exporter goes where that variable says. Not
// parallel: it sets the process's environment.
func TestTracingOffInstallsNothing(t *testing.T) {
	c := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+c.HTTPAddr())
	file := filepath.Join(t.TempDir(), "api.yaml")
	writeFile(t, file, limitConfig("api", 1_000_000))
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent)

	r := start(t, "--config="+file)
	if sidecar.Tracing(r.main) {
		t.Fatal("a tracer provider without --tracing-enabled")
	}
	var body string
	callUntil(t, r, ctx, func() bool {
		_, body = openMetrics(t, r)
		return decisionCount.MatchString(body)
	})
	if decisionExemplar.MatchString(body) {
		t.Errorf("an exemplar with tracing off:\n%s", decisionExemplar.FindString(body))
	}
	if err := r.main.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if n, spans := c.Connections(), c.Spans(); n != 0 || len(spans) != 0 {
		t.Fatalf("tracing off: the collector saw %d connections and %d spans, want none", n, len(spans))
	}
	if _, sdk := otel.GetTracerProvider().(*sdktrace.TracerProvider); sdk {
		t.Error("the global tracer provider was set")
	}

	// The positive control: the same environment, tracing on.
	r = start(t, "--config="+file, "--tracing-enabled")
	callUntil(t, r, ctx, func() bool { return true })
	if err := r.main.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if len(c.Spans()) == 0 {
		t.Fatal("--tracing-enabled without --tracing-endpoint sent nothing to OTEL_EXPORTER_OTLP_ENDPOINT")
	}
}

func TestTracingSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		err  string // "" = valid
	}{
		{[]string{"--tracing-enabled"}, ""},
		{[]string{"--tracing-enabled", "--tracing-protocol=grpc", "--tracing-endpoint=otel:4317", "--tracing-insecure", "--tracing-sampling-rate=0.25"}, ""},
		{[]string{"--tracing-enabled", "--tracing-endpoint=http://otel.observability:4318"}, ""},
		{[]string{"--tracing-enabled", "--tracing-protocol=zipkin"}, `--tracing-protocol="zipkin": must be grpc or http`},
		{[]string{"--tracing-enabled", "--tracing-sampling-rate=1.5"}, "--tracing-sampling-rate=1.5: must be from 0 to 1"},
		{[]string{"--tracing-enabled", "--tracing-sampling-rate=-1"}, "--tracing-sampling-rate=-1"},
		{[]string{"--tracing-enabled", "--tracing-endpoint=otel"}, "--tracing-endpoint"},
		{[]string{"--tracing-enabled", "--tracing-endpoint=https://otel:4318", "--tracing-insecure"}, "--tracing-endpoint"},
		{[]string{"--tracing-enabled", "--tracing-protocol=grpc", "--tracing-endpoint=http://otel:4317/v1/traces"}, "a gRPC endpoint has no path"},
		{[]string{"--tracing-enabled", "--tracing-service-name="}, "--tracing-service-name: must not be empty"},
		{[]string{"--tracing-endpoint=otel:4318"}, "--tracing-endpoint needs --tracing-enabled"},
		{[]string{"--tracing-insecure"}, "--tracing-insecure needs --tracing-enabled"},
		{[]string{"--tracing-service-instance-id=pod"}, "--tracing-service-instance-id needs --tracing-enabled"},
	}
	for _, tt := range tests {
		_, err := sidecar.ParseSettings(tt.args, func(string) string { return "" }, io.Discard)
		if tt.err == "" && err != nil {
			t.Errorf("%q: %v, want valid", tt.args, err)
		}
		if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%q: err = %v, want one saying %q", tt.args, err, tt.err)
		}
	}
	// SIDECAR_TRACING_* work as every flag's variable does.
	env := map[string]string{"SIDECAR_TRACING_ENABLED": "true", "SIDECAR_TRACING_SAMPLING_RATE": "0.5", "SIDECAR_TRACING_PROTOCOL": "grpc"}
	s, err := sidecar.ParseSettings(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || !s.Tracing.Enabled || s.Tracing.SamplingRate != 0.5 || s.Tracing.Protocol != "grpc" {
		t.Errorf("from SIDECAR_TRACING_*: %+v, %v", s.Tracing, err)
	}
}

// BenchmarkShouldRateLimitTracing measures one ShouldRateLimit over
// loopback gRPC with tracing off, and on with every call sampled (Envoy's
// traceparent, flag 01) and exported to a loopback collector.
func BenchmarkShouldRateLimitTracing(b *testing.B) {
	for _, tc := range []struct {
		name    string
		tracing bool
	}{{"off", false}, {"on-sampled", true}} {
		b.Run(tc.name, func(b *testing.B) {
			c := otlptest.Start(b)
			file := filepath.Join(b.TempDir(), "api.yaml")
			if err := os.WriteFile(file, []byte(limitConfig("api", 1_000_000_000)), 0o644); err != nil {
				b.Fatal(err)
			}
			args := []string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--config=" + file, "--log-level=error"}
			if tc.tracing {
				args = append(args, "--tracing-enabled", "--tracing-protocol=grpc", "--tracing-endpoint="+c.GRPCAddr(), "--tracing-insecure")
			}
			s, err := sidecar.ParseSettings(args, func(string) string { return "" }, io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			m := sidecar.New(s, slog.New(slog.NewJSONHandler(io.Discard, nil)))
			if err := m.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer m.Shutdown()
			conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			rls := rlsv3.NewRateLimitServiceClient(conn)
			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent)
			req := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := rls.ShouldRateLimit(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
