package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/cacheconfig"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

// validate loads a config as serve would and reports each domain, or each
// problem as FILE:LINE: message. With --auth-config it checks the auth
// config too (alone, unless --config is also given: then both, and that
// every policy's rate_limit.domain is a domain of the limits). With
// --cache-config it checks the cache config too; as with --auth-config,
// the limits are then read only when --config is given as well. Every
// config named is checked, and the exit status is 1 when any has a
// problem.
func validate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sidecar validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", sidecar.DefaultConfig, "a YAML file, or a directory of them")
	merge := fs.Bool("merge-domains", false, "files that share a domain merge instead of failing")
	authPath := fs.String("auth-config", "", "an auth config file or directory (the ext_authz door's); checked alone unless --config is also given")
	cachePath := fs.String("cache-config", "", "a cache config file (the ext_proc response cache's); checked alone unless --config is also given")
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
	if (*authPath == "" && *cachePath == "") || limitsGiven {
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
	if *authPath != "" && !validateAuth(*authPath, limits, stdout, stderr) {
		code = exitError
	}
	if *cachePath != "" {
		cache, err := cacheconfig.Load(*cachePath)
		if err != nil {
			report(*cachePath, err, stdout, stderr)
			code = exitError
		} else {
			fmt.Fprintln(stdout, cache.Summary())
		}
	}
	return code
}

// validateAuth checks an auth config, and its domains against limits when
// they were loaded; false when it has problems.
func validateAuth(path string, limits *descriptors.Config, stdout, stderr io.Writer) bool {
	auth, err := authconfig.Load(path)
	if err != nil {
		report(path, err, stdout, stderr)
		return false
	}
	if limits != nil {
		if err := auth.CheckDomains(limits); err != nil {
			report(path, err, stdout, stderr)
			return false
		}
	}
	fmt.Fprintln(stdout, auth.Summary())
	return true
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
