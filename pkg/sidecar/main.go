package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strings"
	"sync"
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

	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/authsvc"
	"github.com/floodgate/floodgate/pkg/cacheconfig"
	"github.com/floodgate/floodgate/pkg/configsource"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/extprocsvc"
	"github.com/floodgate/floodgate/pkg/jwtauth"
	"github.com/floodgate/floodgate/pkg/nearcache"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/ratelimitsvc"
	"github.com/floodgate/floodgate/pkg/redisstore"
	"github.com/floodgate/floodgate/pkg/respcache"
	"github.com/floodgate/floodgate/pkg/tlsreload"
	"github.com/floodgate/floodgate/pkg/tracing"
	"github.com/floodgate/floodgate/pkg/xdsconfig"
)

// gRPC server settings (see Start).
const (
	// httpHeaderTimeout bounds reading a request's headers on the HTTP
	// and debug listeners.
	httpHeaderTimeout = 5 * time.Second
	// streamWorkers covers the calls a sidecar has in flight under load.
	streamWorkers = 128
	flowWindow    = 1 << 20
)

// Main is one running sidecar: start it with Start, stop it with Shutdown
// (or both with Run). It serves a list of doors (gRPC services, see doors)
// on one gRPC listener, plus HTTP for health, metrics and debug, as one
// group of actors with one lifecycle.
type Main struct {
	settings Settings
	log      *slog.Logger
	registry *prometheus.Registry
	// loadLimits reads the limits config; tests may replace it.
	loadLimits configsource.Loader[*descriptors.Config]
	// loadAuth reads the auth config and newVerifier builds its JWT
	// verifier; tests may replace them.
	loadAuth func(path string) (*authconfig.Config, error)

	// jwtMetrics count every verifier's JWKS loads and cache hits: one
	// set, registered once, across reloads.
	jwtMetrics *jwtauth.Metrics
	// vmu guards verifier, the JWT verifier of the auth config in force,
	// and built, the last one a load built (they differ while a new
	// config is on its way to the door).
	vmu      sync.Mutex
	verifier *jwtauth.Verifier
	built    *jwtauth.Verifier

	limiter quota.Limiter
	closeFn func() error
	// redisHealth tells each Redis node's breaker state (nil but for Redis).
	redisHealth func() []redisstore.NodeHealth
	eng         *engine.Engine
	svc         *ratelimitsvc.Service
	limits      *configsource.Source[*descriptors.Config]
	auth        *authsvc.Service                  // nil without --auth-config
	authSrc     *configsource.Source[*authBundle] // nil without --auth-config

	cache    *respcache.Engine                         // nil without --cache-config
	cacheSvc *extprocsvc.Service                       // nil without --cache-config
	cacheSrc *configsource.Source[*cacheconfig.Config] // nil without --cache-config
	status   *statusPage                               // GET /debug/ and its sampler (statuspage.go)

	// tracing exports spans (nil without --tracing-enabled).
	tracing *tracing.Provider

	// adminToken is --admin-token-file's token (nil: loopback peers only).
	adminToken []byte
	open       []door    // what doors returned, once the services are built
	ref        *refStats // nil without --statsd-addr and --reference-metrics-addr
	health     *health.Server
	grpcSrv    *grpc.Server
	httpSrv    *http.Server
	grpcLn     net.Listener
	grpcTLS    *tlsreload.Server // nil without --grpc-tls-cert
	httpLn     net.Listener
	debugLn    net.Listener // nil without --debug-addr

	mu      sync.Mutex // held by Start throughout
	started bool       // Start was called
	stopped bool       // Shutdown was called
	running bool       // Start succeeded: the actors run

	stop     chan struct{} // closed to begin the shutdown
	stopOnce sync.Once     // closes stop
	done     chan struct{} // closed once every actor has returned
	runErr   error         // the error that ended the actors (nil after a Shutdown); valid after done
	hardStop time.Time     // when in-flight calls are cut; set as the shutdown begins

	shutOnce sync.Once
	shutErr  error
}

