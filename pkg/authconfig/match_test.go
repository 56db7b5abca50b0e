package authconfig

import "testing"

const matchConfig = `policies:
  - name: exact
    match: {hosts: [API.example.com], path_prefix: /v1/, methods: [get, POST]}
    auth: none
  - name: wild
    match: {hosts: ["*.example.com", "[::1]", 10.0.0.1]}
    auth: none
  - name: docs
    match: {path_prefix: /docs/}
    auth: none
  - name: delete
    match: {methods: [DELETE]}
    auth: none
`

func TestMatch(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, matchConfig, nil)
	tests := []struct {
		host, path, method string
		want               string // "" for no policy
	}{
		{"api.example.com", "/v1/users", "GET", "exact"},
		{"Api.Example.COM:8443", "/v1/users", "get", "exact"},
		{"api.example.com.", "/v1/", "Post", "exact"},
		{"api.example.com", "/v1/users", "PUT", "wild"}, // method fails exact; wildcard takes it
		{"api.example.com", "/v2/users", "GET", "wild"},
		{"a.b.example.com", "/", "GET", "wild"}, // more than one label below
		{"example.com", "/", "GET", ""},         // never the apex
		{"badexample.com", "/", "GET", ""},
		{"example.com", "/docs/x", "GET", "docs"},
		{"example.com", "/docs", "GET", ""},
		{"[::1]:8080", "/", "GET", "wild"},
		{"::1", "/", "GET", "wild"},
		{"10.0.0.1:80", "/", "GET", "wild"},
		{"other.org", "/docs/a?x=/v1/", "GET", "docs"},
		{"other.org", "/x?/docs/", "GET", ""}, // the query is not the path
		{"other.org", "/x", "delete", "delete"},
		{"", "", "", ""},
	}
	for _, tt := range tests {
		got := ""
		if p := cfg.Match(tt.host, tt.path, tt.method); p != nil {
			got = p.Name
		}
		if got != tt.want {
			t.Errorf("Match(%q, %q, %q) = %q, want %q", tt.host, tt.path, tt.method, got, tt.want)
		}
	}
	var none *Config
	if none.Match("a", "/", "GET") != nil {
		t.Error("nil Config matched")
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	cfg := mustParse(t, matchConfig, nil)
	allocs := testing.AllocsPerRun(1000, func() {
		cfg.Match("Www.Example.com:443", "/docs/a?q=1", "get")
		cfg.Match("nothing.org", "/none", "PATCH")
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per run", allocs)
	}
}

func BenchmarkMatch(b *testing.B) {
	cfg, err := Parse("auth.yaml", []byte(matchConfig), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cfg.Match("other.org", "/x", "DELETE")
		}
	})
}
