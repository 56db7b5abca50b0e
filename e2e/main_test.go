package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// sidecarBin is the sidecar binary TestMain builds, once per test binary.
var sidecarBin string

// moduleRoot is the repository root, relative to this package's directory
// (go test runs a package's tests there).
const moduleRoot = ".."

// exampleConfig is the config the Envoy configs in envoy/ are written for.
var exampleConfig = filepath.Join(moduleRoot, "examples", "config.yaml")

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "floodgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	sidecarBin = filepath.Join(dir, "sidecar")
	// go test puts its own Go first in PATH, so this builds with the same
	// toolchain as the tests. The build cache makes it cheap after the first.
	build := exec.Command("go", "build", "-o", sidecarBin, "./cmd/sidecar")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/sidecar: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startTimeout bounds how long a sidecar may take to log "listening".
const startTimeout = 15 * time.Second

// sidecar is one running sidecar process.
type sidecar struct {
	t        testing.TB
	name     string
	cmd      *exec.Cmd
	logPath  string
	grpcAddr string
	httpAddr string
	conn     *grpc.ClientConn
	rls      rlsv3.RateLimitServiceClient

	done    chan struct{} // closed once the process has exited
	waitErr error         // cmd.Wait's error, set before done closes
}

// startSidecar runs `sidecar serve` on 127.0.0.1:0 (both listeners) with
// args appended (later flags win), and returns once it logs "listening". Its
// log goes to a file in t.TempDir() and is printed if the test fails; the
// process is killed when the test ends, if it still runs.
func startSidecar(t testing.TB, name string, args ...string) *sidecar {
	t.Helper()
	// A decision waits at most the Redis read timeout, queue and dial
	// included: 5 s keeps a loaded CI machine from failing tests that are
	// not about timeouts (the fault suite, make chaos, runs the defaults).
	full := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--redis-read-timeout", "5s"}, args...)
	return startProcess(t, name, nil, full...)
}

// startProcess runs the sidecar binary with args as they are and env added
// to the cleaned environment (later entries win), and returns once it logs
// "listening", as startSidecar does. The process must log JSON.
func startProcess(t testing.TB, name string, env []string, args ...string) *sidecar {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sidecarBin, args...)
	cmd.Env = append(cleanEnv(), env...)
	listening := make(chan listenLine, 1)
	cmd.Stderr = &logWatcher{f: logf, listening: listening}
	cmd.Stdout = logf
	// The process dies with the test binary, however that ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("%s: start: %v", name, err)
	}
	s := &sidecar{t: t, name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	t.Cleanup(s.cleanup)

	select {
	case l := <-listening:
		s.grpcAddr, s.httpAddr = l.GRPC, l.HTTP
	case <-s.done:
		t.Fatalf("%s exited before listening: %v", name, s.waitErr)
	case <-time.After(startTimeout):
		t.Fatalf("%s did not log \"listening\" within %s", name, startTimeout)
	}
	s.conn, err = grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("%s: grpc client: %v", name, err)
	}
	s.rls = rlsv3.NewRateLimitServiceClient(s.conn)
	return s
}

// cleanEnv is the test's environment without SIDECAR_* variables, so that a
// developer's settings cannot change what the tests start.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SIDECAR_") {
			env = append(env, kv)
		}
	}
	return env
}

func (s *sidecar) cleanup() {
	if s.conn != nil {
		s.conn.Close()
	}
	select {
	case <-s.done:
	default:
		s.cmd.Process.Kill()
		<-s.done
	}
	if s.t.Failed() {
		s.t.Logf("log of %s (%s):\n%s", s.name, s.logPath, s.log())
	}
}

// log returns the process's log so far (its last 64 KiB).
func (s *sidecar) log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	return string(b)
}

// logLines returns the process's log as decoded JSON lines; lines that are
// not JSON objects are returned as {"raw": line}.
func (s *sidecar) logLines() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.log()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			m = map[string]any{"raw": sc.Text()}
		}
		out = append(out, m)
	}
	return out
}

// logHas reports whether some log line has this msg.
func (s *sidecar) logHas(msg string) bool {
	for _, l := range s.logLines() {
		if l["msg"] == msg {
			return true
		}
	}
	return false
}

// signal sends sig to the process.
func (s *sidecar) signal(sig os.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("%s: signal %v: %v", s.name, sig, err)
	}
}

// wait waits up to timeout for the process to exit and returns its exit
// code (-1 when a signal killed it).
func (s *sidecar) wait(timeout time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.t.Fatalf("%s did not exit within %s", s.name, timeout)
	}
	if s.waitErr == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(s.waitErr, &ee) {
		return ee.ExitCode()
	}
	s.t.Fatalf("%s: wait: %v", s.name, s.waitErr)
	return -1
}

// running reports whether the process has not exited.
func (s *sidecar) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// callTimeout bounds every gRPC call of the tests.
const callTimeout = 10 * time.Second

// call sends one ShouldRateLimit.
func (s *sidecar) call(req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return s.rls.ShouldRateLimit(ctx, req)
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// get fetches path from the HTTP listener: status and body.
func (s *sidecar) get(path string) (int, string, error) {
	resp, err := httpClient.Get("http://" + s.httpAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metric reads one series from /metrics: series is the metric name with its
// labels as Prometheus prints them, e.g. `floodgate_config_reloads_total{result="success",source="limits"}`.
func (s *sidecar) metric(series string) (float64, error) {
	code, body, err := s.get("/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("/metrics: status %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no series %s", series)
}

// mustMetric is metric, failing the test on error.
func (s *sidecar) mustMetric(series string) float64 {
	s.t.Helper()
	v, err := s.metric(series)
	if err != nil {
		s.t.Fatalf("%s: %v", s.name, err)
	}
	return v
}

// listenLine is the "listening" log line's addresses.
type listenLine struct {
	Msg  string `json:"msg"`
	GRPC string `json:"grpc"`
	HTTP string `json:"http"`
}

// logWatcher copies the process's stderr to its log file and reports the
// "listening" line, so start-up needs no polling of the file.
type logWatcher struct {
	f         *os.File
	listening chan<- listenLine

	mu      sync.Mutex
	partial []byte
	found   bool
}

func (w *logWatcher) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.found {
		return n, err
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := w.partial[:i]
		w.partial = w.partial[i+1:]
		var l listenLine
		if json.Unmarshal(line, &l) == nil && l.Msg == "listening" {
			w.found = true
			w.partial = nil
			w.listening <- l
			break
		}
	}
	return n, err
}

// eventually calls f every 20ms until it returns nil, and fails the test
// with f's last error if that takes longer than timeout.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeFile writes content to dir/name and returns the path.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// windowHeadroom waits, when less than need is left of the current window
// of length unit (windows are aligned to the Unix epoch, as the sidecar's
// are), until the next window starts. Tests that count up to a limit call it
// first, so that a window boundary cannot fall in the middle of the count.
// It is not an assertion about timing, only a choice of when to start.
func windowHeadroom(t testing.TB, unit, need time.Duration) {
	t.Helper()
	left := unit - time.Duration(time.Now().UnixNano()%int64(unit))
	if left < need {
		t.Logf("waiting %s for a fresh %s window", left.Round(time.Millisecond), unit)
		time.Sleep(left + 10*time.Millisecond)
	}
}