// New returns a Main for s, logging to log. Nothing starts until Start.
func New(s Settings, log *slog.Logger) *Main {
	return &Main{
		settings:   s,
		log:        log,
		registry:   prometheus.NewRegistry(),
		loadLimits: limitsLoader(s),
		loadAuth:   loadAuth,
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
}

// limitsLoader reads the limits config in the layout --config-layout names.
func limitsLoader(s Settings) configsource.Loader[*descriptors.Config] {
	opts := limitsOptions(s)
	switch s.Ref.ConfigLayout {
	case "runtime", "runtime-dotfiles":
		dotfiles := s.Ref.ConfigLayout == "runtime-dotfiles"
		return func(path string) (*descriptors.Config, error) { return loadRuntimeDir(path, dotfiles, opts) }
	}
	return func(path string) (*descriptors.Config, error) { return descriptors.Load(path, opts) }
}

// doors are the services on the gRPC listener, each with its health
// names, its config sources and its readiness. Serving another is one more
// line here.
func (m *Main) doors() []door {
	return []door{
		rateLimitDoor(m.svc, m.limits, m.settings.ForceStart),
		authDoor(m.auth, m.authSrc),
		cacheDoor(m.cacheSvc, m.cacheSrc),
	}
}

// GRPCAddr is the bound gRPC address ("" before Start).
// A Unix socket is unix:///path, as grpc-go dials it.
func (m *Main) GRPCAddr() string { return grpcAddr(m.grpcLn) }

// HTTPAddr is the bound HTTP address ("" before Start).
func (m *Main) HTTPAddr() string { return addr(m.httpLn) }

// DebugAddr is the bound debug address ("" before Start or without
// --debug-addr).
func (m *Main) DebugAddr() string { return addr(m.debugLn) }

func addr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Start loads the config, connects the backend and starts both listeners.
// It returns once both accept connections; a config that does not load
// (unless --force-start), a backend that cannot be built or an address
// that cannot be bound fails it. Limits over xDS are not waited for: they
// arrive when the server sends them (see waitForLimits). Start runs once: called again, or after Shutdown, it fails and
// changes nothing.
func (m *Main) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.stopped:
		return errors.New("sidecar: Start after Shutdown")
	case m.started:
		return errors.New("sidecar: Start called twice")
	}
	m.started = true
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.build(); err != nil {
		return err
	}
	g := m.actors()
	go func() {
		m.runErr = g.run()
		close(m.done)
	}()
	m.running = true
	from := m.settings.Config
	if u := m.settings.XDS.URL; u != "" {
		from = "xds://" + u
	}
	m.log.Info("listening", "grpc", m.GRPCAddr(), "http", m.HTTPAddr(), "debug", m.DebugAddr(), "reference_metrics", m.ref.addr(), "backend", m.settings.Backend, "config", from)
	return nil
}

