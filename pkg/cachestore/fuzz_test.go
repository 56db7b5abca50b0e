package cachestore

import (
	"slices"
	"strings"
	"testing"
)

// fuzzHeaders splits s into header fields: lines of NAME:VALUE.
func fuzzHeaders(s string) []Header {
	var out []Header
	for _, line := range strings.Split(s, "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok {
			out = append(out, Header{Name: name, Value: value})
		}
	}
	return out
}

// variantOf is, independently of VariantID, what a request's variant is
// made of: per Vary name, whether it has the field and the values of its
// fields (names compared with ASCII case folding) joined with ", ".
func variantOf(vary []string, req []Header) []string {
	var out []string
	for _, name := range vary {
		var vals []string
		for _, h := range req {
			if sameASCIIFold(h.Name, name) {
				vals = append(vals, h.Value)
			}
		}
		if vals == nil {
			out = append(out, "absent")
		} else {
			out = append(out, "="+strings.Join(vals, ", "))
		}
	}
	return out
}

func sameASCIIFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// FuzzVariantID checks that two requests share a variant exactly when
// they agree on every Vary name (presence and joined value), whatever the
// bytes of names and values, and that AppendVariantID appends VariantID.
func FuzzVariantID(f *testing.F) {
	f.Add("accept,accept-encoding", "accept:text/html\naccept-encoding:gzip", "Accept:text/html\nACCEPT-ENCODING:gzip")
	f.Add("a", "a:1, 2", "a:1\na:2")
	f.Add("a,b", "a:", "b:")
	f.Add("x", "x:1:5", "y:x")
	f.Add("1:a", "1:a:b", "1:a:b")
	f.Add("\xc4", "\xc4:1", "\xe4:1")
	f.Add("", "a:1", "")
	f.Fuzz(func(t *testing.T, varyList, h1, h2 string) {
		var vary []string
		if varyList != "" {
			vary = strings.Split(varyList, ",")
		}
		r1, r2 := fuzzHeaders(h1), fuzzHeaders(h2)
		id1, id2 := VariantID(vary, r1), VariantID(vary, r2)
		same := slices.Equal(variantOf(vary, r1), variantOf(vary, r2))
		if same != (id1 == id2) {
			t.Fatalf("vary %q: %q and %q agree %v, but variants %q and %q", vary, r1, r2, same, id1, id2)
		}
		if len(vary) == 0 && id1 != "" {
			t.Fatalf("no vary names: variant %q", id1)
		}
		if got := string(AppendVariantID([]byte("pre"), vary, r1)); got != "pre"+id1 {
			t.Fatalf("AppendVariantID = %q, want %q", got, "pre"+id1)
		}
	})
}
