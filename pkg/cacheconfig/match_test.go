package cacheconfig

import "testing"

const matchConfig = `rules:
  - name: users
    match: {hosts: [api.example.com, API2.example.com], path_prefix: /v1/users/}
    scope: user
  - name: api-any-host
    match: {path_prefix: /v1/}
  - name: docs
    match: {hosts: [docs.example.com]}
`

func TestMatch(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("cache.yaml", []byte(matchConfig))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ host, path, want string }{
		{"api.example.com", "/v1/users/7", "users"},
		{"api2.example.com", "/v1/users/7", "users"},
		{"API.example.com:8443", "/v1/users/7", "users"},
		{"api.example.com.", "/v1/users/7?x=1", "users"},
		{"api.example.com", "/v1/users", "api-any-host"},
		{"other.example.com", "/v1/users/7", "api-any-host"},
		{"docs.example.com", "/anything", "docs"},
		{"docs.example.com", "/v1/x", "api-any-host"},
		{"api.example.com", "/v2/", ""},
		{"", "/", ""},
		{"docs.example.com", "", ""},
	}
	for _, tt := range tests {
		got := ""
		if r := cfg.Match(tt.host, tt.path); r != nil {
			got = r.Name
		}
		if got != tt.want {
			t.Errorf("Match(%q, %q) = %q, want %q", tt.host, tt.path, got, tt.want)
		}
	}
}

// Not parallel: AllocsPerRun refuses to run beside parallel tests.
func TestMatchAllocs(t *testing.T) {
	cfg, err := Parse("cache.yaml", []byte(matchConfig))
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { cfg.Match("api.example.com:443", "/v1/users/7") }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}

func TestHostOnly(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"api.example.com":      "api.example.com",
		"API.Example.com:8443": "api.example.com",
		"api.example.com.":     "api.example.com",
		"[::1]:80":             "::1",
		"[::1]":                "::1",
		"::1":                  "::1",
		"":                     "",
	} {
		if got := HostOnly(in); got != want {
			t.Errorf("HostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	cfg, err := Parse("cache.yaml", []byte(matchConfig))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cfg.Match("docs.example.com", "/guide/intro")
		}
	})
}
