package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// descriptorList is the repeatable --descriptor flag.
type descriptorList []*rlv3.RateLimitDescriptor

func (l *descriptorList) String() string { return fmt.Sprint(len(*l)) }

func (l *descriptorList) Set(s string) error {
	d, err := parseDescriptor(s)
	if err != nil {
		return err
	}
	*l = append(*l, d)
	return nil
}

// parseDescriptor reads k=v[,k=v...]; a value may itself hold '='.
func parseDescriptor(s string) (*rlv3.RateLimitDescriptor, error) {
	d := &rlv3.RateLimitDescriptor{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want key=value[,key=value...]", s)
		}
		d.Entries = append(d.Entries, &rlv3.RateLimitDescriptor_Entry{Key: k, Value: v})
	}
	return d, nil
}

// checkResult is check's --json output.
type checkResult struct {
	Overall     string            `json:"overall"`
	Descriptors []checkDescriptor `json:"descriptors"`
	Headers     map[string]string `json:"headers,omitempty"`
}

type checkDescriptor struct {
	Descriptor   string  `json:"descriptor"`
	Code         string  `json:"code"`
	Limit        *uint32 `json:"limit,omitempty"`
	Unit         string  `json:"unit,omitempty"`
	Name         string  `json:"name,omitempty"`
	Remaining    uint32  `json:"remaining"`
	ResetSeconds float64 `json:"reset_seconds"`
}

// check asks a running server once and prints its decision.
func check(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sidecar check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8081", "the server's gRPC address")
	domain := fs.String("domain", "", "the domain to ask about (required)")
	var ds descriptorList
	fs.Var(&ds, "descriptor", "a descriptor as key=value[,key=value...]; repeat for several")
	hits := fs.Uint("hits", 0, "hits_addend of the request (0 counts as 1)")
	asJSON := fs.Bool("json", false, "print the decision as JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitError
	}
	if *domain == "" || len(ds) == 0 {
		fmt.Fprintln(stderr, "sidecar check: --domain and at least one --descriptor are required")
		return exitError
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "sidecar check: --addr %s: %v\n", *addr, err)
		return exitError
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
		Domain: *domain, Descriptors: ds, HitsAddend: uint32(*hits),
	})
	if err != nil {
		fmt.Fprintf(stderr, "sidecar check: %v\n", err)
		return exitError
	}
	res := checkResult{Overall: resp.OverallCode.String()}
	for i, st := range resp.Statuses {
		cd := checkDescriptor{Code: st.Code.String(), Remaining: st.LimitRemaining}
		if i < len(ds) {
			cd.Descriptor = formatDescriptor(ds[i])
		}
		if l := st.CurrentLimit; l != nil {
			rpu := l.RequestsPerUnit
			cd.Limit, cd.Unit, cd.Name = &rpu, strings.ToLower(l.Unit.String()), l.Name
		}
		if d := st.DurationUntilReset; d != nil {
			cd.ResetSeconds = d.AsDuration().Seconds()
		}
		res.Descriptors = append(res.Descriptors, cd)
	}
	for _, h := range resp.ResponseHeadersToAdd {
		if res.Headers == nil {
			res.Headers = map[string]string{}
		}
		res.Headers[h.Key] = h.Value
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	} else {
		printCheck(stdout, res)
	}
	if resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT {
		return exitOverLimit
	}
	return exitOK
}

func formatDescriptor(d *rlv3.RateLimitDescriptor) string {
	parts := make([]string, len(d.Entries))
	for i, e := range d.Entries {
		parts[i] = e.Key + "=" + e.Value
	}
	return strings.Join(parts, ",")
}

func printCheck(w io.Writer, r checkResult) {
	fmt.Fprintf(w, "overall: %s\n", r.Overall)
	for _, d := range r.Descriptors {
		if d.Limit == nil {
			fmt.Fprintf(w, "  %s: %s (no limit)\n", d.Descriptor, d.Code)
			continue
		}
		name := ""
		if d.Name != "" {
			name = " name=" + d.Name
		}
		fmt.Fprintf(w, "  %s: %s limit=%d/%s%s remaining=%d reset=%gs\n",
			d.Descriptor, d.Code, *d.Limit, d.Unit, name, d.Remaining, d.ResetSeconds)
	}
	for _, k := range []string{"RateLimit-Policy", "RateLimit", "Retry-After"} {
		if v, ok := r.Headers[k]; ok {
			fmt.Fprintf(w, "  %s: %s\n", k, v)
		}
	}
}
