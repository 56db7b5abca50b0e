package authsvc_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/floodgate/floodgate/pkg/engine"
)

// identityHeaders are the headers an allowed answer either sets or removes,
// so that a client cannot forge them.
var identityHeaders = []string{"x-floodgate-tenant", "x-floodgate-tier", "x-floodgate-user",
	"x-floodgate-key-id", "x-floodgate-subject", "x-floodgate-auth", "x-floodgate-policy"}

// FuzzCheck sends Check any CheckRequest Envoy could encode: the fuzzed
// bytes are unmarshalled as the gRPC server would and handed to Check
// against the fixture's config (API keys, real JWT verification). A request
// without attributes.request.http is INVALID_ARGUMENT with a reason; any
// other is answered with the RPC itself OK: allowed, with every identity
// header set (overwriting) or removed, or denied with 401, 403 or 429 and
// a problem+json body.
func FuzzCheck(f *testing.F) {
	for _, r := range []request{
		{path: "/docs/a"},
		{path: "/v1/x", headers: key(keyPro)},
		{path: "/keys/x", headers: map[string]string{"authorization": "apikey " + keyGold}},
		{path: "/jwt/x", headers: bearer(tokenGood)},
		{path: "/jwt/x", headers: bearer(tokenES)},
		{path: "/jwt/x", headers: bearer(tokenBad)},
		{path: "/claims/x?q=1", headers: map[string]string{"authorization": "Bearer " + tokenGood, "x-client": "c", "x-floodgate-tenant": "forged"}},
		{host: "eu.API.example.com:8443", path: "/v1/x", headers: key(keyPro)},
		{method: "DELETE", path: "/v1/x", headers: key(keyExpired)},
		{path: "/race", headers: key("nope"), peer: "[2001:db8::1]:443"},
	} {
		b, err := proto.Marshal(r.proto())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	raw := request{path: "/v1/x"}.proto()
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "x-api-key", RawValue: []byte(keyFree)}, {Key: "x-forwarded-for", RawValue: []byte("203.0.113.7, 10.0.0.2")}}}
	if b, err := proto.Marshal(raw); err == nil {
		f.Add(b)
	}
	f.Add([]byte{})
	fx := newFixtureLogging(f, parseConfig(nil, 1, testPolicies), engine.Options{}, slog.LevelError)
	f.Fuzz(func(t *testing.T, data []byte) {
		var req authv3.CheckRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		resp, err := fx.svc.Check(context.Background(), &req)
		if req.GetAttributes().GetRequest().GetHttp() == nil {
			if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() == "" {
				t.Fatalf("request without http: got %v, %v; want INVALID_ARGUMENT with a reason", resp, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("request %v: %v", &req, err)
		}
		switch code := codes.Code(resp.GetStatus().GetCode()); code {
		case codes.OK:
			ok := resp.GetOkResponse()
			if ok == nil {
				t.Fatalf("request %v: OK without ok_response: %v", &req, resp)
			}
			set := map[string]bool{}
			for _, h := range ok.Headers {
				name := strings.ToLower(h.GetHeader().GetKey())
				if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || h.GetAppend().GetValue() {
					t.Fatalf("request %v: header %q is appended, not overwritten", &req, name)
				}
				set[name] = true
			}
			removed := map[string]bool{}
			for _, h := range ok.HeadersToRemove {
				removed[strings.ToLower(h)] = true
			}
			for _, h := range identityHeaders {
				if set[h] == removed[h] {
					t.Fatalf("request %v: %s set %v, removed %v: want exactly one", &req, h, set[h], removed[h])
				}
			}
			if !set["x-floodgate-policy"] || !set["x-floodgate-auth"] {
				t.Fatalf("request %v: allowed without x-floodgate-policy and x-floodgate-auth: %v", &req, ok.Headers)
			}
		case codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted:
			d := resp.GetDeniedResponse()
			if d == nil {
				t.Fatalf("request %v: %v without denied_response", &req, code)
			}
			if s := d.GetStatus().GetCode(); s != 401 && s != 403 && s != 429 {
				t.Fatalf("request %v: denied with HTTP %v", &req, s)
			}
			var body problemBody
			if err := json.Unmarshal([]byte(d.Body), &body); err != nil || body.Status != int(d.GetStatus().GetCode()) || body.Title == "" {
				t.Fatalf("request %v: denied body %q (%v)", &req, d.Body, err)
			}
		default:
			t.Fatalf("request %v: status %v", &req, resp.GetStatus())
		}
	})
}
