package sidecar

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/floodgate/floodgate/pkg/configsource"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/nearcache"
	"github.com/floodgate/floodgate/pkg/refstats"
)

// RefStatsSettings turn on envoyproxy/ratelimit's stats (pkg/refstats):
// to statsd, and on a Prometheus listener of their own with the
// reference's metric names.
type RefStatsSettings struct {
	StatsdAddr     string        // --statsd-addr ("" = no statsd)
	StatsdProtocol string        // --statsd-protocol: tcp or udp
	FlushInterval  time.Duration // --stats-flush-interval
	MetricsAddr    string        // --reference-metrics-addr ("" = no listener)
	MapperYAML     string        // --prometheus-mapper-yaml ("" = the reference's default mapping)
	ExtraTags      string        // --stats-extra-tags: key:value,key:value ("" = none)
}

func (r *RefStatsSettings) flags(fs *flag.FlagSet) {
	fs.StringVar(&r.StatsdAddr, "statsd-addr", "", "send envoyproxy/ratelimit's stats (its names) to statsd at host:port; empty sends none")
	fs.StringVar(&r.StatsdProtocol, "statsd-protocol", "tcp", "statsd over tcp or udp")
	fs.DurationVar(&r.FlushInterval, "stats-flush-interval", refstats.DefaultFlushInterval, "how often counter changes go to statsd (envoyproxy/ratelimit's STATS_FLUSH_INTERVAL)")
	fs.StringVar(&r.MetricsAddr, "reference-metrics-addr", "", "serve envoyproxy/ratelimit's Prometheus metrics (its names and labels) at /metrics on this listener; empty serves none")
	fs.StringVar(&r.ExtraTags, "stats-extra-tags", "", "tags added to every one of envoyproxy/ratelimit's stats (its EXTRA_TAGS), key:value,key:value")
	fs.StringVar(&r.MapperYAML, "prometheus-mapper-yaml", "", "a statsd_exporter mapping file for --reference-metrics-addr, instead of envoyproxy/ratelimit's default mapping")
}

func (r *RefStatsSettings) check() []error {
	var errs []error
	if err := refstats.CheckStatsd(refstats.StatsdOptions{Addr: r.StatsdAddr, Protocol: r.StatsdProtocol}); err != nil {
		errs = append(errs, err)
	}
	if r.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("--stats-flush-interval=%s: must not be negative (0 means the default)", r.FlushInterval))
	}
	if _, err := parseTags(r.ExtraTags); err != nil {
		errs = append(errs, err)
	}
	if r.MapperYAML != "" && r.MetricsAddr == "" {
		errs = append(errs, errors.New("--prometheus-mapper-yaml needs --reference-metrics-addr"))
	}
	return errs
}

// parseTags parses --stats-extra-tags, key:value pairs separated by commas
// (as the reference parses EXTRA_TAGS).
func parseTags(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	tags := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(pair, ":")
		if !ok || k == "" {
			return nil, fmt.Errorf("--stats-extra-tags=%q: %q is not key:value", s, pair)
		}
		tags[k] = v
	}
	return tags, nil
}

// refStats are the reference's stats of a Main: nil when neither statsd nor
// the listener is set.
type refStats struct {
	stats *refstats.Stats
	ln    net.Listener // nil without --reference-metrics-addr
	srv   *http.Server
}

