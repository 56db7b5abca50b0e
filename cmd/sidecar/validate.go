package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

// validate loads a config as serve would and reports each domain, or each
// problem as FILE:LINE: message. With --auth-config it checks the auth
// config too (alone, unless --config is also given: then both, and that
// every policy's rate_limit.domain is a domain of the limits).
func validate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sidecar validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", sidecar.DefaultConfig, "a YAML file, or a directory of them")
	merge := fs.Bool("merge-domains", false, "files that share a domain merge instead of failing")
	authPath := fs.String("auth-config", "", "an auth config file or directory (the ext_authz door's); checked alone unless --config is also given")
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
	limitsGiven := false
	fs.Visit(func(f *flag.Flag) { limitsGiven = limitsGiven || f.Name == "config" || f.Name == "merge-domains" })
	code := exitOK
	var limits *descriptors.Config
	if *authPath == "" || limitsGiven {
		cfg, err := descriptors.Load(*path, descriptors.Options{MergeDomains: *merge})
		if err != nil {
			report(*path, err, stdout, stderr)
			code = exitError
		} else {
			for _, d := range cfg.Domains() {
				fmt.Fprintln(stdout, d.Summary())
			}
			limits = cfg
		}
	}
	if *authPath == "" {
		return code
	}
	auth, err := authconfig.Load(*authPath)
	if err != nil {
		report(*authPath, err, stdout, stderr)
		return exitError
	}
	if limits != nil {
		if err := auth.CheckDomains(limits); err != nil {
			report(*authPath, err, stdout, stderr)
			return exitError
		}
	}
	fmt.Fprintln(stdout, auth.Summary())
	return code
}

// report prints a load error: each problem as a FILE:LINE: message line on
// stdout, and their count on stderr.
func report(path string, err error, stdout, stderr io.Writer) {
	var probs descriptors.Problems
	if errors.As(err, &probs) {
		for _, p := range probs {
			fmt.Fprintln(stdout, p.Error())
		}
		fmt.Fprintf(stderr, "%s: %d problem(s)\n", path, len(probs))
		return
	}
	fmt.Fprintf(stdout, "%s: %v\n", path, err)
}
