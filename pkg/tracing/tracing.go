// Package tracing owns the sidecar's OpenTelemetry setup: a tracer
// provider that exports spans over OTLP (gRPC or HTTP) through a batch
// span processor, a parent-based ratio sampler, the W3C TraceContext and
// Baggage propagators, a resource naming the service, and the gRPC server
// stats handler that continues the traces Envoy starts.
//
// Nothing here is global: the provider and the propagator are handed to the
// handler explicitly, and no OTel global (provider, propagator) is set, so
// a process that does not build a Provider has no OTel code on its request
// path at all. The one exception is OTel's error handler, which New points
// at its logger so that export failures come out as the process's own log
// lines instead of OTel's default stderr logger.
package tracing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// Protocols of the OTLP exporter.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// Defaults of Options.
const (
	// DefaultProtocol is the reference's TRACING_EXPORTER_PROTOCOL default.
	DefaultProtocol = ProtocolHTTP
	// DefaultServiceName is service.name when none is given.
	DefaultServiceName = "floodgate"
	// DefaultSamplingRate samples every trace that has no sampled parent.
	DefaultSamplingRate = 1.0
	// ShutdownTimeout bounds the flush of the spans still queued at
	// shutdown: a collector that is down cannot hold the process.
	ShutdownTimeout = 5 * time.Second
)

// httpTracesPath is the OTLP/HTTP path of traces, appended to an endpoint
// URL's path as the OTLP exporters append it to OTEL_EXPORTER_OTLP_ENDPOINT.
const httpTracesPath = "/v1/traces"

// Options configure a Provider. The zero value of each field is its
// default where it has one.
type Options struct {
	// Protocol is ProtocolGRPC or ProtocolHTTP ("" = DefaultProtocol).
	Protocol string
	// Endpoint is where spans are sent (see ParseEndpoint): "" leaves it
	// to the exporter, which reads the OTEL_EXPORTER_OTLP_* environment
	// variables and else sends to localhost (port 4317 for gRPC, 4318 for
	// HTTP).
	Endpoint string
	// Insecure sends spans in plaintext to a host:port Endpoint (or to the
	// exporter's default one); a URL's scheme says it for itself.
	Insecure bool
	// SamplingRate is the share of traces sampled, 0 to 1, when the
	// caller sent no sampling decision; a caller's decision (the sampled
	// flag of its traceparent) is always followed.
	SamplingRate float64
	// ServiceName is service.name ("" = DefaultServiceName).
	ServiceName string
	// ServiceNamespace is service.namespace ("" = none).
	ServiceNamespace string
	// ServiceInstanceID is service.instance.id ("" = a random UUID, made
	// once per Provider, as the reference makes one).
	ServiceInstanceID string
	// Log receives export failures (OTel's error handler); nil discards
	// them.
	Log *slog.Logger
}

// Endpoint is a parsed Options.Endpoint.
type Endpoint struct {
	// HostPort is the collector's host and port ("" = the exporter's own
	// default or environment).
	HostPort string
	// Path is the URL path of OTLP/HTTP requests ("" for gRPC).
	Path string
	// Insecure is plaintext (an http:// URL, or Options.Insecure).
	Insecure bool
}

// ParseEndpoint checks an endpoint for protocol. It is either host:port,
// sent to over TLS unless insecure, or a URL whose scheme (http or https)
// says whether TLS is used, read as OTEL_EXPORTER_OTLP_ENDPOINT is: for
// HTTP, /v1/traces is appended to its path; for gRPC it has no path. An
// insecure https:// URL is a contradiction.
func ParseEndpoint(protocol, raw string, insecure bool) (Endpoint, error) {
	if protocol == "" {
		protocol = DefaultProtocol
	}
	if protocol != ProtocolGRPC && protocol != ProtocolHTTP {
		return Endpoint{}, fmt.Errorf("protocol %q: must be grpc or http", protocol)
	}
	ep := Endpoint{Insecure: insecure}
	if protocol == ProtocolHTTP {
		ep.Path = httpTracesPath
	}
	if raw == "" {
		if protocol == ProtocolHTTP {
			ep.Path = "" // the exporter's default or environment
		}
		return ep, nil
	}
	if !strings.Contains(raw, "://") {
		host, port, err := net.SplitHostPort(raw)
		if err != nil || host == "" || port == "" {
			return Endpoint{}, fmt.Errorf("%q: must be host:port or an http:// or https:// URL", raw)
		}
		ep.HostPort = raw
		return ep, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("%q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return Endpoint{}, fmt.Errorf("%q: the scheme must be http or https", raw)
	case u.Host == "" || u.Hostname() == "":
		return Endpoint{}, fmt.Errorf("%q: has no host", raw)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return Endpoint{}, fmt.Errorf("%q: must not have a query, a fragment or credentials", raw)
	case insecure && u.Scheme == "https":
		return Endpoint{}, fmt.Errorf("%q: an https:// URL is not plaintext: drop the insecure setting or use http://", raw)
	case protocol == ProtocolGRPC && strings.Trim(u.Path, "/") != "":
		return Endpoint{}, fmt.Errorf("%q: a gRPC endpoint has no path", raw)
	}
	ep.HostPort = u.Host
	ep.Insecure = u.Scheme == "http"
	if protocol == ProtocolHTTP {
		ep.Path = strings.TrimSuffix(u.Path, "/") + httpTracesPath
	}
	return ep, nil
}

// CheckSamplingRate says whether r is a sampling rate.
func CheckSamplingRate(r float64) error {
	if math.IsNaN(r) || r < 0 || r > 1 {
		return fmt.Errorf("%g: must be from 0 to 1", r)
	}
	return nil
}

// Provider is a running tracer provider with its exporter.
type Provider struct {
	tp         *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
	resource   *sdkresource.Resource
}

// New builds a Provider. It connects to nothing: spans are exported in
// the background, and a collector that is down costs only the spans it
// misses (logged through Options.Log).
func New(ctx context.Context, o Options) (*Provider, error) {
	if o.Protocol == "" {
		o.Protocol = DefaultProtocol
	}
	if o.ServiceName == "" {
		o.ServiceName = DefaultServiceName
	}
	if err := CheckSamplingRate(o.SamplingRate); err != nil {
		return nil, fmt.Errorf("tracing: sampling rate %w", err)
	}
	ep, err := ParseEndpoint(o.Protocol, o.Endpoint, o.Insecure)
	if err != nil {
		return nil, fmt.Errorf("tracing: endpoint %w", err)
	}
	if o.ServiceInstanceID == "" {
		if o.ServiceInstanceID, err = randomUUID(); err != nil {
			return nil, fmt.Errorf("tracing: service instance id: %w", err)
		}
	}
	res, err := newResource(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	exp, err := newExporter(ctx, o.Protocol, ep)
	if err != nil {
		return nil, fmt.Errorf("tracing: %s exporter: %w", o.Protocol, err)
	}
	setErrorLog(o.Log)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.SamplingRate))),
	)
	return &Provider{
		tp:         tp,
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		resource:   res,
	}, nil
}

