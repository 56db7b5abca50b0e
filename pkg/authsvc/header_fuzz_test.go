package authsvc

import (
	"net/netip"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// FuzzCredentialHeaders checks the parsers of the headers a credential
// and a client address come in: an Authorization value's scheme, the
// x-forwarded-for hop, the address normalisation and raw header lookup.
func FuzzCredentialHeaders(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  a.b.c ", "ApiKey k", "apikey", "ApiKeyX k", "Bearer\tx",
		"203.0.113.7, 10.0.0.2", " , ,", "::ffff:192.0.2.1", "[2001:db8::1]:443", "192.0.2.1:80", "fe80::1%eth0", ""} {
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, v string, hops int) {
		for _, scheme := range []string{"Bearer", "ApiKey"} {
			cred, ok := cutScheme(v, scheme)
			if ok != (cred != "") {
				t.Fatalf("cutScheme(%q, %s) = %q, %v", v, scheme, cred, ok)
			}
			if ok {
				tv := strings.TrimSpace(v)
				if !strings.EqualFold(tv[:len(scheme)], scheme) || cred != strings.TrimSpace(cred) || !strings.HasSuffix(tv, cred) {
					t.Fatalf("cutScheme(%q, %s) = %q", v, scheme, cred)
				}
				// The credential is found again when written out anew.
				if again, _ := cutScheme(scheme+" "+cred, scheme); again != cred {
					t.Fatalf("cutScheme(%q) = %q, but %q gives %q", v, cred, scheme+" "+cred, again)
				}
			}
		}
		if hops >= 0 && hops < 1<<16 {
			ip := pickForwarded(v, hops)
			if ip != strings.TrimSpace(ip) || strings.Contains(ip, ",") || !strings.Contains(v, ip) {
				t.Fatalf("pickForwarded(%q, %d) = %q", v, hops, ip)
			}
		}
		n := normalizeIP(v)
		if a, err := netip.ParseAddr(n); err == nil {
			if a.Is4In6() {
				t.Fatalf("normalizeIP(%q) = %q: still IPv4-mapped", v, n)
			}
			if normalizeIP(n) != n {
				t.Fatalf("normalizeIP(%q) = %q, which normalises to %q", v, n, normalizeIP(n))
			}
		}
		_ = failedAuthKey(n)
		hs := []*corev3.HeaderValue{{Key: "X-Key", Value: v}, {Key: "x-key", RawValue: []byte(v)}, {Key: "other", Value: "o"}}
		if got, want := rawHeader(hs, "x-key"), v+", "+v; got != want {
			t.Fatalf("rawHeader = %q, want %q", got, want)
		}
	})
}
