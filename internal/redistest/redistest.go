// Package redistest starts real redis-server processes for tests: a
// standalone server, a 3-master Redis Cluster and a Sentinel group, all on
// random loopback ports, each in its own temporary directory, stopped when the
// test (or, for the shared ones, the test binary) ends.
//
// No data is ever persisted (--save "" --appendonly no), so a restarted
// server comes back empty, as a crashed cache would.
//
// The processes are started with a parent-death signal so that a test binary
// that dies (a panic, a timeout) does not leave redis-server behind.
package redistest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process on a fixed loopback port. Stop and Start
// (or Restart) take it down and bring it back on the same port, for outage
// tests.
type Server struct {
	// Addr is host:port of the server, on 127.0.0.1.
	Addr string
	// URL is redis://Addr, the form the backend's settings take.
	URL string

	port  int
	dir   string
	extra []string
	// sentinelConf, when set, runs the process as a Sentinel with this
	// config file (Sentinel rewrites it, so each has its own).
	sentinelConf string
	// tls, when set, makes the server speak TLS only.
	tls *tlsFiles

	mu     sync.Mutex
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{} // closed when cmd has been reaped
}

// lookPath finds redis-server, with an error that says how to get it.
func lookPath() (string, error) {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not found in PATH (%v); install it with `apt-get install -y redis-server` (make test does)", err)
	}
	return p, nil
}

// StartServer starts a fresh standalone redis-server for this test only and
// stops it when the test ends. Prefer Shared when the test only needs keys of
// its own.
func StartServer(t testing.TB) *Server {
	t.Helper()
	return StartServerArgs(t)
}

// StartServerArgs is StartServer with more redis-server arguments, e.g.
// "--user", "alice", "on", ">secret", "~*", "&*", "+@all" (one argument per
// word, as redis-server reads its command line).
func StartServerArgs(t testing.TB, args ...string) *Server {
	t.Helper()
	s, err := startServer(t.TempDir(), args)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// lazy is a process started on first use and shared by every test of the
// test binary; Main stops it and removes its directory.
type lazy[T any] struct {
	once sync.Once
	v    T
	stop func()
	err  error
	dir  string
}

// get starts the process with start (in a new directory named after
// pattern) on first use and returns it, or fails t with what.
func (l *lazy[T]) get(t testing.TB, what, pattern string, start func(dir string) (T, func(), error)) T {
	t.Helper()
	l.once.Do(func() {
		l.dir, l.err = os.MkdirTemp("", pattern)
		if l.err == nil {
			l.v, l.stop, l.err = start(l.dir)
		}
	})
	if l.err != nil {
		t.Fatalf("redistest: %s: %v", what, l.err)
	}
	return l.v
}

// close stops the process, if it was started, and removes its directory.
func (l *lazy[T]) close() {
	if l.stop != nil {
		l.stop()
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

var shared lazy[*Server]

// Shared returns a standalone redis-server shared by every test of the test
// binary that asks for it, started on first use. Tests that share it must use
// key prefixes of their own and must not flush, restart or reconfigure it.
// It is stopped by Main, or killed with the test binary at the latest.
func Shared(t testing.TB) *Server {
	t.Helper()
	return shared.get(t, "shared server", "redistest-shared-", func(dir string) (*Server, func(), error) {
		s, err := startServer(dir, nil)
		if err != nil {
			return nil, nil, err
		}
		return s, s.Stop, nil
	})
}

// Main runs the tests of a package and then stops the shared server and
// cluster; call it from TestMain: func TestMain(m *testing.M) { redistest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	shared.close()
	sharedCluster.close()
	os.Exit(code)
}

// startServer picks a free port and starts a server there, trying again with
// another port if one is taken between the check and the bind.
func startServer(dir string, extra []string) (*Server, error) {
	bin, err := lookPath()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(false)
		if err != nil {
			lastErr = err
			continue
		}
		s := newServer(port, dir, extra)
		if lastErr = s.start(bin); lastErr == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("starting redis-server: %w", lastErr)
}

func newServer(port int, dir string, extra []string) *Server {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return &Server{Addr: addr, URL: "redis://" + addr, port: port, dir: dir, extra: extra}
}

// Start starts a stopped server again on its port (a no-op if it runs).
func (s *Server) Start() error {
	bin, err := lookPath()
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	return s.start(bin)
}

func (s *Server) start(bin string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	var args []string
	if s.sentinelConf != "" {
		args = []string{s.sentinelConf, "--sentinel"}
	}
	port := strconv.Itoa(s.port)
	if s.tls != nil {
		// TLS only: no plain-text port.
		args = append(args, "--tls-port", port,
			"--tls-cert-file", s.tls.certFile, "--tls-key-file", s.tls.keyFile,
			"--tls-ca-cert-file", s.tls.caFile, "--tls-auth-clients", "no")
		port = "0"
	}
	args = append(args,
		"--port", port,
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--daemonize", "no",
		"--protected-mode", "no",
		// Warnings only: the log is shown when start-up fails.
		"--loglevel", "warning",
	)
	if s.sentinelConf == "" {
		args = append(args, "--save", "", "--appendonly", "no")
	}
	args = append(args, s.extra...)
	cmd, logf, err := spawn(bin, s.dir, fmt.Sprintf("redis-%d.log", s.port), args)
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	if err := waitPing(s.dial, exited); err != nil {
		cmd.Process.Kill()
		<-exited
		logf.Close()
		return fmt.Errorf("%w; log: %s", err, tail(logf.Name()))
	}
	s.cmd, s.log, s.exited = cmd, logf, exited
	return nil
}

// Stop kills the server (SIGKILL, like a crash: nothing is saved) and waits
// for it to exit. Clients see connection errors until Start.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.log.Close()
	s.cmd, s.log, s.exited = nil, nil, nil
}

// Pause stops the server with SIGSTOP: it keeps its connections, and the
// kernel still completes new ones, but it answers nothing until Resume,
// like a Redis stalled by a slow fork or a host that froze.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("redistest: %s is not running", s.Addr)
	}
	return s.cmd.Process.Signal(sig)
}

