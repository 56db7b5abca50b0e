package xdsconfig_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"

	"github.com/floodgate/floodgate/internal/xdstest"
	"github.com/floodgate/floodgate/pkg/configsource"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/xdsconfig"
)

const node = "test-node"

// countingHandler counts log records and keeps their messages.
type countingHandler struct {
	n    atomic.Int64
	mu   sync.Mutex
	msgs []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.n.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.msgs = append(h.msgs, b.String())
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) joined() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.msgs, "\n")
}

// run starts a limits Source fed by a client of srv until the test ends.
func run(t *testing.T, addr string, tlsCfg *tls.Config) (*configsource.Source[*descriptors.Config], *xdsconfig.Client, *countingHandler) {
	t.Helper()
	logs := &countingHandler{}
	log := slog.New(logs)
	c, err := xdsconfig.New(xdsconfig.Options{Addr: addr, NodeID: node, TLS: tlsCfg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	src := configsource.New(configsource.Watcher[*descriptors.Config](c), configsource.Options[*descriptors.Config]{Name: "limits", Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after its context ended")
		}
	})
	return src, c, logs
}

// eventually polls cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// limitOf is the requests per unit of the domain's first rule, 0 when the
// domain is missing.
func limitOf(src *configsource.Source[*descriptors.Config], domain string) uint64 {
	snap := src.Snapshot()
	if !snap.Loaded {
		return 0
	}
	d := snap.Config.Domain(domain)
	if d == nil || len(d.Rules()) == 0 {
		return 0
	}
	return d.Rules()[0].Limit.Requests
}

func badConfig(domain string) *rlconf.RateLimitConfig {
	c := xdstest.Limit(domain, 1, "k", "v")
	c.Descriptors[0].RateLimit.Unit = rlconf.RateLimitUnit_UNKNOWN
	return c
}

// TestFirstConfigAndUpdate: the first config is applied and ACKed, and so
// is an update, which replaces the whole config.
func TestFirstConfigAndUpdate(t *testing.T) {
	t.Parallel()
	srv := xdstest.Start(t)
	srv.Set(node, "1", xdstest.Limit("a", 10, "k", "v"), xdstest.Limit("b", 20, "k", "v"))
	src, c, _ := run(t, srv.Addr, nil)
	eventually(t, 5*time.Second, "first config", func() bool { return limitOf(src, "a") == 10 })
	if limitOf(src, "b") != 20 {
		t.Errorf("domain b: %d, want 20", limitOf(src, "b"))
	}
	if o := c.Origin(); o != "xds://"+srv.Addr+" version 1" {
		t.Errorf("Origin %q", o)
	}
	srv.Set(node, "2", xdstest.Limit("a", 11, "k", "v"))
	eventually(t, 5*time.Second, "update", func() bool { return limitOf(src, "a") == 11 })
	if src.Snapshot().Config.Domain("b") != nil {
		t.Error("domain b survived an update without it")
	}
	eventually(t, 5*time.Second, "ACK of version 2", func() bool {
		acks := srv.ACKs()
		return len(acks) > 0 && acks[len(acks)-1].GetVersionInfo() == "2"
	})
	if n := len(srv.NACKs()); n != 0 {
		t.Errorf("%d NACKs", n)
	}
}

// TestBadUpdateNACKed: a version that does not validate is NACKed with the
// problems and the version in force, the old config keeps serving, and
// the server's resends of it are answered at a bounded rate, neither
// logged nor counted again; a good version then gets through.
func TestBadUpdateNACKed(t *testing.T) {
	t.Parallel()
	srv := xdstest.Start(t)
	srv.Set(node, "1", xdstest.Limit("a", 10, "k", "v"))
	src, _, logs := run(t, srv.Addr, nil)
	eventually(t, 5*time.Second, "first config", func() bool { return limitOf(src, "a") == 10 })
	logsBefore := logs.n.Load()
	srv.Set(node, "2", badConfig("a"))
	eventually(t, 5*time.Second, "a NACK", func() bool { return len(srv.NACKs()) > 0 })
	nack := srv.NACKs()[0]
	if nack.GetVersionInfo() != "1" {
		t.Errorf("NACK version_info %q, want 1 (the version in force)", nack.GetVersionInfo())
	}
	if msg := nack.GetErrorDetail().GetMessage(); msg != "xds:a: descriptors[0].rate_limit.unit: missing; allowed: "+descriptorsAllowedUnits(t)+" (or unlimited: true)" {
		t.Errorf("NACK error_detail %q", msg)
	}
	if err := src.Snapshot().Err; err == nil || !strings.Contains(err.Error(), `xDS version "2" rejected: xds:a: descriptors[0].rate_limit.unit: missing`) {
		t.Errorf("snapshot error %v", err)
	}
	// The server resends version 2 at once after every NACK; watch it for
	// a while.
	const watch = 2500 * time.Millisecond
	reqsBefore := srv.Requests()
	time.Sleep(watch)
	nacks := len(srv.NACKs())
	t.Logf("%d NACKs, %d log lines in %s after the first rejection", nacks, logs.n.Load()-logsBefore, watch)
	// One NACK at once, then one per NACKInterval (1 s).
	if nacks > 4 {
		t.Errorf("%d NACKs in %s; want at most 4", nacks, watch)
	}
	if nacks < 2 {
		t.Errorf("%d NACKs in %s; the resends went unanswered", nacks, watch)
	}
	if n := srv.Requests() - reqsBefore; n > 4 {
		t.Errorf("%d requests in %s", n, watch)
	}
	if n := logs.n.Load() - logsBefore; n > 2 {
		t.Errorf("%d log lines for one rejected version:\n%s", n, logs.joined())
	}
	if limitOf(src, "a") != 10 {
		t.Errorf("config in force changed: a=%d", limitOf(src, "a"))
	}
	srv.Set(node, "3", xdstest.Limit("a", 12, "k", "v"))
	eventually(t, 3*time.Second, "the good version after the bad", func() bool { return limitOf(src, "a") == 12 })
	if src.Snapshot().Err != nil {
		t.Errorf("error kept after a good version: %v", src.Snapshot().Err)
	}
}

// descriptorsAllowedUnits is the unit list a file's error names.
func descriptorsAllowedUnits(t *testing.T) string {
	t.Helper()
	_, err := descriptors.Parse("x", []byte("domain: a\ndescriptors: [{key: k, rate_limit: {requests_per_unit: 1}}]"), descriptors.Options{})
	msg := err.Error()
	i := strings.Index(msg, "allowed: ")
	j := strings.Index(msg, " (or unlimited")
	if i < 0 || j < 0 {
		t.Fatalf("file error %q", msg)
	}
	return msg[i+len("allowed: ") : j]
}

// TestBadFirstConfig: a first version that does not validate leaves the
// source without a config, NACKed with version_info "".
func TestBadFirstConfig(t *testing.T) {
	t.Parallel()
	srv := xdstest.Start(t)
	srv.Set(node, "1", badConfig("a"))
	src, _, _ := run(t, srv.Addr, nil)
	eventually(t, 5*time.Second, "a NACK", func() bool { return len(srv.NACKs()) > 0 })
	if v := srv.NACKs()[0].GetVersionInfo(); v != "" {
		t.Errorf("NACK version_info %q, want empty", v)
	}
	if src.Snapshot().Loaded {
		t.Error("a config loaded")
	}
	srv.Set(node, "2", xdstest.Limit("a", 3, "k", "v"))
	eventually(t, 3*time.Second, "the good version", func() bool { return limitOf(src, "a") == 3 })
}

// TestServerRestart: a restarted server, whose versions start from 1
// again, is picked up, and its configs are applied.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	srv := xdstest.Start(t)
	srv.Set(node, "1", xdstest.Limit("a", 10, "k", "v"))
	src, c, _ := run(t, srv.Addr, nil)
	eventually(t, 5*time.Second, "first config", func() bool { return limitOf(src, "a") == 10 })
	srv.Set(node, "2", xdstest.Limit("a", 20, "k", "v"))
	eventually(t, 5*time.Second, "version 2", func() bool { return limitOf(src, "a") == 20 })

	srv.Restart(2 * time.Second)
	// The new server has nothing for the node yet: the config in force
	// stays.
	time.Sleep(100 * time.Millisecond)
	if limitOf(src, "a") != 20 {
		t.Fatalf("config lost while the server was away")
	}
	srv.Set(node, "1", xdstest.Limit("a", 30, "k", "v"))
	start := time.Now()
	eventually(t, 30*time.Second, "the restarted server's version 1", func() bool { return limitOf(src, "a") == 30 })
	t.Logf("picked up %s after the new snapshot", time.Since(start))
	if o := c.Origin(); !strings.HasSuffix(o, " version 1") {
		t.Errorf("Origin %q", o)
	}
	srv.Set(node, "2", xdstest.Limit("a", 40, "k", "v"))
	eventually(t, 5*time.Second, "the restarted server's version 2", func() bool { return limitOf(src, "a") == 40 })
}

