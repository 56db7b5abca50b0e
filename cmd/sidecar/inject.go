package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	injector "github.com/floodgate/floodgate/pkg/inject"
)

const injectUsage = `usage: sidecar inject [-f FILE] [--mode sidecar|envoy] [--image IMAGE] [--envoy-image IMAGE]

Adds the rate-limit sidecar (and, in envoy mode, an Envoy in front of the app)
to every Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob and Pod
whose pod template is annotated floodgate.io/inject: "true", and writes the
manifests to stdout. The limits come from the ConfigMap named by
floodgate.io/config. Running it twice changes nothing the second time.

`

// inject rewrites a YAML stream of manifests, from -f FILE or stdin.
func inject(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sidecar inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, injectUsage)
		fs.PrintDefaults()
	}
	file := fs.String("f", "-", "manifests to read, - for stdin")
	mode := fs.String("mode", string(injector.ModeSidecar), "what to inject when a template has no floodgate.io/mode annotation: sidecar (the rate-limit service alone, for pods that have an Envoy already) or envoy (an Envoy as well)")
	image := fs.String("image", injector.DefaultImage, "the rate-limit sidecar's image")
	envoyImage := fs.String("envoy-image", injector.DefaultEnvoyImage, "Envoy's image, in envoy mode")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sidecar inject: unexpected argument %q (use -f FILE)\n", fs.Arg(0))
		return exitUsage
	}
	m, err := injector.ParseMode(*mode)
	if err != nil {
		fmt.Fprintf(stderr, "sidecar inject: --mode: %v\n", err)
		return exitUsage
	}
	in := stdin
	name := "stdin"
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			fmt.Fprintf(stderr, "sidecar inject: %v\n", err)
			return exitError
		}
		defer f.Close()
		in, name = f, *file
	}
	src, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintf(stderr, "sidecar inject: reading %s: %v\n", name, err)
		return exitError
	}
	out, res, err := injector.Manifests(src, injector.Options{Image: *image, EnvoyImage: *envoyImage, Mode: m})
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "sidecar inject: %s: warning: %s\n", name, w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sidecar inject: %s: %v\n", name, err)
		return exitError
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "sidecar inject: writing: %v\n", err)
		return exitError
	}
	for _, w := range res.Injected {
		fmt.Fprintf(stderr, "sidecar inject: injected %s\n", w)
	}
	return exitOK
}
