// Package extproctest plays Envoy's side of ext_proc streams in tests: it
// sends the messages Envoy's ext_proc filter sends for one HTTP request
// (headers in raw_value, the ext_authz metadata in metadata_context, bodies
// only when a mode_override asks for them, as Envoy's processing mode with
// allow_mode_override does) and applies the answers the way Envoy would, so
// tests see what the client would see.
package extproctest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// AuthzNamespace is where Envoy keeps ext_authz's dynamic metadata.
const AuthzNamespace = "envoy.filters.http.ext_authz"

// Request is the HTTP request a stream is for.
type Request struct {
	Method    string // default GET
	Authority string
	Path      string
	Header    [][2]string
	// Identity is the ext_authz metadata Envoy forwards (nil: none).
	Identity map[string]string
	// AuthzMetadata, when set, is forwarded instead of Identity: the
	// dynamic_metadata of a CheckResponse as Check returned it, which
	// Envoy keeps under AuthzNamespace and forwards unchanged.
	AuthzMetadata *structpb.Struct
}

// Response is what the upstream answers, if the request gets there.
type Response struct {
	Status int
	Header [][2]string
	Body   []byte
	// Chunked leaves Content-Length out (a body of unknown length).
	Chunked bool
	// BufferLimit is the proxy's buffer for BUFFERED_PARTIAL (0: 1 MiB):
	// a longer body is sent cut, without end_of_stream.
	BufferLimit int
}

// Result is what one stream did.
type Result struct {
	// Immediate is the immediate response, when the cache answered.
	Immediate *extprocv3.ImmediateResponse
	// Status, Header and Body are what the client received: the cache's
	// answer on a hit, else the upstream's response with the mutations
	// applied. Header names are lower case.
	Status int
	Header map[string][]string
	Body   []byte
	// SkippedResponse is true when the processor told Envoy not to send
	// the response headers; BodyMode is the body mode it asked for.
	SkippedResponse bool
	BodyMode        procmodev3.ProcessingMode_BodySendMode
	// Messages counts the messages sent on the stream.
	Messages int
}

// Get is the first value of a header the client received.
func (r *Result) Get(name string) string {
	if v := r.Header[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Client opens streams.
type Client struct {
	c extprocv3.ExternalProcessorClient
}

// New returns a Client over conn.
func New(conn grpc.ClientConnInterface) *Client {
	return &Client{c: extprocv3.NewExternalProcessorClient(conn)}
}

// Stream is one request's stream, for tests that pace the messages.
type Stream struct {
	s   extprocv3.ExternalProcessor_ProcessClient
	req Request
	res Result
}

// Open sends the request's headers and reads the answer. On a hit the
// stream is over (Result.Immediate is set).
func (c *Client) Open(ctx context.Context, req Request) (*Stream, error) {
	s, err := c.c.Process(ctx)
	if err != nil {
		return nil, err
	}
	if req.Method == "" {
		req.Method = "GET"
	}
	st := &Stream{s: s, req: req}
	hm := headerMap([][2]string{{":method", req.Method}, {":authority", req.Authority}, {":path", req.Path}, {":scheme", "http"}}, req.Header)
	msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: req.Method == "GET" || req.Method == "HEAD"}}}
	if req.AuthzMetadata != nil {
		msg.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{AuthzNamespace: req.AuthzMetadata}}
	} else if req.Identity != nil {
		fields := map[string]*structpb.Value{}
		for k, v := range req.Identity {
			fields[k] = structpb.NewStringValue(v)
		}
		msg.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{AuthzNamespace: {Fields: fields}}}
	}
	resp, err := st.exchange(msg)
	if err != nil {
		return nil, err
	}
	switch r := resp.Response.(type) {
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		ir := r.ImmediateResponse
		st.res.Immediate = ir
		st.res.Status = int(ir.GetStatus().GetCode())
		st.res.Header = map[string][]string{}
		apply(st.res.Header, ir.GetHeaders())
		st.res.Body = ir.GetBody()
		return st, st.finish()
	case *extprocv3.ProcessingResponse_RequestHeaders:
		if m := resp.GetModeOverride(); m != nil && m.GetResponseHeaderMode() == procmodev3.ProcessingMode_SKIP {
			st.res.SkippedResponse = true
		}
		return st, nil
	}
	return nil, fmt.Errorf("answer to request_headers: %T", resp.Response)
}

// Hit says whether the cache answered the request.
func (st *Stream) Hit() bool { return st.res.Immediate != nil }

