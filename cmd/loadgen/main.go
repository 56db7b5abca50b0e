// Command loadgen drives any Envoy RLS v3 server over gRPC for benchmarks
// and prints throughput, latency percentiles, answers by overall_code,
// errors by gRPC code and, with --pid, the server's CPU µs per decision.
//
//	loadgen --addr 127.0.0.1:8081 --domain api \
//	    --descriptor 'remote_address=10.0.{n}' --keys 1000 \
//	    --concurrency 32 --duration 10s --warmup 2s --pid 1234 --json
//
// With --mode check it sends ext_authz v3 Check requests instead, as
// Envoy's ext_authz filter does, and counts answers by status code (OK,
// RESOURCE_EXHAUSTED as over_limit, the rest under denied):
//
//	loadgen --mode check --addr 127.0.0.1:8081 --path /v1/things \
//	    --header 'x-api-key: KEY' --source '10.0.0.{n}' --keys 200 \
//	    --concurrency 32 --duration 8s --pid 1234 --json
//	loadgen --mode check --header 'authorization: Bearer {key}' \
//	    --key-file tokens.txt --sequential --requests 20000 --json
//
// With --mode extproc each request is an ext_proc Process stream played as
// Envoy's ext_proc filter plays it: the request headers; unless answered
// with an immediate_response (a cache hit), the response headers (200,
// Cache-Control max-age, a Content-Length of --body-bytes) and the body when
// the answer's mode_override asks for it; then the half-close. --cache-load
// hit sends the same request again and again (all hits after the first);
// --cache-load miss puts a new number in place of {n} in every request
// (every request a miss that may be stored):
//
//	loadgen --mode extproc --host api.example.com --path /v1/items/1 \
//	    --cache-load hit --concurrency 32 --duration 8s --pid 1234 --json
//	loadgen --mode extproc --path '/v1/items/{n}' --cache-load miss \
//	    --body-bytes 1024 --duration 8s --pid 1234 --json
//
// Exit status: 0 when the run completed (whatever the server answered; read
// the counts), 1 when it could not run, 2 on a bad command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/floodgate/floodgate/pkg/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command, minus the process: tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, jsonOut, err := loadgen.ParseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	res, err := loadgen.Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 1
	}
	if jsonOut {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 1
	}
	return 0
}
