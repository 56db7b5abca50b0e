//go:build docker

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
	"google.golang.org/protobuf/encoding/protojson"
)

// Images the Docker test runs, pinned. E2E_ENVOY_IMAGE overrides Envoy's,
// e.g. to try a newer release against envoy/front-proxy.yaml.
const (
	envoyImage    = "envoyproxy/envoy:v1.40.0" // the release go-control-plane/envoy v1.40.0's protos follow
	redisImage    = "redis:7.4-alpine"
	upstreamImage = "hashicorp/http-echo:1.0"
)

// Network aliases of the containers: the adapted Envoy config reaches the
// sidecar and the app by these names.
const (
	aliasRedis    = "redis"
	aliasSidecar  = "floodgate"
	aliasUpstream = "app"
)

// TestDockerEnvoyFrontProxy brings up Redis, the sidecar image built from
// the project's Dockerfile, a tiny upstream and Envoy running
// envoy/front-proxy.yaml (adapted only to container networking), and checks
// through real HTTP that /login's limit of 5 a minute trips with 429 and
// that Envoy passes on the x-ratelimit-* headers and Floodgate's RateLimit,
// RateLimit-Policy and Retry-After. Without a Docker engine it skips.
func TestDockerEnvoyFrontProxy(t *testing.T) {
	testcontainers.SkipIfProviderIsNotHealthy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	nw, err := network.New(ctx)
	testcontainers.CleanupNetwork(t, nw)
	if err != nil {
		t.Fatal(err)
	}

	redis, err := testcontainers.Run(ctx, redisImage,
		network.WithNetwork([]string{aliasRedis}, nw),
		testcontainers.WithWaitStrategy(wait.ForLog("Ready to accept connections")),
	)
	cleanupContainer(t, "redis", redis)
	if err != nil {
		t.Fatalf("redis: %v", err)
	}

	app, err := testcontainers.Run(ctx, upstreamImage,
		testcontainers.WithCmd("-listen=:8000", "-text=hello from the app"),
		testcontainers.WithExposedPorts("8000/tcp"),
		network.WithNetwork([]string{aliasUpstream}, nw),
		// The image has no shell for the in-container port check.
		testcontainers.WithWaitStrategy(wait.ForListeningPort("8000/tcp").SkipInternalCheck()),
	)
	cleanupContainer(t, "app", app)
	if err != nil {
		t.Fatalf("app: %v", err)
	}

	root, err := filepath.Abs(moduleRoot)
	if err != nil {
		t.Fatal(err)
	}
	var buildLog strings.Builder
	sidecar, err := testcontainers.Run(ctx, "",
		testcontainers.WithDockerfile(testcontainers.FromDockerfile{
			Context: root, Dockerfile: "Dockerfile", BuildLogWriter: &buildLog,
		}),
		// The image's own config (examples/config.yaml), with Redis.
		testcontainers.WithCmd("serve", "--config", "/etc/floodgate", "--redis-url", "redis://"+aliasRedis+":6379"),
		testcontainers.WithExposedPorts("8081/tcp", "8080/tcp"),
		network.WithNetwork([]string{aliasSidecar}, nw),
		testcontainers.WithWaitStrategy(wait.ForHTTP("/readyz").WithPort("8080/tcp").WithStartupTimeout(2*time.Minute)),
	)
	cleanupContainer(t, "sidecar", sidecar)
	if err != nil {
		t.Fatalf("sidecar image: %v\nbuild log:\n%s", err, buildLog.String())
	}

	envoyCfg := containerEnvoyConfig(t)
	img := envoyImage
	if v := os.Getenv("E2E_ENVOY_IMAGE"); v != "" {
		img = v
	}
	envoy, err := testcontainers.Run(ctx, img,
		testcontainers.WithFiles(testcontainers.ContainerFile{HostFilePath: envoyCfg, ContainerFilePath: "/etc/envoy/front-proxy.json", FileMode: 0o644}),
		testcontainers.WithCmd("envoy", "-c", "/etc/envoy/front-proxy.json", "--log-level", "info"),
		testcontainers.WithExposedPorts("10000/tcp"),
		network.WithNetwork([]string{"envoy"}, nw),
		testcontainers.WithWaitStrategy(wait.ForListeningPort("10000/tcp").SkipInternalCheck()),
	)
	cleanupContainer(t, "envoy", envoy)
	if err != nil {
		t.Fatalf("envoy: %v", err)
	}
	base, err := envoy.PortEndpoint(ctx, "10000/tcp", "http")
	if err != nil {
		t.Fatal(err)
	}

	get := func(path string) (*http.Response, string, error) {
		resp, err := httpClient.Get(base + path)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}
	// /healthz is routed to the app and never limited: it tells when the
	// whole chain is up.
	eventually(t, time.Minute, "Envoy routing to the app", func() error {
		resp, body, err := get("/healthz")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello from the app") {
			return fmt.Errorf("/healthz: %d %q", resp.StatusCode, body)
		}
		return nil
	})

	// /login: 5 a minute, in one fixed window.
	windowHeadroom(t, time.Minute, 15*time.Second)
	for i := 1; i <= 6; i++ {
		resp, body, err := get("/login")
		if err != nil {
			t.Fatalf("/login %d: %v", i, err)
		}
		h := resp.Header
		t.Logf("/login %d: %d x-ratelimit-limit=%q x-ratelimit-remaining=%q x-ratelimit-reset=%q ratelimit-policy=%q ratelimit=%q retry-after=%q",
			i, resp.StatusCode, h.Get("X-RateLimit-Limit"), h.Get("X-RateLimit-Remaining"), h.Get("X-RateLimit-Reset"),
			h.Get("RateLimit-Policy"), h.Get("RateLimit"), h.Get("Retry-After"))
		wantStatus, wantRemaining := http.StatusOK, 5-i
		if i == 6 {
			wantStatus, wantRemaining = http.StatusTooManyRequests, 0
		}
		if resp.StatusCode != wantStatus {
			t.Errorf("/login %d: status %d, want %d (body %q)", i, resp.StatusCode, wantStatus, body)
		}
		// Envoy's DRAFT_VERSION_03 headers, from the most restrictive limit:
		// login's 5 a minute.
		if got := h.Get("X-RateLimit-Limit"); !strings.HasPrefix(got, "5") {
			t.Errorf("/login %d: X-RateLimit-Limit %q, want login's 5 first", i, got)
		}
		if got, err := strconv.Atoi(h.Get("X-RateLimit-Remaining")); err != nil || got != wantRemaining {
			t.Errorf("/login %d: X-RateLimit-Remaining %q, want %d", i, h.Get("X-RateLimit-Remaining"), wantRemaining)
		}
		if h.Get("X-RateLimit-Reset") == "" {
			t.Errorf("/login %d: no X-RateLimit-Reset", i)
		}
		// Floodgate's own headers, one member per limited descriptor.
		if got := h.Get("RateLimit-Policy"); !strings.Contains(got, `"login";q=5;w=60`) || !strings.Contains(got, `"remote_address";q=100;w=60`) {
			t.Errorf("/login %d: RateLimit-Policy %q", i, got)
		}
		if got, want := h.Get("RateLimit"), fmt.Sprintf(`"login";r=%d;t=`, wantRemaining); !strings.Contains(got, want) {
			t.Errorf("/login %d: RateLimit %q, want it to contain %s", i, got, want)
		}
		if i == 6 {
			if h.Get("Retry-After") == "" || h.Get("X-Envoy-Ratelimited") == "" {
				t.Errorf("/login 6: Retry-After %q, x-envoy-ratelimited %q; want both", h.Get("Retry-After"), h.Get("X-Envoy-Ratelimited"))
			}
		} else if h.Get("Retry-After") != "" {
			t.Errorf("/login %d: Retry-After %q on an admitted request", i, h.Get("Retry-After"))
		}
	}
}

