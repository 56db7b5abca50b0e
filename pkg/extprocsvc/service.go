// Package extprocsvc is the response cache's door for Envoy's ext_proc
// filter (envoy.service.ext_proc.v3.ExternalProcessor/Process): it turns
// each stream's messages into the cache engine's calls (pkg/respcache) and
// its answers back into ext_proc responses, exactly as Envoy expects them:
// header values in raw_value, a mode_override only on a headers answer,
// hits as an immediate_response.
//
// A stream is one HTTP request. Its first message must be its request
// headers (with the ext_authz metadata in metadata_context); a stream for
// a request no rule covers is told to skip its response headers.
package extprocsvc

import (
	"errors"
	"io"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/floodgate/floodgate/pkg/grpcstatus"
	"github.com/floodgate/floodgate/pkg/respcache"
)

// AuthzNamespace is where Envoy keeps the ext_authz filter's dynamic
// metadata, and the namespace the ext_proc filter must forward.
const AuthzNamespace = "envoy.filters.http.ext_authz"

// Service serves Process with a cache engine.
type Service struct {
	extprocv3.UnimplementedExternalProcessorServer
	engine *respcache.Engine
}

var _ extprocv3.ExternalProcessorServer = (*Service)(nil)

// New returns a Service over eng.
func New(eng *respcache.Engine) (*Service, error) {
	if eng == nil {
		return nil, errors.New("extprocsvc: no engine")
	}
	return &Service{engine: eng}, nil
}

// Process follows one HTTP request's stream until Envoy ends it. A
// malformed stream ends with INVALID_ARGUMENT and the reason.
func (s *Service) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	err := s.process(stream)
	if _, ok := status.FromError(err); ok {
		return err // nil, or the stream's own status (a cancelled stream)
	}
	return grpcstatus.FromError(err)
}

func (s *Service) process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	ctx := stream.Context()
	var (
		tx    *respcache.Tx
		begun bool
	)
	defer func() { tx.Close() }()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return err
		}
		var resp *extprocv3.ProcessingResponse
		switch m := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			if begun {
				return grpcstatus.Invalidf("request_headers: sent twice on one stream")
			}
			begun = true
			r, err := request(m.RequestHeaders, req.GetMetadataContext())
			if err != nil {
				return err
			}
			var reply *respcache.Reply
			tx, reply = s.engine.Begin(ctx, r)
			switch {
			case reply != nil:
				resp = immediate(reply)
			case tx == nil:
				// No rule: nothing of the response concerns the cache.
				resp = &extprocv3.ProcessingResponse{
					Response:     &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
					ModeOverride: &procmodev3.ProcessingMode{ResponseHeaderMode: procmodev3.ProcessingMode_SKIP},
				}
			default:
				resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
			}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			h := m.ResponseHeaders
			var a respcache.Answer
			if tx != nil {
				code, fields, err := responseHeaders(h.GetHeaders())
				if err != nil {
					return err
				}
				a = tx.Response(ctx, code, fields, h.GetEndOfStream())
			}
			resp = &extprocv3.ProcessingResponse{
				Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: common(a.SetHeader)}},
			}
			if mode := bodyMode(a.Body); mode != procmodev3.ProcessingMode_NONE {
				resp.ModeOverride = &procmodev3.ProcessingMode{ResponseBodyMode: mode}
			}
		case *extprocv3.ProcessingRequest_ResponseBody:
			var a respcache.Answer
			if tx != nil {
				a = tx.Body(ctx, m.ResponseBody.GetBody(), m.ResponseBody.GetEndOfStream())
			}
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: common(a.SetHeader)}}}
		case *extprocv3.ProcessingRequest_RequestBody:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
		default:
			return grpcstatus.Invalidf("ProcessingRequest: no request, response, body or trailers message")
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		if _, ok := resp.Response.(*extprocv3.ProcessingResponse_ImmediateResponse); ok {
			// Envoy sends nothing more for this request.
			return nil
		}
	}
}

