package refenv_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/pkg/refenv"
)

// envOf reads NAME=VALUE lines (blank lines and # comments skipped).
func envOf(text string) map[string]string {
	env := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if name, value, ok := strings.Cut(line, "="); ok {
			env[name] = value
		}
	}
	return env
}

// FuzzTranslate checks the reference's environment translation on any
// environment (NAME=VALUE lines): it fails with one line per problem,
// each naming a variable of the table (one set, or one missing beside
// another), or it
// gives --name=value flags that serve's settings parse, names as ignored
// only variables that are set, and gives the same again.
func FuzzTranslate(f *testing.F) {
	if data, err := os.ReadFile("testdata/envoy-gateway.env"); err == nil {
		f.Add(string(data))
	}
	for _, s := range []string{
		"RUNTIME_SUBDIRECTORY=ratelimit",
		"RUNTIME_SUBDIRECTORY=rl\nREDIS_SOCKET_TYPE=tcp\nREDIS_URL=r:6379\nLIMIT_RESPONSE_HEADERS_ENABLED=true\nSHADOW_MODE=true\nREDIS_TLS=true\nREDIS_AUTH=u:p",
		"REDIS_SOCKET_TYPE=tcp\nREDIS_TYPE=sentinel\nREDIS_URL=m,s1:1,s2:2",
		"REDIS_TYPE=cluster\nREDIS_URL=a:1,b:2\nREDIS_POOL_SIZE=x",
		"BACKEND_TYPE=memcache\nUSE_STATSD=maybe\nNEAR_LIMIT_RATIO=2",
		"CONFIG_TYPE=GRPC_XDS_SOTW\nCONFIG_GRPC_XDS_SERVER_URL=x:1\nGRPC_UDS=/tmp/s\nPORT=0\nGRPC_PORT=-1",
		"USE_PROMETHEUS=true\nPROMETHEUS_ADDR=:9090\nLOCAL_CACHE_SIZE_IN_BYTES=1000\nREDIS_PIPELINE_WINDOW=1ms",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		env := envOf(text)
		getenv := func(name string) string { return env[name] }
		tr, err := refenv.Translate(getenv)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				name, _, ok := strings.Cut(line, "=")
				if _, known := refenv.Lookup(name); !ok || !known {
					t.Fatalf("env %q: problem %q names no variable of the table", env, line)
				}
			}
			return
		}
		for _, a := range tr.Args {
			if !strings.HasPrefix(a, "--") || !strings.Contains(a, "=") {
				t.Fatalf("env %q: flag %q", env, a)
			}
		}
		for _, name := range tr.Ignored {
			if env[name] == "" {
				t.Fatalf("env %q: %s named ignored but not set", env, name)
			}
		}
		again, err := refenv.Translate(getenv)
		if err != nil || !slices.Equal(again.Args, tr.Args) || !slices.Equal(again.Ignored, tr.Ignored) {
			t.Fatalf("env %q: translated %v, then %v, %v", env, tr, again, err)
		}
		if _, err := parse(t, tr.Args); err != nil {
			t.Fatalf("env %q: translated to %q, which serve refuses: %v", env, tr.Args, err)
		}
	})
}
