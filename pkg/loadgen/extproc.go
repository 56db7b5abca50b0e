package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ModeExtProc opens an envoy.service.ext_proc.v3 ExternalProcessor/Process
// stream per request and plays Envoy's ext_proc filter on it (request and
// response headers SEND, bodies only when a mode_override asks).
const ModeExtProc = "extproc"

// The cache loads of ModeExtProc (Options.CacheLoad).
const (
	// CacheHit sends the requests of the key indexes (one key by default),
	// so that after each key's first request a cache answers them all.
	CacheHit = "hit"
	// CacheMiss replaces KeyPlaceholder with a number no request of the
	// run (nor, very likely, of another run) had: every request is a miss
	// whose response a cache may store.
	CacheMiss = "miss"
)

// processMethod is the full gRPC method name of ext_proc v3.
const processMethod = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"

var processDesc = grpc.StreamDesc{StreamName: "Process", ServerStreams: true, ClientStreams: true}

// uniqueDigits is how many decimal digits a CacheMiss number has; the
// template holds that many placeholder bytes where KeyPlaceholder was, so
// a request is the template with the digits written over them.
const uniqueDigits = 16

// uniqueMarker stands for a CacheMiss number in the marshalled template.
var uniqueMarker = strings.Repeat("\x7f", uniqueDigits)

// ProcessingResponse fields (envoy/service/ext_proc/v3) the generator reads.
const (
	fieldRequestHeaders    = 1
	fieldResponseHeaders   = 2
	fieldResponseBody      = 4
	fieldImmediateResponse = 7
	fieldModeOverride      = 9
	// streamed_immediate_response: a kind Envoy's filter does not take
	// here, so it counts as unexpected.
	fieldStreamedImmediateResponse = 11
	// ProcessingMode.response_header_mode and response_body_mode.
	fieldResponseHeaderMode = 2
	fieldResponseBodyMode   = 4
	modeSkip                = 2 // HeaderSendMode SKIP
	modeBodyNone            = 0 // BodySendMode NONE
)

// rawProcessingResponse receives which message a ProcessingResponse is
// and the mode_override's response modes; nothing else is decoded.
type rawProcessingResponse struct {
	kind                protowire.Number
	skipResponseHeaders bool
	responseBodyMode    uint64
	immediateHTTPStatus uint64
}

// decodeProcessingResponse reads the oneof field number of a
// ProcessingResponse and its mode_override.
func decodeProcessingResponse(b []byte, r *rawProcessingResponse) error {
	*r = rawProcessingResponse{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("loadgen codec: bad processing response tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldModeOverride || num == fieldImmediateResponse) {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return fmt.Errorf("loadgen codec: bad processing response field %d: %w", num, protowire.ParseError(m))
			}
			b = b[m:]
			var err error
			if num == fieldModeOverride {
				err = scanFields(v, func(num protowire.Number, x uint64) {
					switch num {
					case fieldResponseHeaderMode:
						r.skipResponseHeaders = x == modeSkip
					case fieldResponseBodyMode:
						r.responseBodyMode = x
					}
				}, nil)
			} else {
				r.kind = num
				err = scanFields(v, nil, func(num protowire.Number, x []byte) error {
					if num != 1 { // status: HttpStatus{code = 1}
						return nil
					}
					return scanFields(x, func(num protowire.Number, c uint64) {
						if num == 1 {
							r.immediateHTTPStatus = c
						}
					}, nil)
				})
			}
			if err != nil {
				return err
			}
			continue
		}
		// The response oneof: fields 1 to 7 and 11. Others (dynamic
		// metadata 8, override_message_timeout 10, ...) are not its kind.
		if typ == protowire.BytesType && (num >= fieldRequestHeaders && num <= fieldImmediateResponse || num == fieldStreamedImmediateResponse) {
			r.kind = num
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return fmt.Errorf("loadgen codec: bad processing response field %d: %w", num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	return nil
}

// scanFields calls varint for each varint field of b and bytes for each
// length-delimited one (either may be nil), and skips the rest.
func scanFields(b []byte, varint func(protowire.Number, uint64), bytesFn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("loadgen codec: bad tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && varint != nil:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return fmt.Errorf("loadgen codec: bad varint: %w", protowire.ParseError(m))
			}
			varint(num, v)
			b = b[m:]
		case typ == protowire.BytesType && bytesFn != nil:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return fmt.Errorf("loadgen codec: bad bytes: %w", protowire.ParseError(m))
			}
			if err := bytesFn(num, v); err != nil {
				return err
			}
			b = b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return fmt.Errorf("loadgen codec: bad field %d: %w", num, protowire.ParseError(m))
			}
			b = b[m:]
		}
	}
	return nil
}

