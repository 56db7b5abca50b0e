package authconfig

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/descriptors"
)

// FuzzParse checks that no auth file makes Parse panic or return another
// error than Problems, and that a config that parses can be matched and
// its templates rendered. The seeds are the fixtures; every file the
// config names reads as a small valid keys file or JWKS.
func FuzzParse(f *testing.F) {
	var seeds []string
	filepath.WalkDir("testdata", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && isYAMLName(path) && !strings.Contains(path, "alias_bomb") {
			seeds = append(seeds, path)
		}
		return nil
	})
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(matchConfig))
	keys := "keys:\n  - {id: a, sha256: " + Digest("k") + ", tenant: t, tier: x}\n"
	read := func(name string) ([]byte, error) {
		if strings.HasSuffix(name, ".json") {
			return []byte(`{"keys":[]}`), nil
		}
		return []byte(keys), nil
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, read)
		if err != nil {
			ps, ok := err.(descriptors.Problems)
			if !ok || len(ps) == 0 {
				t.Fatalf("error of type %T: %v", err, err)
			}
			// Every problem names its file and, in the fuzzed one, a
			// line inside it (0: the whole file).
			// YAML breaks lines at \n, \r\n and a lone \r.
			lines := bytes.Count(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\n")) +
				bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n")) + 1
			for _, p := range ps {
				if p.File == "" || p.Msg == "" || p.Line < 0 || (p.File == "fuzz.yaml" && p.Line > lines) {
					t.Fatalf("problem %+v: want a file, a line in it and a message", p)
				}
			}
			return
		}
		_ = cfg.Summary()
		cfg.APIKeys.Keys.Lookup("k", time.Now())
		v := &Vars{Identity: &Identity{Tenant: "t"}, Header: func(string) string { return "h" }}
		for _, p := range cfg.Policies {
			if got := cfg.Match("example.com", p.PathPrefix, "GET"); got == nil && len(p.Hosts) == 0 && len(p.Methods) == 0 {
				t.Fatalf("policy %q matches no request on its own path prefix", p.Name)
			}
			if p.RateLimit != nil {
				for _, d := range p.RateLimit.Descriptors {
					for i := range d {
						d[i].Append(nil, v)
						d[i].Empty(v)
					}
				}
			}
		}
	})
}
