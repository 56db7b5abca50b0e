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

	"github.com/floodgate/floodgate/pkg/authconfig"
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

// okStatus is every allowed answer's status, shared: gRPC only reads it.
var okStatus = &rpcstatus.Status{Code: int32(codes.OK)}

// identityParts are the parts of an allowed answer that follow from the
// identity and the policy alone: the identity headers and the metadata
// values but the client's address. An API key's are built once per
// config and shared by its answers (gRPC only reads them), so an answer
// allocates only what differs per request.
type identityParts struct {
	set     int // a bit per identityHeaders entry set
	headers []*corev3.HeaderValueOption
	meta    [metaFields - 1]metaField
	nmeta   int
}

type metaField struct {
	key string
	val *structpb.Value
}

// partsBlock is an identityParts with its messages, in one allocation.
type partsBlock struct {
	identityParts
	opts    [len(identityHeaders)]corev3.HeaderValueOption
	hvs     [len(identityHeaders)]corev3.HeaderValue
	optPtrs [len(identityHeaders)]*corev3.HeaderValueOption
	vals    [metaFields - 1]structpb.Value
	strs    [metaFields - 1]structpb.Value_StringValue
}

func newIdentityParts(id *authconfig.Identity, policy string) *identityParts {
	b := &partsBlock{}
	values := [len(identityHeaders)]string{id.Tenant, id.Tier, id.User, id.KeyID, id.Subject, id.Auth, policy}
	for i, v := range values {
		if v == "" {
			continue
		}
		b.set |= 1 << i
		n := len(b.headers)
		b.hvs[n] = corev3.HeaderValue{Key: identityHeaders[i], Value: v}
		b.opts[n] = corev3.HeaderValueOption{Header: &b.hvs[n], AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
		b.optPtrs[n] = &b.opts[n]
		b.headers = b.optPtrs[:n+1]
	}
	for _, f := range [...]struct{ k, v string }{
		{MetaTenant, id.Tenant}, {MetaTier, id.Tier}, {MetaUser, id.User}, {MetaKeyID, id.KeyID},
		{MetaSubject, id.Subject}, {MetaIssuer, id.Issuer}, {MetaAuth, id.Auth}, {MetaPolicy, policy},
	} {
		if f.v == "" {
			continue
		}
		n := b.nmeta
		b.strs[n].StringValue = f.v
		b.vals[n].Kind = &b.strs[n]
		b.meta[n] = metaField{f.k, &b.vals[n]}
		b.nmeta++
	}
	return &b.identityParts
}

// okBlock holds the messages of an allowed answer that differ per
// request, so that building one costs one allocation (and the metadata's
// map). The messages are handed to gRPC and never reused.
type okBlock struct {
	resp  authv3.CheckResponse
	oneof authv3.CheckResponse_OkResponse
	ok    authv3.OkHttpResponse
	rOpt  corev3.HeaderValueOption // RateLimit
	rHv   corev3.HeaderValue
	rPtrs [2]*corev3.HeaderValueOption
	meta  structpb.Struct
	ip    structpb.Value
	ipStr structpb.Value_StringValue
}

// allow answers OK: the identity headers set (overwriting), the others
// removed, the rate-limit headers, and the identity as dynamic metadata.
func (a *answer) allow(h engine.Headers) *authv3.CheckResponse {
	b := &okBlock{}
	id := &a.sc.id
	parts := a.parts()
	b.ok.Headers = parts.headers
	// Shared by every answer of this config: gRPC only reads it.
	b.ok.HeadersToRemove = a.st.removal[parts.set][a.strip]
	n := 0
	if h.Policy != "" {
		b.rPtrs[n] = a.ps.policyHeader(h.Policy)
		n++
	}
	if h.RateLimit != "" {
		b.rHv = corev3.HeaderValue{Key: engine.HeaderRateLimit, Value: h.RateLimit}
		b.rOpt = corev3.HeaderValueOption{Header: &b.rHv, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
		b.rPtrs[n] = &b.rOpt
		n++
	}
	if n > 0 {
		b.ok.ResponseHeadersToAdd = b.rPtrs[:n]
	}
	b.meta.Fields = make(map[string]*structpb.Value, parts.nmeta+1)
	for _, f := range parts.meta[:parts.nmeta] {
		b.meta.Fields[f.key] = f.val
	}
	if id.ClientIP != "" {
		b.ipStr.StringValue = id.ClientIP
		b.ip.Kind = &b.ipStr
		b.meta.Fields[MetaClientIP] = &b.ip
	}
	b.oneof.OkResponse = &b.ok
	b.resp.Status = okStatus
	b.resp.HttpResponse = &b.oneof
	b.resp.DynamicMetadata = &b.meta
	a.done(resultOK)
	return &b.resp
}

// policyHeader returns the RateLimit-Policy header option for value,
// shared while the policy's answers keep the same value (the same limits
// applied, as they mostly are): gRPC only reads it.
func (ps *policyState) policyHeader(value string) *corev3.HeaderValueOption {
	if o := ps.policyHdr.Load(); o != nil && o.Header.Value == value {
		return o
	}
	o := header(engine.HeaderPolicy, value)
	ps.policyHdr.Store(o)
	return o
}

// parts returns the identity's parts: an API key's and auth: none's from
// the policy's cache, a token's built for this answer.
func (a *answer) parts() *identityParts {
	switch {
	case a.sc.id.Auth == "none":
		return a.ps.noneParts
	case a.key != nil:
		if p, ok := a.ps.keyParts.Load(a.key); ok {
			return p.(*identityParts)
		}
		p, _ := a.ps.keyParts.LoadOrStore(a.key, newIdentityParts(&a.sc.id, a.ps.name))
		return p.(*identityParts)
	}
	return newIdentityParts(&a.sc.id, a.ps.name)
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

func quoteDetail(s string) string { return strconv.Quote(s) }
