package sidecar

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
)

// TestAdminOnlyPeers: without a token only loopback peers reach an admin
// endpoint; with one, only the token does, loopback or not.
func TestAdminOnlyPeers(t *testing.T) {
	reached := func(m *Main, remote, auth string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/cache/purge", nil)
		req.RemoteAddr = remote
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		m.adminOnly(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }).ServeHTTP(rec, req)
		return rec.Code
	}
	open := &Main{}
	for remote, want := range map[string]int{
		"127.0.0.1:5000": http.StatusTeapot, "[::1]:5000": http.StatusTeapot, "[::ffff:127.0.0.1]:5000": http.StatusTeapot,
		"10.0.0.7:5000": http.StatusForbidden, "[2001:db8::1]:5000": http.StatusForbidden, "garbage": http.StatusForbidden,
	} {
		if got := reached(open, remote, ""); got != want {
			t.Errorf("no token, peer %s: %d, want %d", remote, got, want)
		}
	}
	tok, err := readAdminToken(writeTemp(t, "tok\n"))
	if err != nil {
		t.Fatal(err)
	}
	guarded := &Main{adminToken: tok}
	for _, c := range []struct {
		remote, auth string
		want         int
	}{
		{"10.0.0.7:5000", "Bearer tok", http.StatusTeapot},
		{"127.0.0.1:5000", "", http.StatusUnauthorized},
		{"127.0.0.1:5000", "Bearer tok2", http.StatusUnauthorized},
		{"127.0.0.1:5000", "Basic tok", http.StatusUnauthorized},
		{"127.0.0.1:5000", "Bearer ", http.StatusUnauthorized},
	} {
		if got := reached(guarded, c.remote, c.auth); got != c.want {
			t.Errorf("token, peer %s, Authorization %q: %d, want %d", c.remote, c.auth, got, c.want)
		}
	}
	if _, err := readAdminToken(writeTemp(t, " \n")); err == nil {
		t.Error("an empty token file was accepted")
	}
}

func writeTemp(t *testing.T, body string) string {
	t.Helper()
	f := t.TempDir() + "/token"
	if err := writeFileMode(f, body); err != nil {
		t.Fatal(err)
	}
	return f
}

func writeFileMode(path, body string) error { return os.WriteFile(path, []byte(body), 0o600) }
