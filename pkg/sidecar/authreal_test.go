package sidecar_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"google.golang.org/grpc/codes"

	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

const realAuth = `api_keys:
  files: [keys.yaml]
jwt:
  - issuer: https://id.example.com
    audiences: [api]
    jwks_file: jwks.json
    algorithms: [ES256]
    claims: {tenant: org, tier: plan, user: sub}
failed_auth_limit: {unit: minute, requests_per_unit: 5}
policies:
  - name: api
    match: {path_prefix: /v1/}
    auth: any
    rate_limit:
      domain: %s
      descriptors: [[{key: k, value: "%%tenant%%"}]]
`

func keysFile(keys map[string]string) string {
	var b strings.Builder
	b.WriteString("keys:\n")
	for id, key := range keys {
		fmt.Fprintf(&b, "  - {id: %s, sha256: %s, tenant: acme, tier: pro}\n", id, authconfig.Digest(key))
	}
	return b.String()
}

func checkWith(t *testing.T, r *running, headers map[string]string) *authv3.CheckResponse {
	t.Helper()
	resp, err := authv3.NewAuthorizationClient(r.conn).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.1"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example.com", Path: "/v1/x", Headers: headers}},
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// TestRealAuthConfig: authconfig.Load and jwtauth behind --auth-config:
// an API key and an ES256 JWT are allowed against the limits config's
// domain, a keys file's new key works after a reload, /debug/config shows
// the auth config under "auth" without digests or keys, and a policy
// naming a domain the limits config lacks fails start-up at FILE:LINE.
func TestRealAuthConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	jk, err := jwk.Import(&ec.PublicKey)
	must(t, err)
	must(t, jk.Set(jwk.KeyIDKey, "ec-1"))
	set := jwk.NewSet()
	must(t, set.AddKey(jk))
	jwks, err := json.Marshal(set)
	must(t, err)
	payload, _ := json.Marshal(map[string]any{"iss": "https://id.example.com", "aud": "api", "sub": "alice",
		"org": "initech", "plan": "pro", "exp": time.Now().Add(time.Hour).Unix()})
	hdr := jws.NewHeaders()
	must(t, hdr.Set(jws.KeyIDKey, "ec-1"))
	token, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), ec, jws.WithProtectedHeaders(hdr)))
	must(t, err)

	key1, key2 := "fg_first-key-0123456789abcdefghijklmnop", "fg_second-key-0123456789abcdefghijklmnop"
	writeFile(t, filepath.Join(dir, "limits.yaml"), limitConfig("a", 7))
	writeFile(t, filepath.Join(dir, "keys.yaml"), keysFile(map[string]string{"k-1": key1}))
	writeFile(t, filepath.Join(dir, "jwks.json"), string(jwks))
	auth := filepath.Join(dir, "auth.yaml")

	// An unknown domain: a load error at the policy's domain line.
	writeFile(t, auth, fmt.Sprintf(realAuth, "nope"))
	s, err := sidecar.ParseSettings([]string{"--config=" + filepath.Join(dir, "limits.yaml"), "--auth-config=" + auth,
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	must(t, err)
	err = sidecar.New(s, slog.New(slog.DiscardHandler)).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), auth+":15: policies[0].rate_limit.domain: unknown domain \"nope\"") {
		t.Fatalf("start with an unknown domain: %v, want FILE:LINE naming it", err)
	}

	writeFile(t, auth, fmt.Sprintf(realAuth, "a"))
	r := start(t, "--config="+filepath.Join(dir, "limits.yaml"), "--auth-config="+auth)
	for name, h := range map[string]map[string]string{
		"key": {"x-api-key": key1}, "jwt": {"authorization": "Bearer " + string(token)},
	} {
		resp := checkWith(t, r, h)
		if resp.GetOkResponse() == nil {
			t.Fatalf("%s: %v, want allowed", name, resp)
		}
	}
	if resp := checkWith(t, r, map[string]string{"x-api-key": key2}); codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated {
		t.Fatalf("a key not yet in the keys file: %v", resp)
	}

	code, body := httpGet(t, "http://"+r.main.HTTPAddr()+"/debug/config")
	var dbg struct {
		Path string `json:"path"`
		Auth struct {
			Path   string `json:"path"`
			Config struct {
				APIKeys []struct {
					ID string `json:"id"`
				} `json:"api_keys"`
				Policies []struct {
					Name string `json:"name"`
				} `json:"policies"`
			} `json:"config"`
		} `json:"auth"`
	}
	if err := json.Unmarshal([]byte(body), &dbg); code != 200 || err != nil {
		t.Fatalf("/debug/config: %d %v\n%s", code, err, body)
	}
	if dbg.Path != filepath.Join(dir, "limits.yaml") || dbg.Auth.Path != auth || len(dbg.Auth.Config.APIKeys) != 1 ||
		dbg.Auth.Config.APIKeys[0].ID != "k-1" || len(dbg.Auth.Config.Policies) != 1 {
		t.Errorf("/debug/config: %+v\n%s", dbg, body)
	}
	for _, secret := range []string{key1, authconfig.Digest(key1), string(token)} {
		if strings.Contains(body, secret) || strings.Contains(r.logs.String(), secret) {
			t.Errorf("/debug/config or the log holds a secret %.12s…", secret)
		}
	}

	writeFile(t, filepath.Join(dir, "keys.yaml"), keysFile(map[string]string{"k-1": key1, "k-2": key2}))
	eventually(t, "the new key", func() bool {
		return checkWith(t, r, map[string]string{"x-api-key": key2}).GetOkResponse() != nil
	})
	// The JWT still verifies with the reloaded config's verifier.
	if resp := checkWith(t, r, map[string]string{"authorization": "Bearer " + string(token)}); resp.GetOkResponse() == nil {
		t.Errorf("jwt after the reload: %v", resp)
	}

	// A limits reload that drops the policies' domain is reported.
	writeFile(t, filepath.Join(dir, "limits.yaml"), limitConfig("b", 7))
	eventually(t, "the domain mismatch logged", func() bool {
		return strings.Contains(r.logs.String(), "the limits config lacks domains") && strings.Contains(r.logs.String(), `unknown domain \"a\"`)
	})
}
