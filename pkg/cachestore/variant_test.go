package cachestore

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

func TestVariantID(t *testing.T) {
	t.Parallel()
	h := func(kv ...string) []Header {
		var out []Header
		for i := 0; i < len(kv); i += 2 {
			out = append(out, Header{kv[i], kv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		vary []string
		req  []Header
		want string
	}{
		{nil, h("accept", "x"), ""},
		{[]string{"accept"}, nil, "6:accept!"},
		{[]string{"accept"}, h("accept", ""), "6:accept=0:"},
		{[]string{"Accept"}, h("ACCEPT", "a", "x", "y", "accept", "b"), "6:accept=4:a, b"},
		{[]string{"a", "b"}, h("b", "2", "a", "1"), "1:a=1:11:b=1:2"},
	} {
		if got := VariantID(tc.vary, tc.req); got != tc.want {
			t.Errorf("VariantID(%q, %v) = %q, want %q", tc.vary, tc.req, got, tc.want)
		}
	}
}

// TestVariantIDUnambiguous: requests get the same id exactly when they
// agree on every name (values joined), over random small inputs.
func TestVariantIDUnambiguous(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"", "a", ":", "=", "!", "1", ", ", "1:a"}
	vary := []string{"a", "b"}
	view := func(req []Header) string {
		var parts []string
		for _, n := range vary {
			var vals []string
			for _, f := range req {
				if f.Name == n {
					vals = append(vals, f.Value)
				}
			}
			if vals == nil {
				parts = append(parts, n+" absent")
			} else {
				parts = append(parts, fmt.Sprintf("%s=%q", n, strings.Join(vals, ", ")))
			}
		}
		return strings.Join(parts, ";")
	}
	seen := map[string]string{}
	for i := 0; i < 5000; i++ {
		var req []Header
		for j := r.IntN(4); j > 0; j-- {
			req = append(req, Header{vary[r.IntN(2)], alphabet[r.IntN(len(alphabet))] + alphabet[r.IntN(len(alphabet))]})
		}
		id, v := VariantID(vary, req), view(req)
		if prev, ok := seen[id]; ok && prev != v {
			t.Fatalf("id %q for both %s and %s", id, prev, v)
		}
		seen[id] = v
	}
}

func TestSkiplist(t *testing.T) {
	t.Parallel()
	var l skiplist
	r := rand.New(rand.NewPCG(3, 4))
	in := map[string]bool{}
	for i := 0; i < 3000; i++ {
		p := fmt.Sprint("/", r.IntN(500))
		if in[p] {
			l.remove(p)
			delete(in, p)
		} else {
			l.insert(p, nil)
			in[p] = true
		}
	}
	var want, got []string
	for p := range in {
		want = append(want, p)
	}
	sort.Strings(want)
	for n := l.seek(""); n != nil; n = n.next[0] {
		got = append(got, n.path)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("walk = %v\nwant %v", got, want)
	}
	if n := l.seek("/2"); n == nil || n.path < "/2" {
		t.Errorf("seek(/2) = %v", n)
	}
}
