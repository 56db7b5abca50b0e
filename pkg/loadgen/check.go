package loadgen

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The modes of Options.Mode.
const (
	// ModeRateLimit sends envoy.service.ratelimit.v3 ShouldRateLimit.
	ModeRateLimit = "ratelimit"
	// ModeCheck sends envoy.service.auth.v3 Authorization/Check, as
	// Envoy's ext_authz filter does.
	ModeCheck = "check"
)

// LinePlaceholder in a Check header, the client address, the host or the
// path is replaced by line n of Options.KeyLines (the --key-file), where n
// is the key index drawn for the request.
const LinePlaceholder = "{key}"

// checkMethod is the full gRPC method name of ext_authz v3.
const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// The fixed parts of the socket addresses a Check carries; Envoy sends the
// peer's real port and its own listener's address.
const (
	checkSourcePort      = 40000
	checkDestination     = "127.0.0.1"
	checkDestinationPort = 10000
)

// Header is one request header of a Check, a template like a descriptor's
// entries: KeyPlaceholder and LinePlaceholder are expanded per key index.
type Header struct {
	Name  string
	Value string
}

// ParseHeader parses the --header syntax `name: value`: the name is what
// comes before the first ':' (after a leading one, so that pseudo-headers
// such as `:authority: x` work), the value what follows, both trimmed.
func ParseHeader(s string) (Header, error) {
	start := 0
	if strings.HasPrefix(s, ":") {
		start = 1
	}
	i := strings.IndexByte(s[start:], ':')
	if i < 0 {
		return Header{}, fmt.Errorf("--header %q: no ':', want 'name: value'", s)
	}
	name := strings.TrimSpace(s[:start+i])
	if name == "" || name == ":" {
		return Header{}, fmt.Errorf("--header %q: empty name, want 'name: value'", s)
	}
	return Header{Name: name, Value: strings.TrimSpace(s[start+i+1:])}, nil
}

// String formats h back into the --header syntax.
func (h Header) String() string { return h.Name + ": " + h.Value }

// checkTemplates lists every templated string of a Check request.
func (o *Options) checkTemplates() []string {
	t := []string{o.Source, o.Host, o.Path, o.Method}
	for _, h := range o.Headers {
		t = append(t, h.Name, h.Value)
	}
	return t
}

// checkTemplated reports whether the Check request varies with the key
// index, and whether it uses LinePlaceholder.
func (o *Options) checkTemplated() (templated, lines bool) {
	for _, s := range o.checkTemplates() {
		lines = lines || strings.Contains(s, LinePlaceholder)
		templated = templated || lines || strings.Contains(s, KeyPlaceholder)
	}
	return templated, lines
}

// validateCheck checks the options of ModeCheck.
func (o *Options) validateCheck() []error {
	var errs []error
	if o.Domain != "" {
		errs = append(errs, errors.New("--domain: not used with --mode check (the auth config's policies name the domain)"))
	}
	if len(o.Descriptors) > 0 {
		errs = append(errs, errors.New("--descriptor: not used with --mode check (the auth config's policies make the descriptors)"))
	}
	if o.Hits != 0 {
		errs = append(errs, errors.New("--hits: not used with --mode check"))
	}
	if o.CacheLoad == CacheMiss {
		errs = append(errs, errors.New("--cache-load: only with --mode extproc"))
	}
	if o.Method == "" {
		errs = append(errs, errors.New("--method: empty"))
	}
	if !strings.HasPrefix(o.Path, "/") {
		errs = append(errs, fmt.Errorf("--path %q: want a path starting with /", o.Path))
	}
	if o.Source == "" {
		errs = append(errs, errors.New("--source: empty, want the client's IP address"))
	}
	for _, h := range o.Headers {
		if h.Name == "" {
			errs = append(errs, fmt.Errorf("--header %q: empty name", h.String()))
		}
	}
	templated, lines := o.checkTemplated()
	switch {
	case o.Keys < 1 || o.Keys > MaxKeys:
		errs = append(errs, fmt.Errorf("--keys %d: want 1 to %d", o.Keys, MaxKeys))
	case o.Keys > 1 && !templated:
		errs = append(errs, fmt.Errorf("--keys %d: no --header, --source, --host or --path contains %s or %s, so every request would be the same",
			o.Keys, KeyPlaceholder, LinePlaceholder))
	}
	switch {
	case lines && len(o.KeyLines) == 0:
		errs = append(errs, fmt.Errorf("--key-file: required when a template uses %s", LinePlaceholder))
	case len(o.KeyLines) > 0 && !lines:
		errs = append(errs, fmt.Errorf("--key-file: given, but no --header, --source, --host or --path uses %s", LinePlaceholder))
	case lines && o.Keys > len(o.KeyLines):
		errs = append(errs, fmt.Errorf("--keys %d: more than the %d lines of --key-file", o.Keys, len(o.KeyLines)))
	}
	return errs
}

