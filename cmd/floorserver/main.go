// Command floorserver is the floor that rate-limit services are measured
// against: a grpc-go server with default options whose
// envoy.service.ratelimit.v3 ShouldRateLimit and envoy.service.auth.v3
// Authorization Check handlers answer OK without doing anything (each with
// one shared, prebuilt response), and whose envoy.service.ext_proc.v3
// ExternalProcessor Process answers each message of a stream with the
// minimal CONTINUE of its kind. With --extproc-hit-bytes N it answers every
// stream's request headers with an immediate_response instead (status 200,
// a cache hit's headers and an N-byte body): the floor of a cache hit.
//
// It logs {"msg":"listening","grpc":ADDR,"pid":PID} on stderr once it
// accepts connections, and prints its own CPU time as one JSON line on
// stdout when it gets SIGUSR1 (and keeps serving) and when SIGTERM or
// SIGINT stops it:
//
//	{"msg":"cpu","user_us":...,"sys_us":...,"served":...,"us_per_request":...}
//
// The figures count from process start; take two SIGUSR1 reports around a
// run and subtract for a clean per-run cost, or use loadgen --pid.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/floodgate/floodgate/pkg/loadgen"
)

// stopGrace is how long in-flight calls get to finish on shutdown before
// connections are cut.
const stopGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	reports := make(chan os.Signal, 1)
	signal.Notify(reports, syscall.SIGUSR1)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, reports)
	stop()
	os.Exit(code)
}

// run parses args, serves until ctx ends, and prints a CPU report for every
// value received on reports and once at the end.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, reports <-chan os.Signal) int {
	fs := flag.NewFlagSet("floorserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8081", "gRPC listen `host:port` (port 0 picks a free one), or unix:///path for a Unix socket")
	hitBytes := fs.Int("extproc-hit-bytes", 0, "ext_proc: answer request headers with an immediate_response whose body has this many `bytes` (a cache hit's floor); 0: CONTINUE")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "floorserver: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *hitBytes < 0 {
		fmt.Fprintf(stderr, "floorserver: --extproc-hit-bytes %d: negative\n", *hitBytes)
		return 2
	}
	m := &Main{Addr: *addr, HitBytes: *hitBytes}
	if err := m.Start(); err != nil {
		fmt.Fprintf(stderr, "floorserver: %v\n", err)
		return 1
	}
	line, _ := json.Marshal(map[string]any{"msg": "listening", "grpc": m.BoundAddr(), "pid": os.Getpid()})
	fmt.Fprintf(stderr, "%s\n", line)
	for serving := true; serving; {
		select {
		case <-reports:
			if err := m.Report(stdout); err != nil {
				fmt.Fprintf(stderr, "floorserver: %v\n", err)
			}
		case <-ctx.Done():
			serving = false
		}
	}
	code := 0
	if err := m.Close(); err != nil {
		fmt.Fprintf(stderr, "floorserver: %v\n", err)
		code = 1
	}
	if err := m.Report(stdout); err != nil {
		fmt.Fprintf(stderr, "floorserver: %v\n", err)
		code = 1
	}
	return code
}

// Main is one floor server: Start it, Report on it, Close it.
type Main struct {
	// Addr is the listen address; port 0 picks a free port.
	Addr string
	// HitBytes, when positive, makes Process answer request headers with
	// loadgen.FloorHit(HitBytes) (--extproc-hit-bytes).
	HitBytes int

	floor  loadgen.FloorServer
	server *grpc.Server
	ln     net.Listener
	done   chan error
}

// Start listens on Addr and serves in the background; it returns once the
// listener accepts connections.
func (m *Main) Start() error {
	network, address := "tcp", m.Addr
	if path, ok := strings.CutPrefix(m.Addr, "unix://"); ok {
		// A Unix socket, to measure the transport against TCP.
		network, address = "unix", path
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", m.Addr, err)
	}
	m.ln = ln
	// Default server options on purpose: the floor is what grpc-go costs
	// out of the box.
	m.server = grpc.NewServer()
	if m.HitBytes > 0 {
		m.floor.Hit = loadgen.FloorHit(m.HitBytes)
	}
	rlsv3.RegisterRateLimitServiceServer(m.server, &m.floor)
	authv3.RegisterAuthorizationServer(m.server, &m.floor)
	extprocv3.RegisterExternalProcessorServer(m.server, &m.floor)
	m.done = make(chan error, 1)
	go func() { m.done <- m.server.Serve(ln) }()
	return nil
}

// BoundAddr is the address actually listened on.
func (m *Main) BoundAddr() string { return m.ln.Addr().String() }

// Served is the number of calls (ShouldRateLimit, Check and Process
// streams) answered.
func (m *Main) Served() uint64 { return m.floor.Served() }

// cpuReport is the line Report prints.
type cpuReport struct {
	Msg              string  `json:"msg"`
	UserMicros       float64 `json:"user_us"`
	SystemMicros     float64 `json:"sys_us"`
	Served           uint64  `json:"served"`
	MicrosPerRequest float64 `json:"us_per_request"`
}

// Report writes this process's CPU time since it started, and the calls
// served, as one JSON line.
func (m *Main) Report(w io.Writer) error {
	used, err := loadgen.SelfCPU()
	if err != nil {
		return err
	}
	r := cpuReport{
		Msg:          "cpu",
		UserMicros:   float64(used.User.Microseconds()),
		SystemMicros: float64(used.System.Microseconds()),
		Served:       m.Served(),
	}
	if r.Served > 0 {
		r.MicrosPerRequest = float64(used.Total().Microseconds()) / float64(r.Served)
	}
	if err := json.NewEncoder(w).Encode(r); err != nil {
		return fmt.Errorf("write cpu report: %w", err)
	}
	return nil
}

// Close stops accepting, lets in-flight calls finish for up to stopGrace,
// then cuts what remains.
func (m *Main) Close() error {
	stopped := make(chan struct{})
	go func() {
		m.server.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		m.server.Stop()
		<-stopped
	}
	if err := <-m.done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