// TestTLS: TLS with the server's CA and the SAN it has; a SAN it lacks, or
// no CA, never gets a config.
func TestTLS(t *testing.T) {
	t.Parallel()
	certs := xdstest.NewCerts(t)
	srv := xdstest.StartTLS(t, certs.ServerTLS(t, false))
	srv.Set(node, "1", xdstest.Limit("a", 10, "k", "v"))

	good, err := xdsconfig.ClientTLS(srv.Addr, xdsconfig.TLSFiles{CA: certs.CAFile, SAN: "xds.test"})
	if err != nil {
		t.Fatal(err)
	}
	byIP, err := xdsconfig.ClientTLS(srv.Addr, xdsconfig.TLSFiles{CA: certs.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	wrongSAN, err := xdsconfig.ClientTLS(srv.Addr, xdsconfig.TLSFiles{CA: certs.CAFile, SAN: "other.test"})
	if err != nil {
		t.Fatal(err)
	}
	noCA, err := xdsconfig.ClientTLS(srv.Addr, xdsconfig.TLSFiles{SAN: "xds.test"})
	if err != nil {
		t.Fatal(err)
	}
	srcGood, _, _ := run(t, srv.Addr, good)
	srcIP, _, _ := run(t, srv.Addr, byIP)
	srcSAN, _, logsSAN := run(t, srv.Addr, wrongSAN)
	srcNoCA, _, _ := run(t, srv.Addr, noCA)
	srcPlain, _, _ := run(t, srv.Addr, nil)
	eventually(t, 5*time.Second, "config over TLS", func() bool { return limitOf(srcGood, "a") == 10 })
	eventually(t, 5*time.Second, "config over TLS, the address as SAN", func() bool { return limitOf(srcIP, "a") == 10 })
	time.Sleep(500 * time.Millisecond)
	for name, src := range map[string]*configsource.Source[*descriptors.Config]{"wrong SAN": srcSAN, "no CA": srcNoCA, "plaintext": srcPlain} {
		if src.Snapshot().Loaded {
			t.Errorf("%s: a config loaded", name)
		}
	}
	if !strings.Contains(logsSAN.joined(), "other.test") {
		t.Errorf("the wrong SAN's logs do not say why:\n%s", logsSAN.joined())
	}
}

// TestMTLS: a server that requires client certificates serves a client
// with one and no other.
func TestMTLS(t *testing.T) {
	t.Parallel()
	certs := xdstest.NewCerts(t)
	srv := xdstest.StartTLS(t, certs.ServerTLS(t, true))
	srv.Set(node, "1", xdstest.Limit("a", 10, "k", "v"))
	with, err := xdsconfig.ClientTLS(srv.Addr, xdsconfig.TLSFiles{CA: certs.CAFile, Cert: certs.ClientCert, Key: certs.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	without, err := xdsconfig.ClientTLS(srv.Addr, xdsconfig.TLSFiles{CA: certs.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	srcWith, _, _ := run(t, srv.Addr, with)
	srcWithout, _, _ := run(t, srv.Addr, without)
	eventually(t, 5*time.Second, "config over mTLS", func() bool { return limitOf(srcWith, "a") == 10 })
	time.Sleep(300 * time.Millisecond)
	if srcWithout.Snapshot().Loaded {
		t.Error("a client without a certificate got a config")
	}
}

// TestClientTLSErrors: unreadable files and a lone certificate fail.
func TestClientTLSErrors(t *testing.T) {
	t.Parallel()
	certs := xdstest.NewCerts(t)
	for _, tc := range []struct {
		name string
		f    xdsconfig.TLSFiles
		want string
	}{
		{"missing CA", xdsconfig.TLSFiles{CA: "/nonexistent/ca.pem"}, "CA file"},
		{"CA not PEM", xdsconfig.TLSFiles{CA: certs.ClientKey}, "no PEM certificate"},
		{"cert without key", xdsconfig.TLSFiles{Cert: certs.ClientCert}, "go together"},
		{"key not matching", xdsconfig.TLSFiles{Cert: certs.ClientCert, Key: certs.ServerKey}, "client certificate"},
	} {
		if _, err := xdsconfig.ClientTLS("127.0.0.1:1", tc.f); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestNoServer: with no server, Watch keeps retrying, logs at the
// backoff's pace, and returns when its context ends.
func TestNoServer(t *testing.T) {
	t.Parallel()
	srv := xdstest.Start(t)
	addr := srv.Addr
	srv.Stop()
	src, _, logs := run(t, addr, nil)
	time.Sleep(2 * time.Second)
	if src.Snapshot().Loaded {
		t.Fatal("loaded from nowhere")
	}
	// 250ms, 500ms, 1s (+20%): at most 4 attempts in 2 s.
	if n := logs.n.Load(); n < 2 || n > 5 {
		t.Errorf("%d log lines in 2 s:\n%s", n, logs.joined())
	}
}

// TestStopWhileNACKWaits: Watch returns at once when its context ends,
// even while a NACK waits out its interval.
func TestStopWhileNACKWaits(t *testing.T) {
	t.Parallel()
	srv := xdstest.Start(t)
	srv.Set(node, "1", badConfig("a"))
	c, err := xdsconfig.New(xdsconfig.Options{Addr: srv.Addr, NodeID: node, NACKInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Watch(ctx, func(*descriptors.Config, error) {}) }()
	eventually(t, 5*time.Second, "the first NACK", func() bool { return len(srv.NACKs()) == 1 })
	time.Sleep(100 * time.Millisecond) // the resend has arrived; its NACK waits a minute
	if n := len(srv.NACKs()); n != 1 {
		t.Fatalf("%d NACKs within the interval", n)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Watch still running a second after its context ended")
	}
}

// TestNewChecksOptions: an address and a node id are required.
func TestNewChecksOptions(t *testing.T) {
	t.Parallel()
	if _, err := xdsconfig.New(xdsconfig.Options{NodeID: "n"}); err == nil {
		t.Error("no address accepted")
	}
	if _, err := xdsconfig.New(xdsconfig.Options{Addr: "127.0.0.1:1"}); err == nil {
		t.Error("no node id accepted")
	}
}
