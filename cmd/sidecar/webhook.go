package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	injector "github.com/floodgate/floodgate/pkg/inject"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

// webhook serves the mutating admission webhook that injects the sidecar
// into pods as they are created: the same mutation as `sidecar inject`.
func webhook(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sidecar webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", ":8443", "HTTPS listener: /mutate (AdmissionReview v1), /healthz, /readyz")
	cert := fs.String("tls-cert", "/etc/floodgate-injector/tls/tls.crt", "serving certificate (PEM); reloaded when the file changes")
	key := fs.String("tls-key", "/etc/floodgate-injector/tls/tls.key", "its private key (PEM); reloaded when the file changes")
	mode := fs.String("mode", string(injector.ModeSidecar), "what to inject when a pod has no floodgate.io/mode annotation: sidecar or envoy")
	image := fs.String("image", injector.DefaultImage, "the rate-limit sidecar's image")
	envoyImage := fs.String("envoy-image", injector.DefaultEnvoyImage, "Envoy's image, in envoy mode")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error; logs are JSON lines on stderr")
	shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "how long in-flight reviews may take to finish on SIGTERM")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sidecar webhook: unexpected argument %q: settings are flags\n", fs.Arg(0))
		return exitUsage
	}
	m, err := injector.ParseMode(*mode)
	if err != nil {
		fmt.Fprintf(stderr, "sidecar webhook: --mode: %v\n", err)
		return exitUsage
	}
	level, err := sidecar.ParseLogLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "sidecar webhook: --log-level: %v\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Error("listen failed", "addr", *addr, "err", err.Error())
		return exitError
	}
	srv := &injector.Server{
		Webhook:         &injector.Webhook{Options: injector.Options{Image: *image, EnvoyImage: *envoyImage, Mode: m}, Log: log},
		Certs:           &injector.CertFiles{CertFile: *cert, KeyFile: *key, Log: log},
		Log:             log,
		ShutdownTimeout: *shutdown,
	}
	if err := srv.Serve(ctx, ln); err != nil {
		log.Error("webhook failed", "err", err.Error())
		return exitError
	}
	return exitOK
}
