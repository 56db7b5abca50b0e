package authsvc

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/floodgate/floodgate/pkg/engine"
)

// Problem types of the denied answers (RFC 9457 `type`).
const (
	ProblemMissingCredentials = "urn:floodgate:problem:missing-credentials"
	ProblemInvalidCredentials = "urn:floodgate:problem:invalid-credentials"
	ProblemForbidden          = "urn:floodgate:problem:forbidden"
	ProblemNoPolicy           = "urn:floodgate:problem:no-policy"
	ProblemQuotaExceeded      = "urn:floodgate:problem:quota-exceeded"
)

// ProblemContentType is the content-type of every denied answer's body.
const ProblemContentType = "application/problem+json"

// denial is how a result is answered.
type denial struct {
	http    typev3.StatusCode
	code    codes.Code
	problem string
	title   string
}

var denials = [numResults]denial{
	resultMissing:    {typev3.StatusCode_Unauthorized, codes.Unauthenticated, ProblemMissingCredentials, "Missing credentials"},
	resultInvalid:    {typev3.StatusCode_Unauthorized, codes.Unauthenticated, ProblemInvalidCredentials, "Invalid credentials"},
	resultForbidden:  {typev3.StatusCode_Forbidden, codes.PermissionDenied, ProblemForbidden, "Forbidden"},
	resultNoPolicy:   {typev3.StatusCode_Forbidden, codes.PermissionDenied, ProblemNoPolicy, "No policy"},
	resultQuota:      {typev3.StatusCode_TooManyRequests, codes.ResourceExhausted, ProblemQuotaExceeded, "Quota exceeded"},
	resultFailedAuth: {typev3.StatusCode_TooManyRequests, codes.ResourceExhausted, ProblemQuotaExceeded, "Quota exceeded"},
}

// Metadata keys of an allowed answer's dynamic_metadata, which Envoy
// keeps under envoy.filters.http.ext_authz.
const (
	MetaTenant   = "tenant"
	MetaTier     = "tier"
	MetaUser     = "user"
	MetaKeyID    = "key_id"
	MetaSubject  = "subject"
	MetaIssuer   = "issuer"
	MetaClientIP = "client_ip"
	MetaAuth     = "auth"
	MetaPolicy   = "policy"
)

const metaFields = 9

// okBlock holds every message of an allowed answer, so that building one
// costs one allocation (and the metadata's map). The messages are handed
// to gRPC and never reused.
type okBlock struct {
	resp    authv3.CheckResponse
	status  rpcstatus.Status
	oneof   authv3.CheckResponse_OkResponse
	ok      authv3.OkHttpResponse
	opts    [len(identityHeaders)]corev3.HeaderValueOption
	hvs     [len(identityHeaders)]corev3.HeaderValue
	optPtrs [len(identityHeaders)]*corev3.HeaderValueOption
	rOpts   [2]corev3.HeaderValueOption
	rHvs    [2]corev3.HeaderValue
	rPtrs   [2]*corev3.HeaderValueOption
	meta    structpb.Struct
	vals    [metaFields]structpb.Value
	strs    [metaFields]structpb.Value_StringValue
}