// newRefStats builds the stats and binds their listener; a mapping file
// that does not load fails it, naming the file.
func newRefStats(r RefStatsSettings, nearLimitRatio float64, log *slog.Logger) (*refStats, error) {
	if r.StatsdAddr == "" && r.MetricsAddr == "" {
		return nil, nil
	}
	opts := refstats.Options{
		Statsd:         refstats.StatsdOptions{Addr: r.StatsdAddr, Protocol: r.StatsdProtocol, FlushInterval: r.FlushInterval},
		NearLimitRatio: float32(nearLimitRatio),
		Log:            log,
	}
	opts.ExtraTags, _ = parseTags(r.ExtraTags) // checked by check
	if r.MetricsAddr != "" {
		opts.Prometheus = refstats.DefaultMapper()
		if r.MapperYAML != "" {
			m, err := refstats.LoadMapper(r.MapperYAML)
			if err != nil {
				return nil, fmt.Errorf("--prometheus-mapper-yaml: %w", err)
			}
			for _, w := range m.Warnings {
				log.Warn("prometheus mapper: "+w, "file", r.MapperYAML)
			}
			opts.Prometheus = m
		}
	}
	rs := &refStats{stats: refstats.New(opts)}
	if r.MetricsAddr != "" {
		ln, err := net.Listen("tcp", r.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("--reference-metrics-addr %s: %w", r.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", rs.stats.Handler())
		rs.ln, rs.srv = ln, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	}
	return rs, nil
}

// observer is the engine's Observer: nil (no typed nil) without stats.
func (rs *refStats) observer() engine.Observer {
	if rs == nil {
		return nil
	}
	return rs.stats
}

// localCache reports the near-cache as the reference's local cache
// (ratelimit.localcache.* gauges).
func (rs *refStats) localCache(c *nearcache.Cache) {
	if rs == nil {
		return
	}
	rs.stats.LocalCache(c.Lookups, c.Len)
}

// counted wraps the limits watcher so that every config it gives, from a
// file or over xDS, counts config_load_success, and every one that does
// not load (a NACKed xDS version too) config_load_error.
func (rs *refStats) counted(w configsource.Watcher[*descriptors.Config]) configsource.Watcher[*descriptors.Config] {
	if rs == nil {
		return w
	}
	cw := countingWatcher{Watcher: w, stats: rs.stats}
	if i, ok := w.(configsource.Initial[*descriptors.Config]); ok {
		return countingInitial{cw, i}
	}
	return cw
}

type countingWatcher struct {
	configsource.Watcher[*descriptors.Config]
	stats *refstats.Stats
}

func (w countingWatcher) Watch(ctx context.Context, publish func(*descriptors.Config, error)) error {
	return w.Watcher.Watch(ctx, func(c *descriptors.Config, err error) {
		w.stats.ConfigLoaded(err == nil)
		publish(c, err)
	})
}

type countingInitial struct {
	countingWatcher
	initial configsource.Initial[*descriptors.Config]
}

func (w countingInitial) Load() (*descriptors.Config, error) {
	c, err := w.initial.Load()
	w.stats.ConfigLoaded(err == nil)
	return c, err
}

// addr is the listener's address, "" without one.
func (rs *refStats) addr() string {
	if rs == nil || rs.ln == nil {
		return ""
	}
	return rs.ln.Addr().String()
}

// actor serves the listener and sends to statsd until interrupted; then
// what is left goes to statsd once.
func (rs *refStats) actor() (execute func() error, interrupt func()) {
	return cancelable(func(ctx context.Context) error {
		rs.stats.Start()
		defer rs.stats.Close()
		if rs.srv == nil {
			<-ctx.Done()
			return nil
		}
		errc := make(chan error, 1)
		go func() { errc <- rs.srv.Serve(rs.ln) }()
		select {
		case err := <-errc:
			return fmt.Errorf("--reference-metrics-addr: %w", err)
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if rs.srv.Shutdown(sctx) != nil {
				rs.srv.Close()
			}
			return nil
		}
	})
}

// close releases what newRefStats bound, when Start fails after it.
func (rs *refStats) close() {
	if rs != nil && rs.ln != nil {
		rs.ln.Close()
	}
}

// RefMetricsAddr is --reference-metrics-addr's bound address, "" without it.
func (m *Main) RefMetricsAddr() string { return m.ref.addr() }

// unaryInterceptors recover panics and, with the reference's stats, count
// and time every call as the reference's server does.
func (m *Main) unaryInterceptors() []grpc.UnaryServerInterceptor {
	is := []grpc.UnaryServerInterceptor{m.recoverUnary}
	if m.ref != nil {
		is = append(is, m.ref.stats.UnaryServerInterceptor(func() bool { return m.eng.Config() != nil }))
	}
	return is
}