// build makes everything Start starts: the config source and its first
// config, the backend, the services, the health server and the listeners.
// On an error it leaves nothing open.
func (m *Main) build() (err error) {
	s := m.settings
	defer func() {
		if err != nil {
			m.closeVerifiers()
			m.ref.close()
			m.stopTracing()
		}
	}()
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if m.ref, err = newRefStats(s.RefStats, s.NearLimitRatio, m.log); err != nil {
		return err
	}
	if err := m.startTracing(); err != nil {
		return err
	}
	sourceMetrics := configsource.NewMetrics(m.registry)
	limitsWatcher, err := m.limitsWatcher()
	if err != nil {
		return err
	}
	m.limits = configsource.New(m.ref.counted(limitsWatcher), configsource.Options[*descriptors.Config]{
		Describe: func(c *descriptors.Config) any { return c.Describe() },
		Summary:  func(c *descriptors.Config) []any { return []any{"domains", domainNames(c)} },
		Metrics:  sourceMetrics,
		Name:     "limits",
		Log:      m.log,
	})
	if err := m.limits.Load(); err != nil {
		if !s.ForceStart {
			return fmt.Errorf("config %s: %w", s.Config, err)
		}
		m.log.Error("the limits config does not load; starting without it (--force-start): ShouldRateLimit answers UNAVAILABLE until it loads",
			"config", s.Config, "errors", strings.Split(err.Error(), "\n"))
	}
	if s.AuthConfig != "" {
		m.jwtMetrics = jwtauth.NewMetrics(m.registry)
		m.authSrc = m.newAuthSource(sourceMetrics)
		if err := m.authSrc.Load(); err != nil {
			return fmt.Errorf("auth config %s: %w", s.AuthConfig, err)
		}
	}
	grpcCreds, err := m.loadGRPCTLS(sourceMetrics)
	if err != nil {
		return err
	}
	for _, d := range m.limits.Snapshot().Config.Domains() {
		m.log.Info("domain loaded", "domain", d.Name, "rules", len(d.Rules()), "files", d.Files)
	}

	if s.Cache.Config != "" {
		m.cacheSrc = m.newCacheSource(sourceMetrics)
		if err := m.cacheSrc.Load(); err != nil {
			return fmt.Errorf("cache config %s: %w", s.Cache.Config, err)
		}
	}
	if m.adminToken, err = readAdminToken(s.AdminTokenFile); err != nil {
		return err
	}

	be, err := newBackend(s, m.registry, m.log)
	if err != nil {
		return fmt.Errorf("backend %s: %w", s.Backend, err)
	}
	m.limiter, m.closeFn, m.redisHealth = be.limiter, be.close, be.health
	if c, ok := be.limiter.(*nearcache.Cache); ok {
		m.ref.localCache(c)
	}
	if m.cacheSrc != nil {
		if m.cache, m.cacheSvc, err = m.newCache(be); err != nil {
			m.closeBackend()
			return err
		}
		m.cacheSrc.Subscribe(m.cache.SetConfig)
	}
	if m.status, err = m.newStatusPage(); err != nil {
		m.closeBackend()
		return err
	}
	m.eng, m.svc, err = newRateLimitService(s, be.limiter, engine.NewMetrics(m.registry), m.status.observer(m.ref.observer()), m.log)
	if err != nil {
		m.closeBackend()
		return err
	}
	m.limits.Subscribe(m.eng.SetConfig)
	if m.authSrc != nil {
		if m.auth, err = authsvc.New(m.eng, authsvc.Options{Registerer: m.registry, Log: m.log}); err != nil {
			m.closeBackend()
			return err
		}
		m.authSrc.Subscribe(m.useAuth)
		// The auth config was checked against the limits in force when it
		// loaded; a limits reload that drops a domain its policies name
		// leaves those policies unlimited, so say so loudly.
		m.limits.Subscribe(func(c *descriptors.Config) {
			if snap := m.authSrc.Snapshot(); snap.Loaded {
				if err := snap.Config.cfg.CheckDomains(c); err != nil {
					m.log.Error("the limits config lacks domains the auth config's policies name: their requests are decided without limits until both agree",
						"errors", strings.Split(err.Error(), "\n"))
				}
			}
		})
	}

	if m.grpcLn, err = listenGRPC(s.GRPCAddr); err != nil {
		m.closeBackend()
		return fmt.Errorf("--grpc-addr %s: %w", s.GRPCAddr, err)
	}
	if m.httpLn, err = net.Listen("tcp", s.HTTPAddr); err != nil {
		m.grpcLn.Close()
		m.closeBackend()
		return fmt.Errorf("--http-addr %s: %w", s.HTTPAddr, err)
	}
	if s.Ref.DebugAddr != "" {
		if m.debugLn, err = net.Listen("tcp", s.Ref.DebugAddr); err != nil {
			m.grpcLn.Close()
			m.httpLn.Close()
			m.closeBackend()
			return fmt.Errorf("--debug-addr %s: %w", s.Ref.DebugAddr, err)
		}
	}

	m.grpcSrv = grpc.NewServer(append(m.tracingServerOptions(),
		// ext_proc bodies come in one message: the receive limit stays
		// above --cache-max-entry-bytes.
		grpc.MaxRecvMsgSize(m.maxRecvMsgSize()),
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
		grpc.ChainUnaryInterceptor(m.unaryInterceptors()...),
		grpc.ChainStreamInterceptor(m.recoverStream),
		grpcCreds,
	)...)
	m.health = health.NewServer()
	healthpb.RegisterHealthServer(m.grpcSrv, m.health)
	reflection.Register(m.grpcSrv)
	m.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	m.open = m.doors()
	for _, d := range m.open {
		if d.register == nil { // a door not configured
			continue
		}
		d.register(m.grpcSrv)
		for _, name := range d.health {
			m.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
		}
	}
	m.waitForLimits()

	if s.Ref.HealthyNeedsConfig {
		// The reference's name follows whether a domain is loaded.
		m.limits.Subscribe(m.referenceHealth)
		m.referenceHealth(m.limits.Snapshot().Config)
	}
	m.httpSrv = &http.Server{Handler: m.httpHandler(), ReadHeaderTimeout: httpHeaderTimeout}
	return nil
}

// limitsOptions are how the limits are compiled, from a file or over xDS.
func limitsOptions(s Settings) descriptors.Options { return s.descriptorOptions() }