// allow answers OK: the identity headers set (overwriting), the others
// removed, the rate-limit headers, and the identity as dynamic metadata.
func (a *answer) allow(h engine.Headers) *authv3.CheckResponse {
	b := &okBlock{}
	id := &a.sc.id
	values := [len(identityHeaders)]string{id.Tenant, id.Tier, id.User, id.KeyID, id.Subject, id.Auth, a.ps.name}
	set := 0
	for i, v := range values {
		if v == "" {
			continue
		}
		set |= 1 << i
		n := len(b.ok.Headers)
		b.hvs[n] = corev3.HeaderValue{Key: identityHeaders[i], Value: v}
		b.opts[n] = corev3.HeaderValueOption{Header: &b.hvs[n], AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
		b.optPtrs[n] = &b.opts[n]
		b.ok.Headers = b.optPtrs[:n+1]
	}
	// Shared by every answer of this config: gRPC only reads it.
	b.ok.HeadersToRemove = a.st.removal[set][a.strip]
	addResponse := func(k, v string) {
		if v == "" {
			return
		}
		n := len(b.ok.ResponseHeadersToAdd)
		b.rHvs[n] = corev3.HeaderValue{Key: k, Value: v}
		b.rOpts[n] = corev3.HeaderValueOption{Header: &b.rHvs[n], AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
		b.rPtrs[n] = &b.rOpts[n]
		b.ok.ResponseHeadersToAdd = b.rPtrs[:n+1]
	}
	addResponse(engine.HeaderPolicy, h.Policy)
	addResponse(engine.HeaderRateLimit, h.RateLimit)

	b.meta.Fields = make(map[string]*structpb.Value, metaFields)
	n := 0
	for _, f := range [metaFields]struct{ k, v string }{
		{MetaTenant, id.Tenant}, {MetaTier, id.Tier}, {MetaUser, id.User}, {MetaKeyID, id.KeyID},
		{MetaSubject, id.Subject}, {MetaIssuer, id.Issuer}, {MetaClientIP, id.ClientIP},
		{MetaAuth, id.Auth}, {MetaPolicy, a.ps.name},
	} {
		if f.v == "" {
			continue
		}
		b.strs[n].StringValue = f.v
		b.vals[n].Kind = &b.strs[n]
		b.meta.Fields[f.k] = &b.vals[n]
		n++
	}
	b.oneof.OkResponse = &b.ok
	b.resp.Status = &b.status // code 0: OK
	b.resp.HttpResponse = &b.oneof
	b.resp.DynamicMetadata = &b.meta
	a.done(resultOK)
	return &b.resp
}

// problem is an RFC 9457 body.
type problem struct {
	Type     string   `json:"type"`
	Title    string   `json:"title"`
	Status   int      `json:"status"`
	Detail   string   `json:"detail"`
	Violated []string `json:"violated-policies,omitempty"`
}

// deny answers 401 or 403 for r.
func (a *answer) deny(r result, detail string, tokenRejected bool) *authv3.CheckResponse {
	var hdrs []*corev3.HeaderValueOption
	if d := denials[r]; d.http == typev3.StatusCode_Unauthorized {
		challenge := a.ps.challenge
		if tokenRejected {
			challenge = a.ps.challengeToken
		}
		hdrs = append(hdrs, header("www-authenticate", challenge))
	}
	return a.denied(r, detail, nil, hdrs)
}

// quotaExceeded answers 429 for the policy's limits.
func (a *answer) quotaExceeded(h engine.Headers) *authv3.CheckResponse {
	names := violated(&a.sc.view)
	return a.denied(resultQuota, "over the limits of policy "+a.ps.name, names, []*corev3.HeaderValueOption{
		header(engine.HeaderRetryAfter, h.RetryAfter),
		header(engine.HeaderPolicy, h.Policy),
		header(engine.HeaderRateLimit, h.RateLimit),
	})
}

// failedAuthLimited answers 429 for failed_auth_limit, st being the
// failed-auth read's status.
func (a *answer) failedAuthLimited(st *engine.Status) *authv3.CheckResponse {
	retry := int64(max(st.ResetAfter, time.Second) / time.Second)
	quoted := strconv.Quote(FailedAuthName)
	return a.denied(resultFailedAuth, "too many rejected credentials from this address", []string{FailedAuthName}, []*corev3.HeaderValueOption{
		header(engine.HeaderRetryAfter, strconv.FormatInt(retry, 10)),
		header(engine.HeaderPolicy, a.st.failedPolicy),
		header(engine.HeaderRateLimit, quoted+";r=0;t="+strconv.FormatInt(retry, 10)),
	})
}

func (a *answer) denied(r result, detail string, violated []string, hdrs []*corev3.HeaderValueOption) *authv3.CheckResponse {
	d := denials[r]
	body, _ := json.Marshal(problem{Type: d.problem, Title: d.title, Status: int(d.http), Detail: detail, Violated: violated})
	hdrs = append(hdrs, header("content-type", ProblemContentType))
	a.done(r)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(d.code), Message: d.title},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: d.http},
			Headers: hdrs,
			Body:    string(body),
		}},
	}
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// done counts the answer and logs it at debug level: public fields only,
// never a credential.
func (a *answer) done(r result) {
	a.ps.counts[r].Inc()
	if !a.s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	id := &a.sc.id
	a.s.log.Debug("auth decision", "policy", a.ps.name, "result", resultNames[r], "auth", id.Auth,
		"key_id", id.KeyID, "issuer", id.Issuer, "subject", id.Subject, "tenant", id.Tenant,
		"tier", id.Tier, "client_ip", id.ClientIP, "host", a.sc.vars.Host, "path", a.sc.vars.Path)
}

// claimString renders a JWT claim for a template: strings as they are,
// numbers and booleans in JSON's spelling, anything else "".
func claimString(v any) string {
	switch c := v.(type) {
	case string:
		return c
	case float64:
		return strconv.FormatFloat(c, 'f', -1, 64)
	case json.Number:
		return c.String()
	case bool:
		return strconv.FormatBool(c)
	case int:
		return strconv.Itoa(c)
	case int64:
		return strconv.FormatInt(c, 10)
	}
	return ""
}

func quoteDetail(s string) string { return strconv.Quote(s) }
