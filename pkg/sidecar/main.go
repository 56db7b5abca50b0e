package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/ratelimitsvc"
)

// gRPC server settings (see Start).
const (
	// streamWorkers covers the calls a sidecar has in flight under load.
	streamWorkers = 128
	flowWindow    = 1 << 20
)

// Main is one running sidecar: start it with Start, stop it with Shutdown
// (or both with Run).
type Main struct {
	settings Settings
	log      *slog.Logger
	registry *prometheus.Registry

	limiter quota.Limiter
	closeFn func() error
	eng     *engine.Engine
	svc     *ratelimitsvc.Service
	health  *health.Server
	grpcSrv *grpc.Server
	httpSrv *http.Server
	grpcLn  net.Listener
	httpLn  net.Listener
	reload  *reloader

	ready    atomic.Bool
	stopOnce sync.Once
	done     chan struct{} // closed when the reload loop has ended
	cancel   context.CancelFunc
	serveErr chan error
}

// New returns a Main for s, logging to log. Nothing starts until Start.
func New(s Settings, log *slog.Logger) *Main {
	return &Main{settings: s, log: log, registry: prometheus.NewRegistry()}
}

// Registry is the Prometheus registry served on /metrics.
func (m *Main) Registry() *prometheus.Registry { return m.registry }

// GRPCAddr is the bound gRPC address (valid after Start).
func (m *Main) GRPCAddr() string { return m.grpcLn.Addr().String() }

// HTTPAddr is the bound HTTP address (valid after Start).
func (m *Main) HTTPAddr() string { return m.httpLn.Addr().String() }

// Service is the rate-limit service (valid after Start).
func (m *Main) Service() *ratelimitsvc.Service { return m.svc }

// Start loads the config, connects the backend and starts both listeners.
// It returns once both accept connections; a config that does not load,
// a backend that cannot be built or an address that cannot be bound fails it.
func (m *Main) Start(ctx context.Context) error {
	s := m.settings
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := engine.NewMetrics(m.registry)

	cfg, err := descriptors.Load(s.Config, descriptors.Options{MergeDomains: s.MergeDomains})
	if err != nil {
		return fmt.Errorf("config %s: %w", s.Config, err)
	}
	limiter, closeFn, err := newLimiter(s, m.registry, m.log)
	if err != nil {
		return fmt.Errorf("backend %s: %w", s.Backend, err)
	}
	m.limiter, m.closeFn = limiter, closeFn
	m.eng, err = engine.New(engine.Options{
		Limiter:    limiter,
		FailOpen:   s.FailOpen,
		ShadowMode: s.ShadowMode,
		QuotaMode:  s.QuotaMode,
		Metrics:    metrics,
		Log:        m.log,
	})
	if err == nil {
		m.svc, err = ratelimitsvc.New(m.eng, ratelimitsvc.Options{
			NoHeaders:       !s.Headers,
			MaxDescriptors:  s.MaxDescriptors,
			MaxEntries:      s.MaxEntries,
			MaxValueBytes:   s.MaxValueBytes,
			DynamicMetadata: s.DynamicMetadata,
		})
	}
	if err != nil {
		m.closeBackend()
		return err
	}
	m.eng.SetConfig(cfg)
	for _, d := range cfg.Domains() {
		m.log.Info("domain loaded", "domain", d.Name, "rules", len(d.Rules()), "files", d.Files)
	}

	if m.grpcLn, err = net.Listen("tcp", s.GRPCAddr); err != nil {
		m.closeBackend()
		return fmt.Errorf("--grpc-addr %s: %w", s.GRPCAddr, err)
	}
	if m.httpLn, err = net.Listen("tcp", s.HTTPAddr); err != nil {
		m.grpcLn.Close()
		m.closeBackend()
		return fmt.Errorf("--http-addr %s: %w", s.HTTPAddr, err)
	}

	m.grpcSrv = grpc.NewServer(
		// Measured under load (docs/benchmarks.md): stream workers reuse
		// goroutines whose stacks have already grown, instead of a new
		// goroutine per call that grows its stack again (runtime.morestack
		// was a tenth of the CPU); calls beyond them get a goroutine each.
		grpc.NumStreamWorkers(streamWorkers),
		// Fixed flow-control windows turn off grpc-go's BDP estimator,
		// whose pings cost syscalls on every busy connection; rate-limit
		// messages are far smaller than these windows.
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
		grpc.ChainUnaryInterceptor(m.recoverUnary),
	)
	rlsv3.RegisterRateLimitServiceServer(m.grpcSrv, m.svc)
	m.health = health.NewServer()
	healthpb.RegisterHealthServer(m.grpcSrv, m.health)
	reflection.Register(m.grpcSrv)
	m.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	m.health.SetServingStatus(rlsv3.RateLimitService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	m.httpSrv = &http.Server{Handler: m.httpHandler(), ReadHeaderTimeout: 5 * time.Second}

	m.reload = newReloader(s.Config, descriptors.Options{MergeDomains: s.MergeDomains}, m.eng, m.log, m.registry)
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.done = make(chan struct{})
	go func() {
		defer close(m.done)
		m.reload.run(loopCtx, s.ReloadEvery)
	}()

	m.serveErr = make(chan error, 2)
	go func() { m.serveErr <- m.grpcSrv.Serve(m.grpcLn) }()
	go func() {
		if err := m.httpSrv.Serve(m.httpLn); !errors.Is(err, http.ErrServerClosed) {
			m.serveErr <- err
			return
		}
		m.serveErr <- nil
	}()
	m.ready.Store(true)
	m.log.Info("listening", "grpc", m.GRPCAddr(), "http", m.HTTPAddr(), "backend", s.Backend, "config", s.Config)
	return nil
}

// Run starts the sidecar and serves until ctx ends, then shuts down.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-m.serveErr:
		if err != nil {
			m.log.Error("listener failed", "err", err)
		}
	}
	return m.Shutdown()
}

