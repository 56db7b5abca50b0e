package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

// validate loads a config as serve would and reports each domain, or each
// problem as FILE:LINE: message.
func validate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sidecar validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", sidecar.DefaultConfig, "a YAML file, or a directory of them")
	merge := fs.Bool("merge-domains", false, "files that share a domain merge instead of failing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sidecar validate: unexpected argument %q (use --config PATH)\n", fs.Arg(0))
		return exitUsage
	}
	cfg, err := descriptors.Load(*path, descriptors.Options{MergeDomains: *merge})
	if err != nil {
		var probs descriptors.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintln(stdout, p.Error())
			}
			fmt.Fprintf(stderr, "%s: %d problem(s)\n", *path, len(probs))
		} else {
			fmt.Fprintf(stdout, "%s: %v\n", *path, err)
		}
		return exitError
	}
	for _, d := range cfg.Domains() {
		fmt.Fprintln(stdout, d.Summary())
	}
	return exitOK
}