// validateExtProc checks the options of ModeExtProc.
func (o *Options) validateExtProc() []error {
	var errs []error
	if o.Domain != "" {
		errs = append(errs, errors.New("--domain: not used with --mode extproc"))
	}
	if len(o.Descriptors) > 0 {
		errs = append(errs, errors.New("--descriptor: not used with --mode extproc"))
	}
	if o.Hits != 0 {
		errs = append(errs, errors.New("--hits: not used with --mode extproc"))
	}
	if o.Method == "" {
		errs = append(errs, errors.New("--method: empty"))
	}
	if !strings.HasPrefix(o.Path, "/") {
		errs = append(errs, fmt.Errorf("--path %q: want a path starting with /", o.Path))
	}
	if o.BodyBytes < 0 {
		errs = append(errs, fmt.Errorf("--body-bytes %d: negative", o.BodyBytes))
	}
	if o.MaxAge < time.Second {
		errs = append(errs, fmt.Errorf("--max-age %v: want at least 1s", o.MaxAge))
	}
	for _, h := range o.Headers {
		if h.Name == "" {
			errs = append(errs, fmt.Errorf("--header %q: empty name", h.String()))
		}
	}
	templated, lines := o.checkTemplated()
	switch o.CacheLoad {
	case CacheHit, "":
		switch {
		case o.Keys < 1 || o.Keys > MaxKeys:
			errs = append(errs, fmt.Errorf("--keys %d: want 1 to %d", o.Keys, MaxKeys))
		case o.Keys > 1 && !templated:
			errs = append(errs, fmt.Errorf("--keys %d: no --header, --host or --path contains %s or %s, so every request would be the same",
				o.Keys, KeyPlaceholder, LinePlaceholder))
		}
		switch {
		case lines && len(o.KeyLines) == 0:
			errs = append(errs, fmt.Errorf("--key-file: required when a template uses %s", LinePlaceholder))
		case len(o.KeyLines) > 0 && !lines:
			errs = append(errs, fmt.Errorf("--key-file: given, but no --header, --host or --path uses %s", LinePlaceholder))
		case lines && o.Keys > len(o.KeyLines):
			errs = append(errs, fmt.Errorf("--keys %d: more than the %d lines of --key-file", o.Keys, len(o.KeyLines)))
		}
	case CacheMiss:
		if lines || len(o.KeyLines) > 0 {
			errs = append(errs, fmt.Errorf("--key-file and %s: not used with --cache-load miss", LinePlaceholder))
		}
		if !templated {
			errs = append(errs, fmt.Errorf("--cache-load miss: no --header, --host or --path contains %s, so every request would be the same", KeyPlaceholder))
		}
		if o.Keys != 1 || o.Sequential {
			errs = append(errs, errors.New("--keys and --sequential: not used with --cache-load miss (each request gets a number of its own)"))
		}
	default:
		errs = append(errs, fmt.Errorf("--cache-load %q: want %s or %s", o.CacheLoad, CacheHit, CacheMiss))
	}
	return errs
}

// extprocMessages are the wire forms of a stream's messages: the request
// headers of every key index (CacheHit) or one template (CacheMiss), and
// the upstream's response headers and body.
type extprocMessages struct {
	requests *requestSet
	// marks are the offsets of uniqueMarker in the CacheMiss template.
	marks           []int
	responseHeaders []byte
	responseBody    []byte // nil without a body
}

// buildRequestHeaders is the request_headers message for key index n, as
// Envoy's ext_proc filter sends it: every header in raw_value, names lower
// case, pseudo-headers first, end_of_stream for a request without a body.
func buildRequestHeaders(o *Options, x func(string) string) *extprocv3.ProcessingRequest {
	method := x(o.Method)
	hs := [][2]string{
		{":authority", x(o.Host)}, {":path", x(o.Path)}, {":method", method}, {":scheme", "http"},
		{"user-agent", "floodgate-loadgen"}, {"accept", "*/*"}, {"x-forwarded-proto", "http"},
	}
	for _, h := range o.Headers {
		hs = append(hs, [2]string{strings.ToLower(x(h.Name)), x(h.Value)})
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers:     headerMap(hs),
		EndOfStream: method == "GET" || method == "HEAD",
	}}}
}

func headerMap(hs [][2]string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, len(hs))}
	for i, h := range hs {
		m.Headers[i] = &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])}
	}
	return m
}

