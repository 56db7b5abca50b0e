package loadgen

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// ParseArgs parses the loadgen command line (without the program name)
// into Options and whether to print JSON. Usage and flag-package errors go
// to usage; -h gives flag.ErrHelp. Every other error names its flag.
func ParseArgs(args []string, usage io.Writer) (o Options, jsonOut bool, err error) {
	o = DefaultOptions()
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(usage)
	var (
		descs    stringList
		headers  stringList
		keyFile  string
		hits     uint64
		requests uint64
	)
	fs.StringVar(&o.Addr, "addr", o.Addr, "server `host:port`, or unix:///path for a Unix socket")
	fs.StringVar(&o.Mode, "mode", o.Mode, "`ratelimit` (ShouldRateLimit), check (ext_authz Check, as Envoy sends it) or extproc (an ext_proc Process stream per request, as Envoy's ext_proc filter plays it)")
	fs.StringVar(&o.Domain, "domain", "", "rate-limit domain (required with --mode ratelimit)")
	fs.Var(&descs, "descriptor", "descriptor `k=v[,k=v...]`, repeatable, in request order; {n} in a key or value is replaced by a key index drawn per request")
	fs.IntVar(&o.Keys, "keys", o.Keys, "key cardinality: {n} takes values 0..keys-1 (default with --key-file: its line count)")
	fs.BoolVar(&o.Sequential, "sequential", false, "take key indexes in order (request i gets i mod keys) instead of at random: with --requests <= --keys, each request is sent once")
	fs.StringVar(&o.Method, "method", o.Method, "check, extproc: the HTTP method")
	fs.StringVar(&o.Host, "host", o.Host, "check, extproc: the HTTP host (:authority)")
	fs.StringVar(&o.Path, "path", o.Path, "check, extproc: the HTTP path (with its query)")
	fs.Var(&headers, "header", "check, extproc: a request header `name: value`, repeatable; {n} is the key index, {key} line {n} of --key-file")
	fs.StringVar(&o.CacheLoad, "cache-load", o.CacheLoad, "extproc: `hit` (the key indexes' requests, one key by default: all hits after the first) or miss ({n} is a new number in every request: every request a miss that may be stored)")
	fs.IntVar(&o.BodyBytes, "body-bytes", o.BodyBytes, "extproc: the upstream response body's length, sent when the answer asks for it")
	fs.DurationVar(&o.MaxAge, "max-age", o.MaxAge, "extproc: the upstream response's Cache-Control max-age")
	fs.StringVar(&o.Source, "source", o.Source, "check: the client `IP` address (attributes.source.address); may hold {n} and {key}")
	fs.StringVar(&keyFile, "key-file", "", "check: a `file` whose non-empty lines {key} takes, line {n} for key index n (e.g. one token each)")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "requests in flight")
	fs.IntVar(&o.Connections, "connections", o.Connections, "gRPC client connections, used round robin")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "run length (no request starts after it); with --requests, whichever comes first")
	fs.Uint64Var(&requests, "requests", 0, "stop after this many requests (without --duration: no time limit)")
	fs.Uint64Var(&hits, "hits", 0, "hits_addend of each request (0: unset, the server counts 1)")
	fs.Float64Var(&o.Rate, "rate", 0, "target requests per second (0: as fast as possible)")
	fs.DurationVar(&o.Warmup, "warmup", 0, "unmeasured run before the measurement")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "per-request timeout, and the time allowed to connect")
	fs.IntVar(&o.PID, "pid", 0, "`PID` of the server, to report its CPU µs per decision from /proc/PID/stat")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the key draws (0: random)")
	fs.BoolVar(&jsonOut, "json", false, "print the result as one JSON object")
	if err := fs.Parse(args); err != nil {
		return Options{}, false, err
	}
	if fs.NArg() > 0 {
		return Options{}, false, fmt.Errorf("unexpected argument %q: every setting is a flag", fs.Arg(0))
	}
	durationSet, keysSet := false, false
	fs.Visit(func(f *flag.Flag) {
		durationSet = durationSet || f.Name == "duration"
		keysSet = keysSet || f.Name == "keys"
	})
	o.Requests = requests
	if requests > 0 && !durationSet {
		// --requests alone means "exactly N": the default duration must
		// not cut it short. Each request still has --timeout, so the run
		// ends regardless.
		o.Duration = 0
	}
	if hits > math.MaxUint32 {
		return Options{}, false, fmt.Errorf("--hits %d: at most %d", hits, uint64(math.MaxUint32))
	}
	o.Hits = uint32(hits)
	for _, s := range descs {
		d, err := ParseDescriptor(s)
		if err != nil {
			return Options{}, false, err
		}
		o.Descriptors = append(o.Descriptors, d)
	}
	for _, s := range headers {
		h, err := ParseHeader(s)
		if err != nil {
			return Options{}, false, err
		}
		o.Headers = append(o.Headers, h)
	}
	if keyFile != "" {
		lines, err := readLines(keyFile)
		if err != nil {
			return Options{}, false, err
		}
		o.KeyLines = lines
		if !keysSet {
			o.Keys = len(lines)
		}
	}
	if err := o.Validate(); err != nil {
		return Options{}, false, err
	}
	return o, jsonOut, nil
}

// readLines reads the non-empty lines of a --key-file, without their line
// ends (and a trailing '\r').
func readLines(name string) ([]string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("--key-file: %w", err)
	}
	var lines []string
	for l := range strings.Lines(string(b)) {
		l = strings.TrimRight(l, "\r\n")
		if l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("--key-file %s: no non-empty line", name)
	}
	if len(lines) > MaxKeys {
		return nil, fmt.Errorf("--key-file %s: %d lines, at most %d", name, len(lines), MaxKeys)
	}
	return lines, nil
}