// limitsWatcher is where the limits config comes from: the xDS server of
// --config-xds-url, else the --config path.
func (m *Main) limitsWatcher() (configsource.Watcher[*descriptors.Config], error) {
	s := m.settings
	x := s.XDS
	if x.URL == "" {
		var follow func(*descriptors.Config) []string
		if s.Ref.ConfigLayout != "yaml" && s.Ref.ConfigLayout != "" {
			// The runtime layout reads subdirectories: watch them too.
			follow = runtimeDirs(s.Config)
		}
		return configsource.NewFiles(s.Config, s.ReloadEvery, m.loadLimits, follow), nil
	}
	if s.Config != "" {
		return nil, fmt.Errorf("--config=%s and --config-xds-url=%s are exclusive: the limits config comes from a file or from an xDS server, drop one", s.Config, x.URL)
	}
	var tlsCfg *tls.Config
	if x.TLS {
		var err error
		if tlsCfg, err = xdsconfig.ClientTLS(x.URL, xdsconfig.TLSFiles{CA: x.CA, Cert: x.Cert, Key: x.Key, SAN: x.SAN}); err != nil {
			return nil, fmt.Errorf("--config-xds-tls: %w", err)
		}
	}
	c, err := xdsconfig.New(xdsconfig.Options{
		Addr:        x.URL,
		NodeID:      x.NodeID,
		TLS:         tlsCfg,
		Descriptors: limitsOptions(s),
		Log:         m.log,
	})
	if err != nil {
		return nil, fmt.Errorf("--config-xds-url: %w", err)
	}
	return c, nil
}

// waitForLimits reports the whole server and the rate-limit door
// NOT_SERVING (so /healthcheck and /readyz fail too) until the first limits
// config is in force, as envoyproxy/ratelimit does: with xDS it arrives
// after Start. --force-start skips this (the door still answers
// UNAVAILABLE until then). A config loaded from a file at Start is in
// force already.
func (m *Main) waitForLimits() {
	if m.settings.ForceStart || m.limits.Snapshot().Loaded {
		return
	}
	names := []string{"", rlsv3.RateLimitService_ServiceDesc.ServiceName, referenceHealthName}
	for _, name := range names {
		m.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	var once sync.Once
	m.limits.Subscribe(func(*descriptors.Config) {
		// After Shutdown has begun the health server ignores this.
		once.Do(func() {
			for _, name := range names {
				m.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
			}
		})
	})
}

// waitFirstConfig holds gRPC back, up to --config-xds-initial-wait, until
// the first xDS config is in force: calls made meanwhile wait in the
// listener's queue and are answered with it, as envoyproxy/ratelimit, which
// opens its port only then, has them retried. It reports false when the
// shutdown began first.
func (m *Main) waitFirstConfig() bool {
	wait := m.settings.XDS.InitialWait
	if wait <= 0 || m.settings.ForceStart || m.settings.XDS.URL == "" || m.limits.Snapshot().Loaded {
		return true
	}
	first := make(chan struct{})
	var once sync.Once
	m.limits.Subscribe(func(*descriptors.Config) { once.Do(func() { close(first) }) })
	if m.limits.Snapshot().Loaded { // arrived before Subscribe
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-first:
	case <-t.C:
		m.log.Warn("no limits config over xDS yet; serving gRPC, ShouldRateLimit answers UNAVAILABLE until one arrives", "waited", wait.String())
	case <-m.stop:
		return false
	}
	return true
}

// actors is the sidecar's group. Shutdown interrupts them in this order,
// each after the one before has returned (see group).
func (m *Main) actors() *group {
	var g group
	// Health first: every grpc.health.v1 name NOT_SERVING, /readyz 503 and
	// /healthcheck 500, while the listeners still answer.
	g.add(func() error {
		<-m.stop
		return nil
	}, func() {
		m.log.Info("shutting down", "timeout", m.settings.ShutdownWait.String())
		m.hardStop = time.Now().Add(m.settings.ShutdownWait)
		m.health.Shutdown()
		m.stopOnce.Do(func() { close(m.stop) })
	})
	// The doors' config sources: no reload while calls drain.
	for _, d := range m.open {
		for _, run := range d.run {
			g.add(cancelable(run))
		}
	}
	if m.grpcTLS != nil {
		g.add(cancelable(m.grpcTLS.Run))
	}
	g.add(cancelable(m.status.run)) // the status page's sampler
	// gRPC: in-flight calls finish, until the hard stop cuts them.
	g.add(func() error {
		if !m.waitFirstConfig() {
			return nil // shut down first
		}
		if err := m.grpcSrv.Serve(m.grpcLn); !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	}, m.stopGRPC)
	if m.debugLn != nil {
		g.add(m.serveDebug())
	}
	// The reference's stats after gRPC, so the last calls are sent.
	if m.ref != nil {
		g.add(m.ref.actor())
	}
	// HTTP last, so probes see the shutdown until the end.
	g.add(func() error {
		if err := m.httpSrv.Serve(m.httpLn); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, m.stopHTTP)
	return &g
}

// cancelable makes an actor of run: interrupting it cancels run's context
// and waits for run to return.
func cancelable(run func(context.Context) error) (execute func() error, interrupt func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	return func() error {
			defer close(done)
			return run(ctx)
		}, func() {
			cancel()
			<-done
		}
}

// stopGRPC lets in-flight calls finish, up to the hard stop, then cuts
// the rest.
func (m *Main) stopGRPC() {
	stopped := make(chan struct{})
	go func() {
		m.grpcSrv.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(time.Until(m.hardStop))
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		m.log.Warn("shutdown timeout: cutting in-flight calls")
		m.grpcSrv.Stop()
		<-stopped
	}
}

// stopHTTP closes the HTTP listener, cutting what is left at the hard stop.
func (m *Main) stopHTTP() {
	ctx, cancel := context.WithDeadline(context.Background(), m.hardStop)
	defer cancel()
	if err := m.httpSrv.Shutdown(ctx); err != nil {
		m.httpSrv.Close()
	}
}

// Run starts the sidecar and serves until ctx ends or a listener fails,
// then shuts down.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-m.done:
	}
	err := m.Shutdown()
	if m.runErr != nil {
		m.log.Error("listener failed", "err", m.runErr.Error())
		return errors.Join(fmt.Errorf("listener: %w", m.runErr), err)
	}
	return err
}

