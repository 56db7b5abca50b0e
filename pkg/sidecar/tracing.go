package sidecar

import (
	"context"
	"flag"
	"fmt"

	"google.golang.org/grpc"

	"github.com/floodgate/floodgate/pkg/tracing"
)

// TracingSettings export OpenTelemetry traces of the gRPC calls
// (--tracing-*). Off by default: then no OTel code is on the request path.
type TracingSettings struct {
	Enabled  bool   // --tracing-enabled
	Endpoint string // --tracing-endpoint: host:port or an http(s):// URL ("" = the exporter's default, or OTEL_EXPORTER_OTLP_*)
	Protocol string // --tracing-protocol: grpc or http
	// Insecure sends spans in plaintext to a host:port endpoint
	// (--tracing-insecure); an http:// URL is plaintext by itself.
	Insecure          bool
	SamplingRate      float64 // --tracing-sampling-rate, 0 to 1
	ServiceName       string  // --tracing-service-name
	ServiceNamespace  string  // --tracing-service-namespace
	ServiceInstanceID string  // --tracing-service-instance-id ("" = a random UUID)
}

func (t *TracingSettings) flags(fs *flag.FlagSet) {
	fs.BoolVar(&t.Enabled, "tracing-enabled", false, "export OpenTelemetry traces of the gRPC calls over OTLP, continuing the traceparent Envoy sends, and put trace IDs on the decision histogram as exemplars")
	fs.StringVar(&t.Endpoint, "tracing-endpoint", "", "with --tracing-enabled: the OTLP collector, host:port or a URL read as OTEL_EXPORTER_OTLP_ENDPOINT (http:// is plaintext; for http, /v1/traces is appended to its path); empty: OTEL_EXPORTER_OTLP_ENDPOINT or localhost")
	fs.StringVar(&t.Protocol, "tracing-protocol", tracing.DefaultProtocol, "with --tracing-enabled: OTLP over grpc or http (protobuf)")
	fs.BoolVar(&t.Insecure, "tracing-insecure", false, "with --tracing-enabled: send spans to a host:port --tracing-endpoint in plaintext instead of TLS (a collector on loopback or in the pod)")
	fs.Float64Var(&t.SamplingRate, "tracing-sampling-rate", tracing.DefaultSamplingRate, "with --tracing-enabled: share of traces sampled, 0 to 1, when the caller's traceparent brings no sampling decision")
	fs.StringVar(&t.ServiceName, "tracing-service-name", tracing.DefaultServiceName, "with --tracing-enabled: the spans' service.name")
	fs.StringVar(&t.ServiceNamespace, "tracing-service-namespace", "", "with --tracing-enabled: the spans' service.namespace")
	fs.StringVar(&t.ServiceInstanceID, "tracing-service-instance-id", "", "with --tracing-enabled: the spans' service.instance.id (default: a random UUID; the pod name is a good one)")
}

// check reports unusable tracing settings through bad. The settings that
// only mean something with --tracing-enabled and have no default fail
// without it, so a forgotten --tracing-enabled is not silently no tracing.
func (t TracingSettings) check(bad func(string, ...any)) {
	switch t.Protocol {
	case tracing.ProtocolGRPC, tracing.ProtocolHTTP:
		if _, err := tracing.ParseEndpoint(t.Protocol, t.Endpoint, t.Insecure); err != nil {
			bad("--tracing-endpoint: %v (with --tracing-protocol=%s)", err, t.Protocol)
		}
	default:
		bad("--tracing-protocol=%q: must be grpc or http", t.Protocol)
	}
	if err := tracing.CheckSamplingRate(t.SamplingRate); err != nil {
		bad("--tracing-sampling-rate=%v", err)
	}
	if t.ServiceName == "" {
		bad("--tracing-service-name: must not be empty")
	}
	if t.Enabled {
		return
	}
	for _, f := range []struct {
		flag string
		set  bool
	}{
		{"--tracing-endpoint", t.Endpoint != ""}, {"--tracing-insecure", t.Insecure},
		{"--tracing-service-namespace", t.ServiceNamespace != ""}, {"--tracing-service-instance-id", t.ServiceInstanceID != ""},
	} {
		if f.set {
			bad("%s needs --tracing-enabled", f.flag)
		}
	}
}

// startTracing builds the tracer provider when --tracing-enabled is set
// (nil otherwise). It connects to nothing yet.
func (m *Main) startTracing() error {
	t := m.settings.Tracing
	if !t.Enabled {
		return nil
	}
	p, err := tracing.New(context.Background(), tracing.Options{
		Protocol:          t.Protocol,
		Endpoint:          t.Endpoint,
		Insecure:          t.Insecure,
		SamplingRate:      t.SamplingRate,
		ServiceName:       t.ServiceName,
		ServiceNamespace:  t.ServiceNamespace,
		ServiceInstanceID: t.ServiceInstanceID,
		Log:               m.log,
	})
	if err != nil {
		return fmt.Errorf("--tracing-enabled: %w", err)
	}
	m.tracing = p
	m.log.Info("tracing", "protocol", t.Protocol, "endpoint", t.Endpoint, "sampling_rate", t.SamplingRate, "service_name", t.ServiceName)
	return nil
}

// tracingServerOptions are the gRPC server's options for tracing: its
// stats handler, or nothing at all when tracing is off.
func (m *Main) tracingServerOptions() []grpc.ServerOption {
	if m.tracing == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(m.tracing.ServerHandler())}
}

// traceIDs is the engine's exemplar source: nil (nothing looked up) when
// tracing is off.
func traceIDs(s Settings) func(context.Context) (string, bool) {
	if !s.Tracing.Enabled {
		return nil
	}
	return tracing.TraceID
}

// stopTracing flushes the spans still queued, within
// tracing.ShutdownTimeout; a collector that is down costs them, not the
// shutdown.
func (m *Main) stopTracing() {
	if m.tracing == nil {
		return
	}
	if err := m.tracing.Shutdown(context.Background()); err != nil {
		m.log.Warn("tracing: spans lost at shutdown", "err", err.Error())
	}
}
