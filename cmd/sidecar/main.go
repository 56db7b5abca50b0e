// Command sidecar is Floodgate: Envoy's rate-limit service as a sidecar.
//
//	sidecar [serve] [flags]       serve the rate-limit API (the default)
//	sidecar validate --config P   check a config file or directory
//	sidecar validate --auth-config P [--config P]   check an auth config
//	sidecar validate --cache-config P   check a cache config
//	sidecar keys new --id ID ...  make a new API key and its keys-file entry
//	sidecar check --addr A ...    ask a running server once
//	sidecar inject -f IN.yaml     add the sidecar to annotated workloads
//	sidecar webhook [flags]       the same as a mutating admission webhook
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/pkg/sidecar"
)

// Exit codes of the subcommands.
const (
	exitOK        = 0
	exitError     = 1
	exitUsage     = 2
	exitOverLimit = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the process's exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, getenv, stderr)
	case "validate":
		return validate(args, stdout, stderr)
	case "check":
		return check(ctx, args, stdout, stderr)
	case "keys":
		return keys(args, time.Now, stdout, stderr)
	case "inject":
		return inject(ctx, args, os.Stdin, stdout, stderr)
	case "webhook":
		return webhook(ctx, args, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "sidecar: unknown command %q\n%s", cmd, usage)
	return exitUsage
}

const usage = `usage:
  sidecar [serve] [flags]                 serve Envoy's rate-limit API (sidecar serve -h lists the flags)
  sidecar validate --config PATH          check a config file or directory
  sidecar validate --auth-config PATH [--config PATH]
                                          check an auth config (and, given both, that its rate_limit domains exist)
  sidecar validate --cache-config PATH    check a cache config (with --config or --auth-config, those too)
  sidecar check --addr HOST:PORT --domain D --descriptor k=v[,k=v...] [--descriptor ...] [--hits N] [--json]
  sidecar keys new --id ID --tenant T --tier TIER [--user U] [--expires RFC3339]
                                          print a new API key, then its entry to append under keys: in a keys file
  sidecar inject [-f IN.yaml]             add the sidecar to workloads annotated floodgate.io/inject: "true"
  sidecar webhook [flags]                 serve the same mutation as a Kubernetes admission webhook
`

func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	s, err := sidecar.ParseSettings(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "sidecar: %v\n", err)
		return exitUsage
	}
	level, _ := sidecar.ParseLogLevel(s.LogLevel)
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	rt := sidecar.TuneRuntime(getenv, "/sys/fs/cgroup", "/proc/self/cgroup")
	log.Debug("runtime", "gc_percent", rt.GCPercent, "memory_limit_bytes", rt.MemoryLimit, "gomaxprocs", rt.MaxProcs)
	if err := sidecar.New(s, log).Run(ctx); err != nil {
		log.Error("sidecar failed", "err", err.Error())
		return exitError
	}
	return exitOK
}
