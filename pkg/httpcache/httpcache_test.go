package httpcache

import (
	"slices"
	"testing"
	"time"
)

func TestParseCacheControl(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []string
		want CacheControl
	}{
		{nil, CacheControl{}},
		{[]string{""}, CacheControl{}},
		// RFC 9111 §5.2.2.1 and the examples of §5.2.
		{[]string{"max-age=60"}, CacheControl{MaxAge: 60 * time.Second, HasMaxAge: true}},
		{[]string{`max-age="60"`}, CacheControl{MaxAge: 60 * time.Second, HasMaxAge: true}},
		{[]string{`max-age="6\0"`}, CacheControl{MaxAge: 60 * time.Second, HasMaxAge: true}},
		{[]string{"public, max-age=3600, s-maxage=600"}, CacheControl{Public: true, MaxAge: time.Hour, HasMaxAge: true, SMaxAge: 10 * time.Minute, HasSMaxAge: true}},
		{[]string{"  Max-Age = 5 ,NO-STORE"}, CacheControl{NoStore: true, MaxAge: 5 * time.Second, HasMaxAge: true}},
		{[]string{"private", "must-revalidate"}, CacheControl{Private: true, MustRevalidate: true}},
		{[]string{`no-cache="Set-Cookie, X-Foo", max-age=10`}, CacheControl{NoCache: true, MaxAge: 10 * time.Second, HasMaxAge: true}},
		{[]string{`private="set-cookie"`}, CacheControl{Private: true}},
		{[]string{"no-cache"}, CacheControl{NoCache: true}},
		{[]string{",,no-store,,"}, CacheControl{NoStore: true}},
		{[]string{"community=\"UCI\", no-transform"}, CacheControl{}},
		// Malformed delta-seconds leave the directive unset.
		{[]string{"max-age=-1"}, CacheControl{}},
		{[]string{"max-age=1.5"}, CacheControl{}},
		{[]string{"max-age="}, CacheControl{}},
		{[]string{"max-age"}, CacheControl{}},
		{[]string{"max-age=abc, s-maxage=x"}, CacheControl{}},
		{[]string{`max-age="60`}, CacheControl{MaxAge: 60 * time.Second, HasMaxAge: true}},
		{[]string{`max-age="6\`, "public"}, CacheControl{Public: true}},
		{[]string{`foo="\`, `private="\"`}, CacheControl{Private: true}},
		// The first well-formed occurrence wins.
		{[]string{"max-age=10, max-age=20"}, CacheControl{MaxAge: 10 * time.Second, HasMaxAge: true}},
		{[]string{"max-age=x", "max-age=20"}, CacheControl{MaxAge: 20 * time.Second, HasMaxAge: true}},
		{[]string{"max-age=0"}, CacheControl{HasMaxAge: true}},
		// RFC 9111 §1.2.2: beyond 2^31 seconds is 2^31 seconds.
		{[]string{"max-age=99999999999999999999999"}, CacheControl{MaxAge: maxDelta * time.Second, HasMaxAge: true}},
		// Unknown directives with quoted commas do not confuse the parser.
		{[]string{`foo="a, no-store", public`}, CacheControl{Public: true}},
		{[]string{"no-storex, xno-cache"}, CacheControl{}},
	}
	for _, tt := range tests {
		if got := ParseCacheControl(tt.in...); got != tt.want {
			t.Errorf("ParseCacheControl(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestLifetime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	date := now.Format(time.RFC1123)
	in := func(d time.Duration) string { return now.Add(d).UTC().Format(http1123) }
	cc := ParseCacheControl
	tests := []struct {
		name          string
		cc            CacheControl
		expires, date string
		def, max      time.Duration
		want          time.Duration
		ok            bool
	}{
		{"s-maxage first", cc("max-age=60, s-maxage=30"), in(time.Hour), date, time.Minute, time.Hour, 30 * time.Second, true},
		{"max-age over expires", cc("max-age=60"), in(time.Hour), date, 0, time.Hour, time.Minute, true},
		{"capped", cc("max-age=86400"), "", "", 0, 10 * time.Minute, 10 * time.Minute, true},
		{"no cap", cc("max-age=86400"), "", "", 0, 0, 24 * time.Hour, true},
		{"max-age=0", cc("max-age=0"), "", "", time.Minute, time.Hour, 0, false},
		{"expires minus date", CacheControl{}, in(90 * time.Second), in(-30 * time.Second), time.Minute, time.Hour, 2 * time.Minute, true},
		{"expires minus now", CacheControl{}, in(90 * time.Second), "", time.Minute, time.Hour, 90 * time.Second, true},
		{"bad date is now", CacheControl{}, in(90 * time.Second), "yesterday", time.Minute, time.Hour, 90 * time.Second, true},
		{"expires RFC 850", CacheControl{}, "Wednesday, 02-Dec-26 00:01:00 GMT", date, 0, time.Hour, time.Minute, true},
		{"expires asctime", CacheControl{}, "Wed Dec  2 00:01:00 2026", date, 0, time.Hour, time.Minute, true},
		{"expires past", CacheControl{}, in(-time.Second), date, time.Minute, time.Hour, 0, false},
		{"expires 0", CacheControl{}, "0", date, time.Minute, time.Hour, 0, false},
		{"expires garbage", CacheControl{}, "soon", date, time.Minute, time.Hour, 0, false},
		{"default", CacheControl{}, "", "", time.Minute, time.Hour, time.Minute, true},
		{"default capped", CacheControl{}, "", "", 2 * time.Hour, time.Hour, time.Hour, true},
		{"nothing", CacheControl{}, "", "", 0, time.Hour, 0, false},
		{"malformed max-age falls to def", cc("max-age=x"), "", "", time.Minute, time.Hour, time.Minute, true},
	}
	for _, tt := range tests {
		got, ok := Lifetime(tt.cc, tt.expires, tt.date, now, tt.def, tt.max)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: Lifetime = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

func TestParseAge(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"":                     0,
		"0":                    0,
		"60":                   time.Minute,
		" 60 ":                 time.Minute,
		"-1":                   0,
		"1.5":                  0,
		"x":                    0,
		"10, 5":                0,
		"99999999999999999999": maxDelta * time.Second,
	} {
		if got := ParseAge(in); got != want {
			t.Errorf("ParseAge(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestStorableStatus(t *testing.T) {
	t.Parallel()
	var got []int
	for c := 100; c < 600; c++ {
		if StorableStatus(c) {
			got = append(got, c)
		}
	}
	if want := []int{200, 203, 204, 301, 404, 410}; !slices.Equal(got, want) {
		t.Errorf("storable = %v, want %v", got, want)
	}
}

func TestParseVary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    []string
		names []string
		star  bool
	}{
		{nil, nil, false},
		{[]string{""}, nil, false},
		{[]string{"Accept-Encoding"}, []string{"accept-encoding"}, false},
		{[]string{"accept-language, Accept ,ACCEPT", "Accept-Encoding"}, []string{"accept", "accept-encoding", "accept-language"}, false},
		{[]string{"*"}, nil, true},
		{[]string{"accept, *"}, []string{"accept"}, true},
		{[]string{",, ,"}, nil, false},
	}
	for _, tt := range tests {
		names, star := ParseVary(tt.in...)
		if !slices.Equal(names, tt.names) || star != tt.star {
			t.Errorf("ParseVary(%q) = %q, %v; want %q, %v", tt.in, names, star, tt.names, tt.star)
		}
	}
}

func TestETagMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		inm, etag string
		want      bool
	}{
		// RFC 9110 §8.8.3.2's weak comparison table.
		{`W/"1"`, `W/"1"`, true},
		{`W/"1"`, `W/"2"`, false},
		{`W/"1"`, `"1"`, true},
		{`"1"`, `"1"`, true},
		{`"1"`, `W/"1"`, true},
		// Lists, with commas inside tags.
		{`"a", "b", "c"`, `"b"`, true},
		{`"a","b"`, `"c"`, false},
		{`"a,b", "c"`, `"a,b"`, true},
		{`"a,b"`, `"a"`, false},
		{` , W/"x" ,`, `"x"`, true},
		{`*`, `"x"`, true},
		{` * `, ``, true},
		{`"a", *`, `"x"`, true},
		{``, `"x"`, false},
		{`"x"`, ``, false},
		{`""`, `""`, true},
		{`"x`, `"x"`, false},
		// Unquoted, as some clients send: compared as given.
		{`abc`, `abc`, true},
		{`abc`, `"abc"`, false},
		{`w/"1"`, `"1"`, true},
	}
	for _, tt := range tests {
		if got := ETagMatches(tt.inm, tt.etag); got != tt.want {
			t.Errorf("ETagMatches(%q, %q) = %v, want %v", tt.inm, tt.etag, got, tt.want)
		}
	}
}

func TestHopByHop(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization"} {
		if !HopByHop(h, nil) {
			t.Errorf("HopByHop(%q) = false", h)
		}
	}
	for _, h := range []string{"content-type", "etag", "cache-control", "set-cookie", "trailers", "x-foo"} {
		if HopByHop(h, nil) {
			t.Errorf("HopByHop(%q) = true", h)
		}
	}
	conn := []string{"close, X-Foo", " x-bar "}
	for h, want := range map[string]bool{"x-foo": true, "x-bar": true, "close": true, "x-baz": false, "": false} {
		if got := HopByHop(h, conn); got != want {
			t.Errorf("HopByHop(%q, %q) = %v, want %v", h, conn, got, want)
		}
	}
}

func TestParseTags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tag, key []string
		want     []string
	}{
		{nil, nil, nil},
		{[]string{"a, b", " c ,a,, "}, nil, []string{"a", "b", "c"}},
		{nil, []string{"x  y\tz", "y"}, []string{"x", "y", "z"}},
		{[]string{"user-1, team-2"}, []string{"team-2 Team-2"}, []string{"user-1", "team-2", "Team-2"}},
		{[]string{"tag with space"}, nil, []string{"tag with space"}},
	}
	for _, tt := range tests {
		if got := ParseTags(tt.tag, tt.key); !slices.Equal(got, tt.want) {
			t.Errorf("ParseTags(%q, %q) = %q, want %q", tt.tag, tt.key, got, tt.want)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, path, query string }{
		{"/", "/", ""},
		{"/a/b", "/a/b", ""},
		{"/a?", "/a", ""},
		{"/a?b=1&c", "/a", "b=1&c"},
		{"/a?b=?x", "/a", "b=?x"},
		{"/a#frag", "/a", ""},
		{"/a?q#frag", "/a", "q"},
		{"", "", ""},
	}
	for _, tt := range tests {
		if p, q := SplitTarget(tt.in); p != tt.path || q != tt.query {
			t.Errorf("SplitTarget(%q) = %q, %q; want %q, %q", tt.in, p, q, tt.path, tt.query)
		}
	}
}

func TestCanonicalQuery(t *testing.T) {
	t.Parallel()
	ignore := []string{"utm_source", "fb clid"}
	tests := []struct{ in, want string }{
		{"", ""},
		{"a=1", "a=1"},
		{"b=2&a=1", "a=1&b=2"},
		{"a=2&a=1", "a=1&a=2"},
		{"a=1&&b=2&", "a=1&b=2"},
		{"&", ""},
		{"utm_source=x", ""},
		{"b=1&utm_source=x&a=2", "a=2&b=1"},
		{"utm%5Fsource=x&a=1", "a=1"},
		{"utm%5fsource&a=1", "a=1"},
		{"fb+clid=1&fb%20clid=2&z", "z"},
		{"utm_source2=x", "utm_source2=x"},
		{"UTM_SOURCE=x", "UTM_SOURCE=x"},
		{"x=utm_source", "x=utm_source"},
		// Kept parameters stay as written.
		{"q=a%20b&p=%7E", "p=%7E&q=a%20b"},
		{"%zz=1&%", "%&%zz=1"},
		{"flag&a=", "a=&flag"},
		// More parameters than fit on the stack.
		{"s=1&r=1&q=1&p=1&o=1&n=1&m=1&l=1&k=1&j=1&i=1&h=1&g=1&f=1&e=1&d=1&c=1&b=1&a=1",
			"a=1&b=1&c=1&d=1&e=1&f=1&g=1&h=1&i=1&j=1&k=1&l=1&m=1&n=1&o=1&p=1&q=1&r=1&s=1"},
	}
	for _, tt := range tests {
		if got := CanonicalQuery(tt.in, ignore); got != tt.want {
			t.Errorf("CanonicalQuery(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := CanonicalQuery("b&a", nil); got != "a&b" {
		t.Errorf("no ignore: %q", got)
	}
}

func TestSameHostPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		loc, host string
		path      string
		ok        bool
	}{
		{"/v1/users/7", "api.example.com", "/v1/users/7", true},
		{"/v1/users/7?x=1#f", "api.example.com", "/v1/users/7", true},
		{"https://api.example.com/v1/users/7?x", "api.example.com", "/v1/users/7", true},
		{"HTTP://API.Example.COM/a", "api.example.com:8080", "/a", true},
		{"https://api.example.com:443/a", "api.example.com", "/a", true},
		{"https://api.example.com:443/a", "api.example.com:443", "/a", true},
		{"https://api.example.com:8443/a", "api.example.com:443", "", false},
		{"https://api.example.com", "api.example.com", "/", true},
		{"https://api.example.com?q", "api.example.com", "/", true},
		{"https://api.example.com./a", "api.example.com", "/a", true},
		{"https://user@api.example.com/a", "api.example.com", "/a", true},
		{"//api.example.com/a", "api.example.com", "/a", true},
		{"//other.example.com/a", "api.example.com", "", false},
		{"https://other.example.com/a", "api.example.com", "", false},
		{"https://api.example.com.evil.com/a", "api.example.com", "", false},
		{"https://[::1]:8080/a", "[::1]:8080", "/a", true},
		{"https://[::1]/a", "::1", "/a", true},
		{"ftp://api.example.com/a", "api.example.com", "", false},
		{"mailto:a@api.example.com", "api.example.com", "", false},
		{"users/7", "api.example.com", "", false},
		{"../users/7", "api.example.com", "", false},
		{"", "api.example.com", "", false},
		{"https:///a", "api.example.com", "", false},
		{" /a ", "h", "/a", true},
	}
	for _, tt := range tests {
		path, ok := SameHostPath(tt.loc, tt.host)
		if path != tt.path || ok != tt.ok {
			t.Errorf("SameHostPath(%q, %q) = %q, %v; want %q, %v", tt.loc, tt.host, path, ok, tt.path, tt.ok)
		}
	}
}

func TestCacheStatus(t *testing.T) {
	t.Parallel()
	tests := []struct{ got, want string }{
		{CacheStatusHit(59900*time.Millisecond, false), "floodgate; hit; ttl=59"},
		{CacheStatusHit(time.Minute, true), "floodgate; hit; collapsed"},
		{CacheStatusHit(0, false), "floodgate; hit; ttl=0"},
		{CacheStatusHit(-5*time.Second, false), "floodgate; hit; ttl=0"},
		{CacheStatusHit(500*time.Millisecond, false), "floodgate; hit; ttl=0"},
		{CacheStatusFwd(FwdMiss, false), "floodgate; fwd=miss"},
		{CacheStatusFwd(FwdMiss, true), "floodgate; fwd=miss; stored"},
		{CacheStatusFwd(FwdBypass, false), "floodgate; fwd=bypass"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// The request path allocates nothing for parsing, and at most the result
// for a query that needs sorting.
func TestAllocs(t *testing.T) {
	values := []string{"public, max-age=3600", `s-maxage="60", must-revalidate`}
	if n := testing.AllocsPerRun(100, func() { ParseCacheControl(values...) }); n != 0 {
		t.Errorf("ParseCacheControl allocates %v times", n)
	}
	ignore := []string{"utm_source"}
	if n := testing.AllocsPerRun(100, func() { CanonicalQuery("a=1&b=2&c=3", ignore) }); n != 0 {
		t.Errorf("CanonicalQuery of a canonical query allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { CanonicalQuery("c=3&utm_source=x&b=2&a=1", ignore) }); n > 1 {
		t.Errorf("CanonicalQuery of an unsorted query allocates %v times, want at most 1", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		ETagMatches(`"a", W/"b"`, `"b"`)
		HopByHop("x-foo", []string{"close, x-foo"})
		SameHostPath("https://api.example.com/a?b", "api.example.com:443")
		ParseAge("60")
	}); n != 0 {
		t.Errorf("ETagMatches, HopByHop, SameHostPath, ParseAge allocate %v times", n)
	}
}

func BenchmarkParseCacheControl(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ParseCacheControl("public, max-age=3600, s-maxage=600", `no-cache="set-cookie"`)
		}
	})
}

func BenchmarkCanonicalQuery(b *testing.B) {
	ignore := []string{"utm_source", "utm_medium"}
	for _, bc := range []struct{ name, query string }{
		{"canonical", "limit=20&page=2&sort=name"},
		{"unsorted", "sort=name&utm_source=news&page=2&limit=20&utm_medium=email"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					CanonicalQuery(bc.query, ignore)
				}
			})
		})
	}
}
