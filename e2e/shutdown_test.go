package e2e

import (
	"context"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/floodgate/floodgate/internal/redistest"
)

// Phases of the shutdown test's load.
const (
	beforeSignal int32 = iota
	afterSignal
)

// TestSIGTERMUnderLoad sends SIGTERM while calls are in flight. To be sure
// some are, Redis is made to sleep first, so that every worker's call sits
// in the sidecar waiting on it. Every call sent before the signal must get
// a real answer; calls sent after it may be refused (UNAVAILABLE) but
// nothing else. Health turns NOT_SERVING, /readyz 503, the process exits 0
// and says so in its log.
func TestSIGTERMUnderLoad(t *testing.T) {
	const workers = 4
	redis := redistest.StartServerArgs(t, "--enable-debug-command", "local")
	cfg := writeFile(t, t.TempDir(), "outage.yaml", outageConfig)
	// The read timeout outlasts Redis's sleep: the held calls succeed.
	sc := startSidecar(t, "sidecar", "--config", cfg, "--redis-url", redis.URL, "--redis-read-timeout", "10s", "--shutdown-timeout", "15s")

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(sc.conn).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before the signal: %v (%v), want SERVING", st.GetStatus(), err)
	}
	notServing := make(chan error, 1)
	go func() {
		for {
			st, err := watch.Recv()
			if err != nil {
				notServing <- fmt.Errorf("health watch ended before NOT_SERVING: %w", err)
				return
			}
			if st.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
				notServing <- nil
				return
			}
		}
	}()

	l := startLoad(sc, loadOpts{
		workers: workers, maxCalls: 20000, maxTime: 60 * time.Second, pace: time.Millisecond,
		request: func(w, _ int) *rlsv3.RateLimitRequest { return outageRequest(fmt.Sprint("w", w)) },
	})
	defer l.stop()
	l.waitCalls(t, beforeSignal, 100, 10*time.Second)

	// Redis sleeps; the workers' next calls wait in the sidecar. Once all
	// are in flight and nothing completes for a while, every one of them
	// has reached the server.
	slept := make(chan error, 1)
	go func() {
		_, err := redis.Do("DEBUG", "SLEEP", "2")
		slept <- err
	}()
	var last int64 = -1
	stable := 0
	eventually(t, 5*time.Second, "every worker's call held in the sidecar", func() error {
		done := l.done.Load()
		if l.inflight.Load() == workers && done == last {
			stable++
		} else {
			stable = 0
		}
		last = done
		if stable < 10 { // 200ms without progress
			return fmt.Errorf("in flight %d of %d, %d calls done", l.inflight.Load(), workers, done)
		}
		return nil
	})

	l.phase.Store(afterSignal)
	sc.signal(syscall.SIGTERM)

	select {
	case err := <-notServing:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Error("health did not turn NOT_SERVING within 5s of SIGTERM")
	}
	// A health watch is a call in flight too: end it, or it holds up the
	// graceful stop.
	stopWatch()
	eventually(t, 5*time.Second, "/readyz 503 while shutting down", func() error {
		code, body, err := sc.get("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		return nil
	})

	if err := <-slept; err != nil {
		t.Errorf("DEBUG SLEEP: %v", err)
	}
	if code := sc.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	l.stop()

	before, after := l.in(beforeSignal), l.in(afterSignal)
	t.Logf("before SIGTERM: %s; after: %s", before, after)
	if before.codes[codes.OK] != before.total() || before.decided != before.total() {
		t.Errorf("calls sent before SIGTERM must all be answered: %s", before)
	}
	if n := after.total() - after.codes[codes.OK] - after.codes[codes.Unavailable]; n != 0 {
		t.Errorf("calls sent after SIGTERM: want OK or UNAVAILABLE only: %s", after)
	}
	for _, msg := range []string{"shutting down", "stopped"} {
		if !sc.logHas(msg) {
			t.Errorf("no %q log line", msg)
		}
	}
	if sc.logHas("shutdown timeout: cutting in-flight calls") {
		t.Error("in-flight calls were cut at the shutdown timeout")
	}
}