// request converts request headers and the forwarded metadata.
func request(h *extprocv3.HttpHeaders, md *corev3.Metadata) (*respcache.Request, error) {
	r := &respcache.Request{}
	fields := h.GetHeaders().GetHeaders()
	r.Header = make([]respcache.Header, 0, len(fields))
	for _, f := range fields {
		name, value := f.GetKey(), headerValue(f)
		if name == "" {
			return nil, grpcstatus.Invalidf("request_headers: a header with an empty key")
		}
		if name[0] == ':' {
			switch name {
			case ":method":
				r.Method = value
			case ":authority":
				r.Authority = value
			case ":path":
				r.Target = value
			}
			continue
		}
		r.Header = append(r.Header, respcache.Header{Name: lower(name), Value: value})
	}
	if r.Method == "" || r.Target == "" {
		return nil, grpcstatus.Invalidf("request_headers: :method and :path are required")
	}
	if r.Authority == "" {
		r.Authority = firstOf(r.Header, "host")
	}
	if st := md.GetFilterMetadata()[AuthzNamespace]; st != nil {
		r.Identity = identity(st)
	}
	return r, nil
}

// identity reads the identity fields Check sets as top-level strings.
func identity(st *structpb.Struct) *respcache.Identity {
	f := st.GetFields()
	str := func(name string) string { return f[name].GetStringValue() }
	return &respcache.Identity{
		Auth:    str("auth"),
		Issuer:  str("issuer"),
		Tenant:  str("tenant"),
		User:    str("user"),
		KeyID:   str("key_id"),
		Subject: str("subject"),
	}
}

// responseHeaders converts response headers: the status and the rest.
func responseHeaders(hm *corev3.HeaderMap) (int, []respcache.Header, error) {
	code := 0
	fields := hm.GetHeaders()
	out := make([]respcache.Header, 0, len(fields))
	for _, f := range fields {
		name, value := f.GetKey(), headerValue(f)
		if name == ":status" {
			n, err := strconv.Atoi(value)
			if err != nil || n < 100 || n > 999 {
				return 0, nil, grpcstatus.Invalidf("response_headers: :status %q is not a status code", value)
			}
			code = n
			continue
		}
		if name == "" || name[0] == ':' {
			continue
		}
		out = append(out, respcache.Header{Name: lower(name), Value: value})
	}
	if code == 0 {
		return 0, nil, grpcstatus.Invalidf("response_headers: no :status")
	}
	return code, out, nil
}

// headerValue is a field's value: raw_value, as Envoy sends it, or the
// older value.
func headerValue(f *corev3.HeaderValue) string {
	if raw := f.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return f.GetValue()
}

// immediate answers a request from the cache.
func immediate(r *respcache.Reply) *extprocv3.ProcessingResponse {
	set := make([]*corev3.HeaderValueOption, 0, len(r.Header))
	seen := make(map[string]bool, len(r.Header))
	for _, h := range r.Header {
		// The first field of a name replaces Envoy's default (its
		// content-type); later ones of the same name are added beside it.
		action := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		if seen[h.Name] {
			action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		}
		seen[h.Name] = true
		set = append(set, option(h, action))
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.Status)},
		Headers: &extprocv3.HeaderMutation{SetHeaders: set},
		Body:    r.Body,
		Details: "floodgate_cache_hit",
	}}}
}

// common is a CONTINUE that sets fields (nil when there are none).
func common(set []respcache.Header) *extprocv3.CommonResponse {
	if len(set) == 0 {
		return nil
	}
	opts := make([]*corev3.HeaderValueOption, len(set))
	for i, h := range set {
		opts[i] = option(h, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
	}
	return &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: opts}}
}

func option(h respcache.Header, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: h.Name, RawValue: []byte(h.Value)},
		AppendAction: action,
	}
}

func bodyMode(m respcache.BodyMode) procmodev3.ProcessingMode_BodySendMode {
	switch m {
	case respcache.BodyBuffered:
		return procmodev3.ProcessingMode_BUFFERED
	case respcache.BodyBufferedPartial:
		return procmodev3.ProcessingMode_BUFFERED_PARTIAL
	}
	return procmodev3.ProcessingMode_NONE
}

func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

func firstOf(h []respcache.Header, name string) string {
	for _, f := range h {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}
