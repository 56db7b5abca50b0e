package loadgen

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestBuildRequestsRoundTrip(t *testing.T) {
	t.Parallel()
	descs := []Descriptor{{{"remote_address", "10.0.{n}"}}, {{"tenant", "t"}, {"user", "u{n}"}}}
	set, err := buildRequests("api", descs, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	if set.len() != 5 {
		t.Fatalf("len = %d, want 5", set.len())
	}
	for n := range 5 {
		var got rlsv3.RateLimitRequest
		if err := proto.Unmarshal(set.get(n), &got); err != nil {
			t.Fatalf("request %d does not unmarshal: %v", n, err)
		}
		v := string(rune('0' + n))
		want := &rlsv3.RateLimitRequest{
			Domain:     "api",
			HitsAddend: 3,
			Descriptors: []*commonrl.RateLimitDescriptor{
				{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "10.0." + v}}},
				{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "tenant", Value: "t"}, {Key: "user", Value: "u" + v}}},
			},
		}
		if !proto.Equal(&got, want) {
			t.Errorf("request %d = %v, want %v", n, &got, want)
		}
	}
}

func TestCodec(t *testing.T) {
	t.Parallel()
	c := rawCodec{}
	out, err := c.Marshal(&rawRequest{b: []byte{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Materialize(); string(got) != "\x01\x02\x03" {
		t.Errorf("Marshal passed %v, want the bytes unchanged", got)
	}
	if _, err := c.Marshal(&rlsv3.RateLimitRequest{}); err == nil {
		t.Error("Marshal of a foreign type succeeded")
	}

	full, err := proto.Marshal(&rlsv3.RateLimitResponse{
		OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
		Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{
			Code:               rlsv3.RateLimitResponse_OVER_LIMIT,
			LimitRemaining:     0,
			DurationUntilReset: durationpb.New(5e9),
		}},
		ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "Retry-After", Value: "5"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// overall_code after other fields, and twice: the last one wins.
	reordered := protowire.AppendTag(nil, 3, protowire.BytesType)
	reordered = protowire.AppendBytes(reordered, []byte{})
	reordered = protowire.AppendTag(reordered, 1, protowire.VarintType)
	reordered = protowire.AppendVarint(reordered, 1)
	reordered = protowire.AppendTag(reordered, 1, protowire.VarintType)
	reordered = protowire.AppendVarint(reordered, 2)

	tests := []struct {
		name    string
		data    mem.BufferSlice
		want    rlsv3.RateLimitResponse_Code
		wantErr bool
	}{
		{name: "full response", data: mem.BufferSlice{mem.SliceBuffer(full)}, want: rlsv3.RateLimitResponse_OVER_LIMIT},
		{name: "split over buffers", data: mem.BufferSlice{mem.SliceBuffer(full[:3]), mem.SliceBuffer(full[3:])}, want: rlsv3.RateLimitResponse_OVER_LIMIT},
		{name: "empty is UNKNOWN", data: mem.BufferSlice{mem.SliceBuffer(nil)}, want: rlsv3.RateLimitResponse_UNKNOWN},
		{name: "last occurrence wins", data: mem.BufferSlice{mem.SliceBuffer(reordered)}, want: rlsv3.RateLimitResponse_OVER_LIMIT},
		{name: "truncated", data: mem.BufferSlice{mem.SliceBuffer(full[:len(full)-1])}, wantErr: true},
		{name: "bad tag", data: mem.BufferSlice{mem.SliceBuffer([]byte{0xff})}, wantErr: true},
	}
	for _, tc := range tests {
		var resp rawResponse
		err := c.Unmarshal(tc.data, &resp)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%s: Unmarshal succeeded with code %v, want an error", tc.name, resp.code)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Unmarshal error: %v", tc.name, err)
			continue
		}
		if resp.code != tc.want {
			t.Errorf("%s: code = %v, want %v", tc.name, resp.code, tc.want)
		}
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(full)}, &rlsv3.RateLimitResponse{}); err == nil {
		t.Error("Unmarshal into a foreign type succeeded")
	}
}