// Shutdown stops the sidecar gracefully: health turns NOT_SERVING and
// /readyz fails first, then in-flight calls finish (up to --shutdown-timeout,
// after which they are cut), then the backend closes.
func (m *Main) Shutdown() error {
	var err error
	m.stopOnce.Do(func() {
		m.log.Info("shutting down", "timeout", m.settings.ShutdownWait.String())
		m.ready.Store(false)
		m.health.Shutdown()
		m.cancel()
		<-m.done

		ctx, cancel := context.WithTimeout(context.Background(), m.settings.ShutdownWait)
		defer cancel()
		stopped := make(chan struct{})
		go func() {
			m.grpcSrv.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-ctx.Done():
			m.log.Warn("shutdown timeout: cutting in-flight calls")
			m.grpcSrv.Stop()
			<-stopped
		}
		if herr := m.httpSrv.Shutdown(ctx); herr != nil {
			m.httpSrv.Close()
		}
		err = m.closeBackend()
		m.log.Info("stopped")
	})
	return err
}

func (m *Main) closeBackend() error {
	if m.closeFn == nil {
		return nil
	}
	return m.closeFn()
}

// recoverUnary turns a panic in a handler into INTERNAL, so bad input can
// never take the process down.
func (m *Main) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(ctx, req)
}

func (m *Main) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := m.readiness(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry}))
	mux.HandleFunc("GET /debug/config", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(m.reload.describe())
	})
	if m.settings.PProf {
		// Served only when asked for: the package's own registration on
		// http.DefaultServeMux is never served.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// readiness is nil when the sidecar should receive traffic: started, not
// shutting down, a config loaded and the backend reachable.
func (m *Main) readiness(ctx context.Context) error {
	if !m.ready.Load() {
		return errors.New("shutting down")
	}
	if m.eng.Config() == nil {
		return errors.New("no config loaded")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	p, ok := m.limiter.(quota.Pinger)
	if !ok {
		return nil
	}
	if err := p.Ping(ctx); err != nil && !m.settings.FailOpen {
		// With --fail-open the sidecar answers OK without its backend, so
		// taking the pod out of service would defeat the choice.
		return fmt.Errorf("backend: %w", err)
	}
	return nil
}