// Restart stops the server and starts it again on the same port, empty.
func (s *Server) Restart() error {
	s.Stop()
	return s.Start()
}

// Do sends one command to the server on a new connection and returns the
// reply as text (see Do).
func (s *Server) Do(args ...string) (string, error) { return do(s.dial, args...) }

// dial connects to the server, over TLS for a TLS server.
func (s *Server) dial() (net.Conn, error) {
	d := &net.Dialer{Timeout: time.Second}
	if s.tls != nil {
		return tls.DialWithDialer(d, "tcp", s.Addr, s.tls.client)
	}
	return d.Dial("tcp", s.Addr)
}

func spawn(bin, dir, logName string, args []string) (*exec.Cmd, *os.File, error) {
	logf, err := os.OpenFile(filepath.Join(dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("redistest: log file: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Kill the server with the test binary, whatever way it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, nil, fmt.Errorf("redistest: start %s: %w", bin, err)
	}
	return cmd, logf, nil
}

// waitPing polls addr until it answers PING, the process exits, or
// startTimeout passes.
func waitPing(dial func() (net.Conn, error), exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		reply, err := do(dial, "PING")
		var rerr ReplyError
		if err == nil && reply == "PONG" || errors.As(err, &rerr) {
			// Any answer, even NOAUTH from a server with a password, means
			// it is serving.
			return nil
		}
		select {
		case <-exited:
			return errors.New("redis-server exited during start-up")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING within %s (last: %q, %v)", startTimeout, reply, err)
		}
	}
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// freePort returns a loopback TCP port that was free a moment ago. For a
// cluster node (bus true) the port is at most 55535 and port+10000, the
// cluster bus port, is free too.
func freePort(bus bool) (int, error) {
	if !bus {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("redistest: no free port: %w", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	for i := 0; i < 100; i++ {
		port := 20000 + rand.IntN(55535-20000)
		a, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return port, nil
	}
	return 0, errors.New("redistest: no free port pair for a cluster node")
}

// Do sends one command to addr in RESP on a new connection and returns the
// reply as text: a status or bulk string as is, an integer in decimal, an
// array as its elements joined by newlines. A Redis error reply is returned
// as an error. It exists so the helpers need no client library.
func Do(addr string, args ...string) (string, error) {
	return do(func() (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }, args...)
}

func do(dial func() (net.Conn, error), args ...string) (string, error) {
	conn, err := dial()
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn))
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", ReplyError(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("redistest: bad bulk length %q", line)
		}
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("redistest: bad array length %q", line)
		}
		parts := make([]string, 0, max(n, 0))
		for i := 0; i < n; i++ {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("redistest: unexpected reply %q", line)
}

// ReplyError is an error reply from Redis, as Do returns it.
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// Field returns the value of one "name:value" line of an INFO-style reply
// (INFO, CLUSTER INFO), or "" when it is absent.
func Field(text, name string) string {
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}

// poll calls f every interval until it returns nil or timeout passes, and
// returns f's last error then.
func poll(ctx context.Context, timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
