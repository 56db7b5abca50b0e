package sidecar

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/floodgate/floodgate/pkg/configsource"
	"github.com/floodgate/floodgate/pkg/tlsreload"
)

// GRPCTLSSettings turn on TLS, and mutual TLS, on the gRPC listener.
type GRPCTLSSettings struct {
	Cert      string // --grpc-tls-cert: server certificate chain, PEM
	Key       string // --grpc-tls-key: its private key, PEM
	ClientCA  string // --grpc-tls-client-ca: CA certificates client certificates must chain to ("" = none asked)
	ClientSAN string // --grpc-tls-client-san: a SAN client certificates must carry ("" = any from the CA)
}

// SocketMode is the permission of a --grpc-addr unix:// socket: owner and
// group read and write, as Envoy in the same pod connects with the pod's
// fsGroup (or the same user); nobody else.
const SocketMode fs.FileMode = 0o660

func (t *GRPCTLSSettings) flags(fs *flag.FlagSet) {
	fs.StringVar(&t.Cert, "grpc-tls-cert", "", "serve gRPC over TLS with this PEM certificate chain (needs --grpc-tls-key); reloaded when it changes")
	fs.StringVar(&t.Key, "grpc-tls-key", "", "the PEM private key of --grpc-tls-cert; reloaded when it changes")
	fs.StringVar(&t.ClientCA, "grpc-tls-client-ca", "", "require client certificates that chain to these PEM CA certificates (mutual TLS; needs --grpc-tls-cert); reloaded when it changes")
	fs.StringVar(&t.ClientSAN, "grpc-tls-client-san", "", "accept only client certificates with this subject alternative name: a DNS name, IP, URI or email (needs --grpc-tls-client-ca)")
}

// check reports contradictory TLS settings through bad.
func (t GRPCTLSSettings) check(grpcAddr string, bad func(string, ...any)) {
	switch {
	case t.Cert != "" && t.Key == "":
		bad("--grpc-tls-cert needs --grpc-tls-key")
	case t.Key != "" && t.Cert == "":
		bad("--grpc-tls-key needs --grpc-tls-cert")
	}
	if t.ClientCA != "" && t.Cert == "" {
		bad("--grpc-tls-client-ca needs --grpc-tls-cert and --grpc-tls-key: client certificates are asked for in a TLS handshake")
	}
	if t.ClientSAN != "" && t.ClientCA == "" {
		bad("--grpc-tls-client-san needs --grpc-tls-client-ca: a SAN means something only on a verified client certificate")
	}
	if path, ok := socketPath(grpcAddr); ok && path == "" {
		bad("--grpc-addr=%q: a Unix socket needs a path (unix:///path/to/socket)", grpcAddr)
	}
}

// socketPath is the path of a unix:///abs/path or unix:rel/path address,
// as grpc-go spells them; ok is false for a TCP address.
func socketPath(addr string) (path string, ok bool) {
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		return p, true
	}
	return strings.CutPrefix(addr, "unix:")
}

// listenGRPC binds --grpc-addr: TCP, or a Unix socket. A socket file left
// by a process that died is removed first; anything else at the path (a
// file, or a socket someone still listens on) fails the start. The socket
// is removed when the listener closes.
func listenGRPC(addr string) (net.Listener, error) {
	path, ok := socketPath(addr)
	if !ok {
		return net.Listen("tcp", addr)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Listen created the socket with the umask's permissions; the
	// directory (an emptyDir shared by the pod's containers) is the fence
	// that matters, this is the second one.
	if err := os.Chmod(path, SocketMode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket: not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s: another process is serving on this socket", path)
	}
	return os.Remove(path)
}

// grpcAddr is a listener's address as a gRPC client dials it.
func grpcAddr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	if u, ok := ln.Addr().(*net.UnixAddr); ok {
		if filepath.IsAbs(u.Name) {
			return "unix://" + u.Name
		}
		return "unix:" + u.Name
	}
	return ln.Addr().String()
}

// loadGRPCTLS loads --grpc-tls-* (when set) and returns the server option
// that serves them.
func (m *Main) loadGRPCTLS(metrics *configsource.Metrics) (grpc.ServerOption, error) {
	t := m.settings.GRPCTLS
	if t.Cert == "" {
		return grpc.EmptyServerOption{}, nil
	}
	srv, err := tlsreload.New(tlsreload.Options{
		CertFile: t.Cert, KeyFile: t.Key, ClientCAFile: t.ClientCA, ClientSAN: t.ClientSAN,
		Interval:   m.settings.ReloadEvery,
		Metrics:    metrics,
		Registerer: m.registry,
		Name:       "grpc-tls",
		Log:        m.log,
	})
	if err != nil {
		return nil, fmt.Errorf("--grpc-tls-*: %w", err)
	}
	m.grpcTLS = srv
	return grpc.Creds(credentials.NewTLS(srv.Config())), nil
}
