// Command soaktool (hack/soak, built as bin/soaktool) samples a running
// sidecar during a long run and judges the run afterwards. hack/soak/run.sh
// (make soak) drives it:
//
//	soaktool freeport                     # a free loopback TCP port, for redis-server
//	soaktool sample --pid PID --metrics http://127.0.0.1:PORT/metrics \
//	    --interval 10s --duration 1h --out samples.csv
//	soaktool report --csv samples.csv --loader 'loaders/*.json' \
//	    --warmup 2m --out DIR         # summary.txt and plot.svg; exit 1 on fail
//
// Exit status: 0 when done (report: and the run passed), 1 on a failed run
// or an error, 2 on a bad command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = "usage: soaktool freeport | soaktool sample [flags] | soaktool report [flags] (-h after a subcommand lists its flags)"

// run is the whole command minus the process, so that tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "freeport":
		err = freePort(stdout)
	case "sample":
		err = runSample(ctx, args[1:], stderr)
	case "report":
		var pass bool
		pass, err = runReport(args[1:], stdout, stderr)
		if err == nil && !pass {
			return 1
		}
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "soaktool: unknown subcommand %q\n%s\n", args[0], usage)
		return 2
	}
	var usageErr *usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usageErr):
		fmt.Fprintf(stderr, "soaktool %s: %v\n", args[0], err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "soaktool %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// usageError is a bad command line (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// freePort prints a TCP port that was free on 127.0.0.1 a moment ago. The
// port is released before the caller binds it, so a race with another
// process is possible but unlikely; redis-server then fails to start and
// the script says so.
func freePort(w io.Writer) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, port)
	return err
}