// expandCheck replaces the placeholders of s for key index n.
func expandCheck(s string, n int, lines []string) string {
	if strings.Contains(s, LinePlaceholder) {
		s = strings.ReplaceAll(s, LinePlaceholder, lines[n])
	}
	if strings.Contains(s, KeyPlaceholder) {
		s = strings.ReplaceAll(s, KeyPlaceholder, strconv.Itoa(n))
	}
	return s
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// buildCheckRequest makes the CheckRequest for key index n the way Envoy's
// ext_authz filter fills it (without encode_raw_headers): the peer and the
// listener as socket addresses, and attributes.request.http with method,
// host, path, scheme, protocol and the headers map, keyed lower case,
// pseudo-headers included, repeated headers joined with ','.
func buildCheckRequest(o *Options, n int) *authv3.CheckRequest {
	x := func(s string) string { return expandCheck(s, n, o.KeyLines) }
	method, host, path := x(o.Method), x(o.Host), x(o.Path)
	headers := map[string]string{
		":authority":        host,
		":method":           method,
		":path":             path,
		":scheme":           "http",
		"x-forwarded-proto": "http",
	}
	for _, h := range o.Headers {
		name, value := strings.ToLower(x(h.Name)), x(h.Value)
		if old, ok := headers[name]; ok && !strings.HasPrefix(name, ":") {
			value = old + "," + value
		}
		headers[name] = value
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress(x(o.Source), checkSourcePort)},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress(checkDestination, checkDestinationPort)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method:   method,
			Headers:  headers,
			Path:     path,
			Host:     host,
			Scheme:   "http",
			Protocol: "HTTP/1.1",
		}},
	}}
}

// buildCheckRequests marshals the CheckRequest of every key index.
func buildCheckRequests(o *Options, keys int) (*requestSet, error) {
	set := &requestSet{ends: make([]int, 0, keys)}
	opts := proto.MarshalOptions{Deterministic: true}
	for n := range keys {
		var err error
		set.arena, err = opts.MarshalAppend(set.arena, buildCheckRequest(o, n))
		if err != nil {
			return nil, fmt.Errorf("marshal check request for key %d: %w", n, err)
		}
		set.ends = append(set.ends, len(set.arena))
	}
	return set, nil
}

// rawCheckResponse receives the status.code of a CheckResponse.
type rawCheckResponse struct{ code int32 }

// checkStatusCode reads CheckResponse.status (field 1, a google.rpc.Status)
// and its code (field 1). A reply without either is OK (code 0), as proto3
// defines and as Envoy reads it.
func checkStatusCode(b []byte) (int32, error) {
	var code int32
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, fmt.Errorf("loadgen codec: bad check response tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			st, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return 0, fmt.Errorf("loadgen codec: bad status: %w", protowire.ParseError(m))
			}
			b = b[m:]
			// Repeated occurrences of a message merge: a later code wins
			// only where it is present.
			c, present, err := statusCode(st)
			if err != nil {
				return 0, err
			}
			if present {
				code = c
			}
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, fmt.Errorf("loadgen codec: bad check response field %d: %w", num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	return code, nil
}

// statusCode reads the code (field 1) of a google.rpc.Status.
func statusCode(b []byte) (code int32, present bool, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, false, fmt.Errorf("loadgen codec: bad status tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, false, fmt.Errorf("loadgen codec: bad status code: %w", protowire.ParseError(m))
			}
			code, present = int32(v), true
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, false, fmt.Errorf("loadgen codec: bad status field %d: %w", num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	return code, present, nil
}
