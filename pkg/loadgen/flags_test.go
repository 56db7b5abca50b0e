package loadgen

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	t.Parallel()
	base := []string{"--domain", "api", "--descriptor", "remote_address=10.0.{n}"}
	withBase := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }

	tests := []struct {
		name     string
		args     []string
		want     func(*Options) // edits DefaultOptions into the expected value
		wantJSON bool
		wantErr  string // the flag the error must name, and more
	}{
		{
			name: "defaults",
			args: base,
			want: func(o *Options) {},
		},
		{
			name: "everything",
			args: withBase("--addr", "127.0.0.1:9", "--descriptor", "a=1,b=2", "--keys", "1000",
				"--concurrency", "8", "--connections", "2", "--duration", "3s", "--requests", "500",
				"--hits", "3", "--rate", "2500", "--warmup", "1s", "--timeout", "2s", "--pid", "77",
				"--seed", "9", "--json"),
			want: func(o *Options) {
				o.Addr = "127.0.0.1:9"
				o.Descriptors = append(o.Descriptors, Descriptor{{"a", "1"}, {"b", "2"}})
				o.Keys, o.Concurrency, o.Connections = 1000, 8, 2
				o.Duration, o.Requests = 3*time.Second, 500
				o.Hits, o.Rate, o.Warmup, o.Timeout, o.PID, o.Seed = 3, 2500, time.Second, 2*time.Second, 77, 9
			},
			wantJSON: true,
		},
		{
			name: "requests alone lifts the default duration",
			args: withBase("--requests", "100"),
			want: func(o *Options) { o.Requests, o.Duration = 100, 0 },
		},
		{name: "no domain", args: []string{"--descriptor", "a=b"}, wantErr: "--domain: required"},
		{name: "no descriptor", args: []string{"--domain", "api"}, wantErr: "--descriptor: at least one"},
		{name: "bad descriptor", args: withBase("--descriptor", "oops"), wantErr: `--descriptor "oops"`},
		{name: "keys without placeholder", args: []string{"--domain", "d", "--descriptor", "a=b", "--keys", "5"}, wantErr: "--keys 5: no --descriptor contains {n}"},
		{name: "keys zero", args: withBase("--keys", "0"), wantErr: "--keys 0"},
		{name: "keys too many", args: withBase("--keys", "10000001"), wantErr: "--keys 10000001"},
		{name: "concurrency zero", args: withBase("--concurrency", "0"), wantErr: "--concurrency 0"},
		{name: "connections over concurrency", args: withBase("--concurrency", "2"), wantErr: "--connections 4: more than --concurrency 2"},
		{name: "connections zero", args: withBase("--connections", "0"), wantErr: "--connections 0"},
		{name: "no end", args: withBase("--duration", "0"), wantErr: "--duration and --requests"},
		{name: "negative duration", args: withBase("--duration", "-1s"), wantErr: "--duration -1s"},
		{name: "negative rate", args: withBase("--rate", "-5"), wantErr: "--rate -5"},
		{name: "infinite rate", args: withBase("--rate", "+Inf"), wantErr: "--rate +Inf"},
		{name: "hits too large", args: withBase("--hits", "4294967296"), wantErr: "--hits 4294967296"},
		{name: "zero timeout", args: withBase("--timeout", "0s"), wantErr: "--timeout 0s"},
		{name: "negative warmup", args: withBase("--warmup", "-1s"), wantErr: "--warmup -1s"},
		{name: "negative pid", args: withBase("--pid", "-1"), wantErr: "--pid -1"},
		{name: "empty addr", args: withBase("--addr", ""), wantErr: "--addr"},
		{name: "positional", args: withBase("extra"), wantErr: `unexpected argument "extra"`},
		{name: "unknown flag", args: withBase("--nope"), wantErr: "-nope"},
		{name: "unparsable number", args: withBase("--keys", "many"), wantErr: "-keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, gotJSON, err := ParseArgs(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseArgs(%q) error = %v, want one containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseArgs(%q) error: %v", tc.args, err)
			}
			want := DefaultOptions()
			want.Domain = "api"
			want.Descriptors = []Descriptor{{{"remote_address", "10.0.{n}"}}}
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ParseArgs(%q) =\n %+v\nwant\n %+v", tc.args, got, want)
			}
			if gotJSON != tc.wantJSON {
				t.Errorf("json = %v, want %v", gotJSON, tc.wantJSON)
			}
		})
	}
}

func TestParseArgsHelp(t *testing.T) {
	t.Parallel()
	var usage strings.Builder
	_, _, err := ParseArgs([]string{"-h"}, &usage)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("ParseArgs(-h) error = %v, want flag.ErrHelp", err)
	}
	for _, name := range []string{"-descriptor", "-keys", "-rate", "-pid", "-json"} {
		if !strings.Contains(usage.String(), name) {
			t.Errorf("usage does not mention %s:\n%s", name, usage.String())
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	o := Options{}
	err := o.Validate()
	if err == nil {
		t.Fatal("Validate of zero Options succeeded")
	}
	for _, flagName := range []string{"--addr", "--domain", "--descriptor", "--keys", "--concurrency", "--connections", "--duration", "--timeout"} {
		if !strings.Contains(err.Error(), flagName) {
			t.Errorf("Validate error does not name %s: %v", flagName, err)
		}
	}
}