// Shutdown stops the sidecar gracefully: health turns NOT_SERVING and
// /readyz and /healthcheck fail first, then in-flight calls finish (up to
// --shutdown-timeout, after which they are cut), then the listeners close,
// then the backend. It returns once all that is done; called again (or
// concurrently) it waits for the same end. Before Start it only makes a
// later Start fail.
func (m *Main) Shutdown() error {
	m.mu.Lock()
	m.stopped = true
	running := m.running
	m.mu.Unlock()
	if !running {
		return nil
	}
	m.shutOnce.Do(func() {
		m.stopOnce.Do(func() { close(m.stop) })
		<-m.done
		m.stopTracing() // after gRPC: the last calls' spans are flushed
		m.closeVerifiers()
		m.shutErr = m.closeBackend()
		m.log.Info("stopped")
	})
	return m.shutErr
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

// recoverStream is recoverUnary for streams (ext_proc's Process).
func (m *Main) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(srv, ss)
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
	// envoyproxy/ratelimit's probe: 200 "OK" while serving, 500 with no
	// body once not.
	mux.HandleFunc("GET /healthcheck", func(w http.ResponseWriter, r *http.Request) {
		if !m.serving() || !m.configHealthy() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "OK")
	})
	// envoyproxy/ratelimit's JSON door to ShouldRateLimit, for clients
	// without gRPC.
	mux.HandleFunc("/json", m.jsonHandler)
	// OpenMetrics for the scrapers that ask for it (Prometheus does), so
	// that the decision histogram's exemplars reach them; the text format
	// stays the default.
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry, EnableOpenMetrics: true}))
	// Admin endpoints: loopback peers only, or the admin token.
	admin := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, m.adminOnly(h)) }
	admin("GET /debug/config", m.debugConfig)
	m.status.routes(admin) // GET /debug/ and /debug/status.json
	if m.cache != nil {
		admin("POST /cache/purge", m.purge)
	}
	if m.settings.PProf {
		// Served only when asked for: the package's own registration on
		// http.DefaultServeMux is never served.
		admin("GET /debug/pprof/", pprof.Index)
		admin("GET /debug/pprof/cmdline", pprof.Cmdline)
		admin("GET /debug/pprof/profile", pprof.Profile)
		admin("GET /debug/pprof/symbol", pprof.Symbol)
		admin("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// serving is whether grpc.health.v1 says SERVING for the whole server:
// from Start until Shutdown begins. /healthcheck and /readyz follow it, so
// the HTTP and gRPC probes never disagree.
func (m *Main) serving() bool {
	resp, err := m.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// readiness is nil when the sidecar should receive traffic: serving (not
// shutting down), every door ready (its config loaded) and the backend
// reachable.
func (m *Main) readiness(ctx context.Context) error {
	if !m.serving() {
		select {
		case <-m.stop:
			return errors.New("shutting down")
		default:
			return errors.New("no limits config loaded yet")
		}
	}
	if !m.configHealthy() {
		return errors.New("no domain loaded (--healthy-needs-config)")
	}
	for _, d := range m.open {
		if d.ready == nil {
			continue
		}
		if err := d.ready(); err != nil {
			return err
		}
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

// domainNames lists a limits config's domains, for logs.
func domainNames(c *descriptors.Config) []string {
	names := make([]string, 0)
	for _, d := range c.Domains() {
		names = append(names, d.Name)
	}
	return names
}