// Hit says whether the cache answered the request.
func (r *Result) Hit() bool { return r.Immediate != nil }

// Respond plays the upstream's response through the stream and ends it.
func (st *Stream) Respond(r Response) (*Result, error) {
	if st.res.Immediate != nil {
		return &st.res, nil
	}
	res := &st.res
	res.Status = r.Status
	res.Header = map[string][]string{}
	for _, h := range r.Header {
		k := strings.ToLower(h[0])
		res.Header[k] = append(res.Header[k], h[1])
	}
	if !r.Chunked && (len(r.Body) > 0 || r.Status != 204) {
		if _, ok := res.Header["content-length"]; !ok {
			res.Header["content-length"] = []string{strconv.Itoa(len(r.Body))}
		}
	}
	res.Body = r.Body
	if res.SkippedResponse {
		return res, st.finish()
	}
	var hs [][2]string
	for k, vs := range res.Header {
		for _, v := range vs {
			hs = append(hs, [2]string{k, v})
		}
	}
	hm := headerMap([][2]string{{":status", strconv.Itoa(r.Status)}}, hs)
	resp, err := st.exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: len(r.Body) == 0 && !r.Chunked}}})
	if err != nil {
		return nil, err
	}
	rh, ok := resp.Response.(*extprocv3.ProcessingResponse_ResponseHeaders)
	if !ok {
		return nil, fmt.Errorf("answer to response_headers: %T", resp.Response)
	}
	apply(res.Header, rh.ResponseHeaders.GetResponse().GetHeaderMutation())
	if m := resp.GetModeOverride(); m != nil {
		res.BodyMode = m.GetResponseBodyMode()
	}
	if len(r.Body) == 0 && !r.Chunked {
		return res, st.finish()
	}
	body, end := r.Body, true
	switch res.BodyMode {
	case procmodev3.ProcessingMode_BUFFERED:
	case procmodev3.ProcessingMode_BUFFERED_PARTIAL:
		limit := r.BufferLimit
		if limit == 0 {
			limit = 1 << 20
		}
		if len(body) > limit {
			body, end = body[:limit], false
		}
	default:
		return res, st.finish()
	}
	resp, err = st.exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: body, EndOfStream: end}}})
	if err != nil {
		return nil, err
	}
	rb, ok := resp.Response.(*extprocv3.ProcessingResponse_ResponseBody)
	if !ok {
		return nil, fmt.Errorf("answer to response_body: %T", resp.Response)
	}
	apply(res.Header, rb.ResponseBody.GetResponse().GetHeaderMutation())
	return res, st.finish()
}

// Cancel ends the stream as Envoy does when the client goes away.
func (st *Stream) Cancel() { st.s.CloseSend() }

func (st *Stream) exchange(m *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if err := st.s.Send(m); err != nil {
		return nil, err
	}
	st.res.Messages++
	return st.s.Recv()
}

// finish half-closes the stream and waits for the server to end it.
func (st *Stream) finish() error {
	if err := st.s.CloseSend(); err != nil {
		return err
	}
	if _, err := st.s.Recv(); !errors.Is(err, io.EOF) {
		if err == nil {
			return errors.New("a message after the stream's last answer")
		}
		return err
	}
	return nil
}

// Do plays one request and, unless the cache answers it, resp.
func (c *Client) Do(ctx context.Context, req Request, resp Response) (*Result, error) {
	st, err := c.Open(ctx, req)
	if err != nil {
		return nil, err
	}
	return st.Respond(resp)
}

func headerMap(pseudo, rest [][2]string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for _, h := range append(pseudo, rest...) {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: strings.ToLower(h[0]), RawValue: []byte(h[1])})
	}
	return hm
}

// apply applies a header mutation as Envoy does.
func apply(h map[string][]string, m *extprocv3.HeaderMutation) {
	for _, opt := range m.GetSetHeaders() {
		k := strings.ToLower(opt.GetHeader().GetKey())
		v := string(opt.GetHeader().GetRawValue())
		if v == "" {
			v = opt.GetHeader().GetValue()
		}
		switch opt.GetAppendAction() {
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h[k] = []string{v}
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if _, ok := h[k]; !ok {
				h[k] = []string{v}
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if _, ok := h[k]; ok {
				h[k] = []string{v}
			}
		default:
			h[k] = append(h[k], v)
		}
	}
	for _, k := range m.GetRemoveHeaders() {
		delete(h, strings.ToLower(k))
	}
}
