package loadgen

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseDescriptor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Descriptor
		wantErr string // substring; every error must also name the flag
	}{
		{in: "remote_address=10.0.0.1", want: Descriptor{{"remote_address", "10.0.0.1"}}},
		{in: "tenant=a,user=b", want: Descriptor{{"tenant", "a"}, {"user", "b"}}},
		{in: "remote_address=10.0.{n}", want: Descriptor{{"remote_address", "10.0.{n}"}}},
		{in: "path=/a?x=1", want: Descriptor{{"path", "/a?x=1"}}}, // only the first '=' splits
		{in: "k=", want: Descriptor{{"k", ""}}},
		{in: "", wantErr: "empty"},
		{in: "   ", wantErr: "empty"},
		{in: "novalue", wantErr: `entry 1 "novalue" has no '='`},
		{in: "a=1,b", wantErr: `entry 2 "b" has no '='`},
		{in: "=v", wantErr: "empty key"},
		{in: "a=1,", wantErr: `entry 2 "" has no '='`},
		{in: "a=1,,b=2", wantErr: `entry 2 "" has no '='`},
	}
	for _, tc := range tests {
		got, err := ParseDescriptor(tc.in)
		if tc.wantErr != "" {
			if err == nil {
				t.Errorf("ParseDescriptor(%q) = %v, want error containing %q", tc.in, got, tc.wantErr)
				continue
			}
			if !strings.Contains(err.Error(), "--descriptor") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseDescriptor(%q) error %q, want it to name --descriptor and contain %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseDescriptor(%q) error: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseDescriptor(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("ParseDescriptor(%q).String() = %q, want the input back", tc.in, got.String())
		}
	}
}

func TestDescriptorExpand(t *testing.T) {
	t.Parallel()
	d := Descriptor{{"k{n}", "10.0.{n}.{n}"}, {"fixed", "v"}}
	if !d.templated() {
		t.Fatalf("templated() = false for %v", d)
	}
	got := d.expand(42)
	want := Descriptor{{"k42", "10.0.42.42"}, {"fixed", "v"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("expand(42) = %v, want %v", got, want)
	}
	if d[0].Key != "k{n}" {
		t.Errorf("expand changed its receiver: %v", d)
	}
	if (Descriptor{{"a", "b"}}).templated() {
		t.Errorf("templated() = true without %s", KeyPlaceholder)
	}
}
