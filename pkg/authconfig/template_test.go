package authconfig

import (
	"slices"
	"strings"
	"testing"
)

func TestTemplates(t *testing.T) {
	t.Parallel()
	id := &Identity{Tenant: "acme", Tier: "pro", User: "bob", KeyID: "k1", Subject: "s", Issuer: "https://i",
		ClientIP: "203.0.113.7", Auth: "api_key"}
	v := &Vars{Identity: id, Method: "GET", Host: "api.example.com", Path: "/v1/x",
		Header: func(n string) string {
			if n == "user-agent" {
				return "curl"
			}
			return ""
		},
		Claim: func(n string) string {
			if n == "org" {
				return "o1"
			}
			return ""
		},
	}
	tests := []struct {
		src, want string
		empty     bool
	}{
		{"%tenant%", "acme", false},
		{"%tier%/%user%/%key_id%/%subject%/%issuer%", "pro/bob/k1/s/https://i", false},
		{"%client_ip%|%auth%|%method%|%host%|%path%", "203.0.113.7|api_key|GET|api.example.com|/v1/x", false},
		{"%header:User-Agent%", "curl", false},
		{"%claim:org%", "o1", false},
		{"100%% of %tenant%", "100% of acme", false},
		{"%%", "%", false},
		{"global", "global", false},
		{"ua-%header:x-missing%", "ua-", true}, // a field that comes out empty empties the value
		{"%claim:none%", "", true},
	}
	for _, tt := range tests {
		tpl, err := compileTemplate("k", tt.src)
		if err != nil {
			t.Errorf("compile %q: %v", tt.src, err)
			continue
		}
		if got := string(tpl.Append([]byte("x="), v)); got != "x="+tt.want {
			t.Errorf("%q renders %q, want %q", tt.src, got, "x="+tt.want)
		}
		if got := tpl.Empty(v); got != tt.empty {
			t.Errorf("%q: Empty = %v, want %v", tt.src, got, tt.empty)
		}
		b, ok := tpl.AppendValue([]byte("x="), v)
		if ok == tt.empty || (ok && string(b) != "x="+tt.want) || (!ok && string(b) != "x=") {
			t.Errorf("%q: AppendValue = %q, %v", tt.src, b, ok)
		}
		if tpl.String() != tt.src {
			t.Errorf("String %q", tpl.String())
		}
	}
	// Without an identity (auth: none) or header and claim functions,
	// fields are empty.
	tpl, _ := compileTemplate("k", "%tenant%%header:a%%claim:b%")
	if got := tpl.Append(nil, &Vars{}); len(got) != 0 || !tpl.Empty(&Vars{}) {
		t.Errorf("empty vars render %q", got)
	}
	if f := tpl.Fields(); !slices.Equal(f, []Field{FieldTenant, FieldHeader, FieldClaim}) {
		t.Errorf("Fields %v", f)
	}
}

func TestTemplateErrors(t *testing.T) {
	t.Parallel()
	for src, want := range map[string]string{
		"%tennant%":        "unknown field %tennant% (did you mean %tenant%?)",
		"%foo%":            "unknown field %foo%; allowed:",
		"%tenant":          "'%' at offset 0 opens a field that is never closed",
		"50% %tenant%":     "'%' at offset 2 starts no field",
		"%header:%":        "%header:NAME% needs a header name",
		"%header:a b%":     "'%' at offset 0 starts no field",
		"%header:a(b)%":    "needs a header name",
		"%claim:%":         "%claim:NAME% needs a claim name",
		"%Tenant%":         "unknown field %Tenant% (did you mean %tenant%?)",
		"%header%":         "unknown field %header%",
		"%tenant%%":        "'%' at offset 8 opens a field that is never closed",
		"%cookie:session%": "unknown field %cookie:session%",
	} {
		_, err := compileTemplate("k", src)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("compile %q: %v, want …%s…", src, err, want)
		}
	}
}

func TestTemplateAppendDoesNotAllocate(t *testing.T) {
	tpl, err := compileTemplate("k", "%tenant%:%header:x-a%:%path%")
	if err != nil {
		t.Fatal(err)
	}
	v := &Vars{Identity: &Identity{Tenant: "acme"}, Path: "/p", Header: func(string) string { return "h" }}
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = tpl.Append(buf[:0], v)
		_ = tpl.Empty(v)
		buf, _ = tpl.AppendValue(buf[:0], v)
	})
	if allocs != 0 || string(buf) != "acme:h:/p" {
		t.Errorf("Append allocates %v times, renders %q", allocs, buf)
	}
}
