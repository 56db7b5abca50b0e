package main

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/pkg/authconfig"
)

// keys runs `sidecar keys new`: a new random API key on the first line of
// stdout, then the keys-file entry that holds its digest.
func keys(args []string, now func() time.Time, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "new" {
		fmt.Fprint(stderr, "usage: sidecar keys new --id ID --tenant T --tier TIER [--user U] [--expires RFC3339]\n")
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			return exitUsage
		}
		fmt.Fprintf(stderr, "sidecar keys: unknown command %q\n", args[0])
		return exitUsage
	}
	fs := flag.NewFlagSet("sidecar keys new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", "", "the key's public id: logged and sent upstream (required)")
	tenant := fs.String("tenant", "", "the tenant the key belongs to (required)")
	tier := fs.String("tier", "", "the key's tier (required)")
	user := fs.String("user", "", "the key's user (optional)")
	expires := fs.String("expires", "", "when the key stops being valid, RFC 3339 (optional)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sidecar keys new: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	for _, f := range []struct{ name, value string }{{"id", *id}, {"tenant", *tenant}, {"tier", *tier}} {
		if f.value == "" {
			fmt.Fprintf(stderr, "sidecar keys new: --%s is required\n", f.name)
			return exitUsage
		}
	}
	for _, f := range []struct{ name, value string }{{"id", *id}, {"tenant", *tenant}, {"tier", *tier}, {"user", *user}} {
		if strings.ContainsFunc(f.value, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			fmt.Fprintf(stderr, "sidecar keys new: --%s must not hold control characters (it is sent in headers)\n", f.name)
			return exitUsage
		}
	}
	if *expires != "" {
		t, err := time.Parse(time.RFC3339, *expires)
		if err != nil {
			fmt.Fprintf(stderr, "sidecar keys new: --expires %q is not an RFC 3339 time such as 2027-06-30T00:00:00Z\n", *expires)
			return exitUsage
		}
		if !t.After(now()) {
			fmt.Fprintf(stderr, "sidecar keys new: --expires %s is already past\n", *expires)
			return exitUsage
		}
	}
	key, err := authconfig.GenerateKey(rand.Reader)
	if err != nil {
		fmt.Fprintf(stderr, "sidecar keys new: %v\n", err)
		return exitError
	}
	type entry struct {
		ID      string `yaml:"id"`
		SHA256  string `yaml:"sha256"`
		Tenant  string `yaml:"tenant"`
		Tier    string `yaml:"tier"`
		User    string `yaml:"user,omitempty"`
		Expires string `yaml:"expires,omitempty"`
	}
	item, err := yaml.Marshal([]entry{{ID: *id, SHA256: authconfig.Digest(key), Tenant: *tenant, Tier: *tier,
		User: *user, Expires: *expires}})
	if err != nil {
		fmt.Fprintf(stderr, "sidecar keys new: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, key)
	// Indented as the items of a keys file's `keys:` list usually are.
	for _, line := range strings.SplitAfter(strings.TrimSuffix(string(item), "\n"), "\n") {
		fmt.Fprintf(stdout, "  %s", line)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stderr, "sidecar keys new: the first line is the key; hand it over now, it is stored nowhere. Append the lines after it under keys: in a keys file.")
	return exitOK
}
