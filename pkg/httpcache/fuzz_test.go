package httpcache

import (
	"strings"
	"testing"
)

// FuzzCanonicalQuery checks that a canonical query is canonical (the
// function is idempotent), has no empty or ignored parameter, and keeps
// every other parameter as written.
func FuzzCanonicalQuery(f *testing.F) {
	for _, s := range []string{"", "b=2&a=1", "a=1&&utm_source=x&", "utm%5Fsource=1&z", "%&%zz=1", "+=&=+"} {
		f.Add(s)
	}
	ignore := []string{"utm_source", " "}
	f.Fuzz(func(t *testing.T, q string) {
		got := CanonicalQuery(q, ignore)
		if again := CanonicalQuery(got, ignore); again != got {
			t.Fatalf("CanonicalQuery(%q) = %q, but that gives %q", q, got, again)
		}
		if got == "" {
			return
		}
		for _, p := range strings.Split(got, "&") {
			if p == "" || ignored(p, ignore) || !strings.Contains("&"+q+"&", "&"+p+"&") {
				t.Fatalf("CanonicalQuery(%q) = %q: parameter %q", q, got, p)
			}
		}
	})
}

// FuzzHeaders checks that no header value makes the parsers panic, and a
// few invariants of their results.
func FuzzHeaders(f *testing.F) {
	for _, s := range []string{`max-age="60", no-cache="a, b"`, `max-age="6\0`, `W/"x", "y"`, "https://h:1/p?q", "//h/p", "a, b c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		cc := ParseCacheControl(v)
		if cc.MaxAge < 0 || cc.SMaxAge < 0 || (!cc.HasMaxAge && cc.MaxAge != 0) {
			t.Fatalf("ParseCacheControl(%q) = %+v", v, cc)
		}
		ETagMatches(v, v)
		if p, ok := SameHostPath(v, "h"); ok && !strings.HasPrefix(p, "/") {
			t.Fatalf("SameHostPath(%q) = %q", v, p)
		}
		names, _ := ParseVary(v)
		for _, n := range names {
			if n == "" || n != strings.ToLower(n) {
				t.Fatalf("ParseVary(%q) = %q", v, names)
			}
		}
		for _, tag := range ParseTags([]string{v}, []string{v}) {
			if tag == "" {
				t.Fatalf("ParseTags(%q): an empty tag", v)
			}
		}
		ParseAge(v)
		SplitTarget(v)
	})
}
