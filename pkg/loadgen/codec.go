package loadgen

import (
	"fmt"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// shouldRateLimitMethod is the full gRPC method name of the RLS v3 API.
const shouldRateLimitMethod = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

// The generator shares the machine with the server it measures, so it does
// as little as it can per request: every request is marshalled once, up
// front, into one arena, and the codec below hands those bytes to gRPC as
// they are. Replies are not unmarshalled either; only overall_code is read
// off the wire. On the wire this is the ordinary proto encoding, under the
// ordinary "proto" content-subtype, so any RLS server can answer it.

// rawRequest is a request already in wire form; workers reuse one each.
type rawRequest struct{ b []byte }

// rawResponse receives the overall_code of a RateLimitResponse.
type rawResponse struct{ code rlsv3.RateLimitResponse_Code }

// rawCodec passes rawRequest bytes through and decodes rawResponse.
type rawCodec struct{}

var _ encoding.CodecV2 = rawCodec{}

// Marshal wraps the precomputed bytes without copying. SliceBuffer's Free
// is a no-op, so gRPC releasing the buffer leaves the arena intact.
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(*rawRequest)
	if !ok {
		return nil, fmt.Errorf("loadgen codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(r.b)}, nil
}

// Unmarshal reads overall_code (field 1) of a RateLimitResponse,
// status.code of a CheckResponse, or which message a ProcessingResponse is
// (and its mode_override), and skips everything else.
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		b = data.Materialize()
	}
	switch r := v.(type) {
	case *rawResponse:
		code, err := overallCode(b)
		if err != nil {
			return err
		}
		r.code = code
	case *rawCheckResponse:
		code, err := checkStatusCode(b)
		if err != nil {
			return err
		}
		r.code = code
	case *rawProcessingResponse:
		return decodeProcessingResponse(b, r)
	default:
		return fmt.Errorf("loadgen codec: cannot unmarshal into %T", v)
	}
	return nil
}

// Name is "proto" so that the content-type is application/grpc+proto, the
// one every RLS server expects.
func (rawCodec) Name() string { return "proto" }

// overallCode scans the top-level fields of a RateLimitResponse for field 1.
// A reply without it is UNKNOWN, as proto3 defines.
func overallCode(b []byte) (rlsv3.RateLimitResponse_Code, error) {
	code := rlsv3.RateLimitResponse_UNKNOWN
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, fmt.Errorf("loadgen codec: bad response tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, fmt.Errorf("loadgen codec: bad overall_code: %w", protowire.ParseError(m))
			}
			// The last occurrence wins, as in proto decoding.
			code = rlsv3.RateLimitResponse_Code(int32(v))
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, fmt.Errorf("loadgen codec: bad response field %d: %w", num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	return code, nil
}

// requestSet holds the wire form of the request for every key index.
type requestSet struct {
	arena []byte
	ends  []int // request i is arena[ends[i-1]:ends[i]] (ends[-1] = 0)
}

// get returns the wire bytes of request i.
func (s *requestSet) get(i int) []byte {
	start := 0
	if i > 0 {
		start = s.ends[i-1]
	}
	return s.arena[start:s.ends[i]]
}

// len is the number of distinct requests.
func (s *requestSet) len() int { return len(s.ends) }

// buildRequest makes the RateLimitRequest for key index n.
func buildRequest(domain string, descs []Descriptor, hits uint32, n int) *rlsv3.RateLimitRequest {
	req := &rlsv3.RateLimitRequest{Domain: domain, HitsAddend: hits}
	for _, d := range descs {
		pd := &commonrl.RateLimitDescriptor{}
		for _, e := range d.expand(n) {
			pd.Entries = append(pd.Entries, &commonrl.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value})
		}
		req.Descriptors = append(req.Descriptors, pd)
	}
	return req
}

// buildRequests marshals the request of every key index into one arena;
// keys is 1 when no descriptor is templated.
func buildRequests(domain string, descs []Descriptor, hits uint32, keys int) (*requestSet, error) {
	set := &requestSet{ends: make([]int, 0, keys)}
	opts := proto.MarshalOptions{Deterministic: true}
	for n := range keys {
		var err error
		set.arena, err = opts.MarshalAppend(set.arena, buildRequest(domain, descs, hits, n))
		if err != nil {
			return nil, fmt.Errorf("marshal request for key %d: %w", n, err)
		}
		set.ends = append(set.ends, len(set.arena))
	}
	return set, nil
}