// cleanupContainer terminates c when the test ends, printing its log first
// if the test failed.
func cleanupContainer(t *testing.T, name string, c *testcontainers.DockerContainer) {
	t.Helper()
	if c == nil {
		return
	}
	testcontainers.CleanupContainer(t, c)
	// Cleanups run last-registered first: the log is read before the
	// container goes.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if r, err := c.Logs(ctx); err == nil {
			b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
			r.Close()
			t.Logf("log of %s:\n%s", name, b)
		}
	})
}

// containerEnvoyConfig writes envoy/front-proxy.yaml adapted to the test's
// container network: its clusters reach the sidecar and the app by their
// network aliases (STRICT_DNS, since STATIC takes only IP addresses).
// Nothing else changes. It returns the path of the JSON file, which Envoy
// reads as it reads YAML.
func containerEnvoyConfig(t *testing.T) string {
	t.Helper()
	b, err := loadEnvoy(filepath.Join(moduleRoot, "envoy", "front-proxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]string{"app": aliasUpstream, "floodgate": aliasSidecar}
	for _, c := range b.GetStaticResources().GetClusters() {
		host, ok := hosts[c.GetName()]
		if !ok {
			t.Fatalf("front-proxy.yaml has a cluster %q this test does not know how to reach", c.GetName())
		}
		delete(hosts, c.GetName())
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		for _, lle := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range lle.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				if sa == nil {
					t.Fatalf("cluster %s: endpoint without a socket address", c.GetName())
				}
				sa.Address = host
			}
		}
	}
	if len(hosts) != 0 {
		t.Fatalf("front-proxy.yaml lacks clusters %v", hosts)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	js, err := protojson.MarshalOptions{Multiline: true}.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, t.TempDir(), "front-proxy.json", string(js))
}