func newExporter(ctx context.Context, protocol string, ep Endpoint) (*otlptrace.Exporter, error) {
	if protocol == ProtocolGRPC {
		var opts []otlptracegrpc.Option
		if ep.HostPort != "" {
			opts = append(opts, otlptracegrpc.WithEndpoint(ep.HostPort))
		}
		if ep.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	var opts []otlptracehttp.Option
	if ep.HostPort != "" {
		opts = append(opts, otlptracehttp.WithEndpoint(ep.HostPort), otlptracehttp.WithURLPath(ep.Path))
	}
	if ep.Insecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	return otlptracehttp.New(ctx, opts...)
}

// newResource describes the process: OTEL_RESOURCE_ATTRIBUTES first, then
// the SDK's own attributes, then the service's, which win.
func newResource(ctx context.Context, o Options) (*sdkresource.Resource, error) {
	attrs := []attribute.KeyValue{
		semconv.ServiceName(o.ServiceName),
		semconv.ServiceInstanceID(o.ServiceInstanceID),
	}
	if o.ServiceNamespace != "" {
		attrs = append(attrs, semconv.ServiceNamespace(o.ServiceNamespace))
	}
	return sdkresource.New(ctx,
		sdkresource.WithFromEnv(),
		sdkresource.WithTelemetrySDK(),
		sdkresource.WithSchemaURL(semconv.SchemaURL),
		sdkresource.WithAttributes(attrs...),
	)
}

// setErrorLog routes OTel's errors (failed exports, mostly) to log.
func setErrorLog(log *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		if log != nil {
			log.Warn("tracing: span export failed", "err", err.Error())
		}
	}))
}

// randomUUID is a version 4 UUID.
func randomUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// TracerProvider is the provider, for instrumentation.
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tp }

// Propagator reads and writes W3C traceparent, tracestate and baggage.
func (p *Provider) Propagator() propagation.TextMapPropagator { return p.propagator }

// Resource is what the spans say about the process.
func (p *Provider) Resource() *sdkresource.Resource { return p.resource }

// ServerHandler is the gRPC server stats handler that makes a server span
// of every call, continuing the trace of the caller's traceparent. Health
// checks and reflection are left out: probes every few seconds would
// otherwise fill the traces. OTel metrics are off (the sidecar has its
// Prometheus ones).
func (p *Provider) ServerHandler() stats.Handler {
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(p.tp),
		otelgrpc.WithPropagators(p.propagator),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithFilter(filters.None(filters.HealthCheck(), filters.ServicePrefix("grpc.reflection."))),
	)
}

// ForceFlush exports the spans queued so far.
func (p *Provider) ForceFlush(ctx context.Context) error { return p.tp.ForceFlush(ctx) }

// Shutdown exports the spans still queued and stops the exporter, within
// ShutdownTimeout or ctx, whichever ends first. Spans ended afterwards are
// dropped.
func (p *Provider) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ShutdownTimeout)
	defer cancel()
	if err := p.tp.Shutdown(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("tracing: spans not flushed within %s: %w", ShutdownTimeout, err)
		}
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// TraceID is the trace ID of the sampled span ctx carries, as 32 hex
// digits: what a metric's exemplar names. ok is false without one (no
// span, or one not sampled, whose trace no collector will have).
func TraceID(ctx context.Context) (id string, ok bool) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() || !sc.TraceID().IsValid() {
		return "", false
	}
	return sc.TraceID().String(), true
}
