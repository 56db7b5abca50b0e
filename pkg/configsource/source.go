// Package configsource delivers configs to the engines that use them. A
// Source holds the config of one kind in force (the rate limits; later the
// auth and cache configs) and tells its subscribers of each new one; a
// Watcher is where the configs come from: File polls a path, and
// pkg/xdsconfig's Client follows an xDS stream. Whatever the watcher, the
// Source keeps the published state in one atomic snapshot (so
// /debug/config never waits for a load), counts reloads and logs their
// errors.
package configsource

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A Watcher is where configs of kind T come from.
type Watcher[T any] interface {
	// Origin names where the configs come from (a path; an xDS server's
	// address), for logs and /debug/config.
	Origin() string
	// Watch calls publish with each new config, or with the error that kept
	// a change from loading, until ctx ends. Calls to publish do not overlap.
	Watch(ctx context.Context, publish func(T, error)) error
}

// An Initial watcher can also give its config at once, so that start-up can
// fail on a config that does not load. File is one; an xDS stream is not
// (its first config arrives when the server sends it).
type Initial[T any] interface {
	Watcher[T]
	// Load reads the config as it is now. Called before Watch, which then
	// reports changes from what Load saw.
	Load() (T, error)
}

// Snapshot is what a Source has published, as one immutable value.
type Snapshot[T any] struct {
	// Config is the config in force: the last one that loaded.
	Config T
	// Loaded says whether a config has loaded at all; until then Config is
	// the zero T.
	Loaded bool
	// LoadedAt is when Config was loaded.
	LoadedAt time.Time
	// Err is why the last load failed (Config, if any, keeps serving); nil
	// when the last load succeeded.
	Err error
}

// Options configure a Source. Every field is optional.
type Options[T any] struct {
	// Describe turns a config into what /debug/config shows (default: the
	// config itself, as encoding/json renders it).
	Describe func(T) any
	// Summary gives log attributes that identify a new config (say, its
	// domains) for the "config reloaded" line (default: none).
	Summary func(T) []any
	// Metrics counts reloads; nil counts nothing.
	Metrics *Metrics
	// Name labels this source's metrics (`source`), so that the sources
	// sharing one Metrics are told apart; default "config".
	Name string
	// Log receives a line per reload (default: discarded).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Source is the config of kind T in force and the subscribers that follow
// it. It is safe for concurrent use.
type Source[T any] struct {
	w    Watcher[T]
	opts Options[T]

	// mu orders publishes (and so the subscribers' calls); it is never
	// held by a reader, nor while a watcher loads.
	mu   sync.Mutex
	subs []func(T)
	snap atomic.Pointer[Snapshot[T]]
}

// New returns a Source fed by w. Nothing is loaded until Load or Run.
func New[T any](w Watcher[T], opts Options[T]) *Source[T] {
	if opts.Describe == nil {
		opts.Describe = func(c T) any { return c }
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Source[T]{w: w, opts: opts}
	s.snap.Store(&Snapshot[T]{})
	if m := opts.Metrics; m != nil {
		// Both results are reported from the start, at 0.
		m.reloads.WithLabelValues(s.name(), "success")
		m.reloads.WithLabelValues(s.name(), "error")
	}
	return s
}

// Subscribe has fn called with every config the source publishes from now
// on, in order, before the snapshot shows it (so a snapshot never shows a
// config that a subscriber does not have yet). When a config is already in
// force, fn is called with it at once. fn must not block.
func (s *Source[T]) Subscribe(fn func(T)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = append(s.subs, fn)
	if snap := s.snap.Load(); snap.Loaded {
		fn(snap.Config)
	}
}

// Load publishes the watcher's config as it is now, when the watcher is
// Initial, and returns its error (a start-up error: nothing is published
// then). For other watchers it does nothing: their first config comes
// through Run.
func (s *Source[T]) Load() error {
	in, ok := s.w.(Initial[T])
	if !ok {
		return nil
	}
	cfg, err := in.Load()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set(cfg)
	return nil
}

// Run watches for new configs until ctx ends.
func (s *Source[T]) Run(ctx context.Context) error {
	return s.w.Watch(ctx, s.publish)
}

// Snapshot is the published state. It never waits, not even for a load in
// progress.
func (s *Source[T]) Snapshot() Snapshot[T] { return *s.snap.Load() }

// publish takes a watcher's result: a new config goes to the subscribers
// and then into the snapshot; an error is logged and kept beside the config
// in force, which keeps serving.
func (s *Source[T]) publish(cfg T, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.opts.Metrics
	if err != nil {
		old := *s.snap.Load()
		old.Err = err
		s.snap.Store(&old)
		if m != nil {
			m.reloads.WithLabelValues(s.name(), "error").Inc()
		}
		s.opts.Log.Error("config reload failed; the previous config keeps serving",
			"config", s.w.Origin(), "errors", strings.Split(err.Error(), "\n"))
		return
	}
	// The first config is a load, not a reload.
	reload := s.snap.Load().Loaded
	s.set(cfg)
	if reload && m != nil {
		m.reloads.WithLabelValues(s.name(), "success").Inc()
	}
	attrs := []any{"config", s.w.Origin()}
	if s.opts.Summary != nil {
		attrs = append(attrs, s.opts.Summary(cfg)...)
	}
	s.opts.Log.Info("config reloaded", attrs...)
}

// set makes cfg the config in force. s.mu is held.
func (s *Source[T]) set(cfg T) {
	for _, fn := range s.subs {
		fn(cfg)
	}
	now := s.opts.Now()
	s.snap.Store(&Snapshot[T]{Config: cfg, Loaded: true, LoadedAt: now})
	if m := s.opts.Metrics; m != nil {
		m.lastOK.WithLabelValues(s.name()).Set(float64(now.UnixNano()) / 1e9)
	}
}

// Status is a source's state as /debug/config shows it.
type Status struct {
	// Path is the origin: a file or directory (an xDS server's address for
	// xDS). The JSON name is the one /debug/config has always used.
	Path            string    `json:"path"`
	LoadedAt        time.Time `json:"loaded_at"`
	LastReloadError string    `json:"last_reload_error,omitempty"`
	Config          any       `json:"config"`
}

// Status describes the published state. Like Snapshot, it never waits.
func (s *Source[T]) Status() Status {
	snap := s.snap.Load()
	st := Status{Path: s.w.Origin(), LoadedAt: snap.LoadedAt}
	if snap.Err != nil {
		st.LastReloadError = snap.Err.Error()
	}
	if snap.Loaded {
		st.Config = s.opts.Describe(snap.Config)
	}
	return st
}

// Handler serves status as indented JSON: /debug/config.
func Handler(status func() Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(status())
	})
}

// Metrics count the reloads of every source of a process: one Metrics per
// registry, shared by the sources.
type Metrics struct {
	reloads *prometheus.CounterVec
	lastOK  *prometheus.GaugeVec
}

// NewMetrics registers floodgate_config_reloads_total{source,result} and
// floodgate_config_last_reload_success_timestamp_seconds{source} in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "config", Name: "reloads_total",
			Help: "Config reloads by source (limits, auth, ...) and result (success or error).",
		}, []string{"source", "result"}),
		lastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "floodgate", Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "When each source's config in force was loaded.",
		}, []string{"source"}),
	}
	reg.MustRegister(m.reloads, m.lastOK)
	return m
}

// name is the source's metric label.
func (s *Source[T]) name() string {
	if s.opts.Name == "" {
		return "config"
	}
	return s.opts.Name
}