// buildExtProcMessages marshals every message a run sends.
func buildExtProcMessages(o *Options, keys int) (*extprocMessages, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	msgs := &extprocMessages{requests: &requestSet{ends: make([]int, 0, keys)}}
	if o.CacheLoad == CacheMiss {
		x := func(s string) string { return strings.ReplaceAll(s, KeyPlaceholder, uniqueMarker) }
		b, err := opts.Marshal(buildRequestHeaders(o, x))
		if err != nil {
			return nil, fmt.Errorf("marshal request headers: %w", err)
		}
		for i := 0; ; {
			j := bytes.Index(b[i:], []byte(uniqueMarker))
			if j < 0 {
				break
			}
			msgs.marks = append(msgs.marks, i+j)
			i += j + uniqueDigits
		}
		msgs.requests.arena = b
		msgs.requests.ends = append(msgs.requests.ends, len(b))
	} else {
		for n := range keys {
			x := func(s string) string { return expandCheck(s, n, o.KeyLines) }
			var err error
			msgs.requests.arena, err = opts.MarshalAppend(msgs.requests.arena, buildRequestHeaders(o, x))
			if err != nil {
				return nil, fmt.Errorf("marshal request headers for key %d: %w", n, err)
			}
			msgs.requests.ends = append(msgs.requests.ends, len(msgs.requests.arena))
		}
	}
	hs := [][2]string{
		{":status", "200"},
		{"content-type", "application/json"},
		{"content-length", strconv.Itoa(o.BodyBytes)},
		{"cache-control", "max-age=" + strconv.FormatInt(int64(o.MaxAge/time.Second), 10)},
	}
	var err error
	msgs.responseHeaders, err = opts.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers: headerMap(hs), EndOfStream: o.BodyBytes == 0,
	}}})
	if err != nil {
		return nil, fmt.Errorf("marshal response headers: %w", err)
	}
	if o.BodyBytes > 0 {
		msgs.responseBody, err = opts.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{
			Body: bytes.Repeat([]byte("x"), o.BodyBytes), EndOfStream: true,
		}}})
		if err != nil {
			return nil, fmt.Errorf("marshal response body: %w", err)
		}
	}
	return msgs, nil
}

// uniqueRequest is the CacheMiss template with number u written over its
// markers, in a new slice (gRPC may still be writing the previous one).
func (m *extprocMessages) uniqueRequest(u uint64) []byte {
	b := bytes.Clone(m.requests.arena)
	var digits [uniqueDigits]byte
	for i := uniqueDigits - 1; i >= 0; i-- {
		digits[i] = byte('0' + u%10)
		u /= 10
	}
	for _, at := range m.marks {
		copy(b[at:], digits[:])
	}
	return b
}

// errUnexpected is a stream answer Envoy would not accept where it came.
var errUnexpected = errors.New("unexpected ext_proc answer")

// streamOutcome is what one stream did.
type streamOutcome struct {
	hit, bodySent, skipped bool
}

// process plays one HTTP request through a Process stream as Envoy does:
// the request headers; unless answered with an immediate_response, the
// response headers, and the body when the answer's mode_override asks for
// it; then the half-close, and the server's end of the stream.
func (r *runner) process(ctx context.Context, w *worker, req []byte) (streamOutcome, error) {
	var out streamOutcome
	cs, err := w.conn.NewStream(ctx, &processDesc, processMethod)
	if err != nil {
		return out, err
	}
	resp := &w.procResp
	exchange := func(b []byte) error {
		w.req.b = b
		if err := cs.SendMsg(&w.req); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream: RecvMsg has its status.
				return cs.RecvMsg(resp)
			}
			return err
		}
		return cs.RecvMsg(resp)
	}
	if err := exchange(req); err != nil {
		return out, err
	}
	switch {
	case resp.kind == fieldImmediateResponse:
		out.hit = true
	case resp.kind != fieldRequestHeaders:
		return out, fmt.Errorf("%w: %d to request_headers", errUnexpected, resp.kind)
	case resp.skipResponseHeaders:
		out.skipped = true
	default:
		if err := exchange(r.msgs.responseHeaders); err != nil {
			return out, err
		}
		if resp.kind != fieldResponseHeaders {
			return out, fmt.Errorf("%w: %d to response_headers", errUnexpected, resp.kind)
		}
		if resp.responseBodyMode != modeBodyNone && r.msgs.responseBody != nil {
			out.bodySent = true
			if err := exchange(r.msgs.responseBody); err != nil {
				return out, err
			}
			if resp.kind != fieldResponseBody {
				return out, fmt.Errorf("%w: %d to response_body", errUnexpected, resp.kind)
			}
		}
	}
	if err := cs.CloseSend(); err != nil {
		return out, err
	}
	if err := cs.RecvMsg(resp); !errors.Is(err, io.EOF) {
		if err == nil {
			return out, fmt.Errorf("%w: a message after the last answer", errUnexpected)
		}
		return out, err
	}
	return out, nil
}
