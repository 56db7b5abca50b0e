package sidecar_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/shareddata"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

// rlconfigLine is one line of the reference's /rlconfig format.
var rlconfigLine = regexp.MustCompile(`(?s)^(.*): unit=(SECOND|MINUTE|HOUR|DAY|WEEK|MONTH|YEAR|UNKNOWN) requests_per_unit=(\d+), shadow_mode: (true|false), quota_mode: (true|false)$`)

// FuzzRLConfig checks the rendering of a config in the reference's
// /rlconfig format on any config that loads: one line per rule, in the
// reference's shape, each starting with its domain and path (as long as no
// key or value holds a line break, which the format has no escape for),
// with the rule's unit, limit and modes. The seeds are the limits
// loader's fixtures and, with ../shared, the reference's config files.
func FuzzRLConfig(f *testing.F) {
	dirs := []string{filepath.Join("..", "descriptors", "testdata", "valid")}
	if dir, ok := shareddata.Lookup(f, "envoy-ratelimit"); ok {
		dirs = append(dirs, dir)
	}
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") && !strings.Contains(path, "alias_bomb") {
				if data, err := os.ReadFile(path); err == nil {
					f.Add(data)
				}
			}
			return nil
		})
	}
	f.Add([]byte("domain: d\ndescriptors:\n  - {key: k, value: \"a:b, c\", rate_limit: {unit: Week, requests_per_unit: 3}, shadow_mode: true}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := descriptors.Parse("fuzz.yaml", data, descriptors.Options{})
		if err != nil {
			return
		}
		out := sidecar.RLConfig(cfg)
		if out != "" && !strings.HasSuffix(out, "\n") {
			t.Fatalf("output %q does not end with a line break", out)
		}
		var want []string
		breaks := false
		for _, d := range cfg.Domains() {
			for _, r := range d.Rules() {
				name := d.Name
				for _, p := range r.Path {
					name += "." + p.Key
					if p.Value != "" {
						name += "_" + p.Value
					}
				}
				breaks = breaks || strings.Contains(name, "\n")
				want = append(want, name)
			}
		}
		if breaks {
			return
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if out == "" {
			lines = nil
		}
		if len(lines) != len(want) {
			t.Fatalf("%d rules, %d lines:\n%s", len(want), len(lines), out)
		}
		i := 0
		for _, d := range cfg.Domains() {
			for _, r := range d.Rules() {
				m := rlconfigLine.FindStringSubmatch(lines[i])
				if m == nil || m[1] != want[i] {
					t.Fatalf("line %q: want the reference's shape, for %q", lines[i], want[i])
				}
				unit := strings.ToUpper(r.UnitName)
				if r.Unlimited {
					unit = "UNKNOWN"
				}
				if m[2] != unit || (m[4] == "true") != r.Shadow || (m[5] == "true") != r.QuotaMode {
					t.Fatalf("line %q: rule %+v", lines[i], r)
				}
				i++
			}
		}
	})
}
