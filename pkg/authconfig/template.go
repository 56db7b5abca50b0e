package authconfig

import (
	"fmt"
	"strings"

	"github.com/floodgate/floodgate/internal/yamlconf"
)

// Template syntax: literal text with fields written %NAME%; %% is a literal
// '%'. A '%' that opens no known field, or is never closed, is an error, so
// a typo never becomes a literal that every request shares.

// fieldNames maps the names written between '%' to fields; header and
// claim take a name after ':'.
var fieldNames = map[string]Field{
	"tenant":    FieldTenant,
	"tier":      FieldTier,
	"user":      FieldUser,
	"key_id":    FieldKeyID,
	"subject":   FieldSubject,
	"issuer":    FieldIssuer,
	"client_ip": FieldClientIP,
	"auth":      FieldAuth,
	"method":    FieldMethod,
	"host":      FieldHost,
	"path":      FieldPath,
}

const allowedTemplateFields = "%tenant%, %tier%, %user%, %key_id%, %subject%, %issuer%, %client_ip%, %auth%, %method%, %host%, %path%, %header:NAME%, %claim:NAME% (%% for a literal %)"

// compileTemplate compiles a template's text; the error says what is wrong
// (without the file position, which the caller adds).
func compileTemplate(key, src string) (Template, error) {
	t := Template{Key: key, src: src}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{field: FieldLiteral, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(src); {
		c := src[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(src) && src[i+1] == '%' {
			lit.WriteByte('%')
			i += 2
			continue
		}
		end := strings.IndexByte(src[i+1:], '%')
		if end < 0 {
			return Template{}, fmt.Errorf("'%%' at offset %d opens a field that is never closed; write %%%% for a literal '%%'", i)
		}
		name := src[i+1 : i+1+end]
		if strings.ContainsAny(name, " \t\r\n") {
			return Template{}, fmt.Errorf("'%%' at offset %d starts no field (fields are written %%name%%); write %%%% for a literal '%%'", i)
		}
		i += end + 2
		pt, err := templateField(name)
		if err != nil {
			return Template{}, err
		}
		flush()
		t.parts = append(t.parts, pt)
	}
	flush()
	return t, nil
}

func templateField(name string) (part, error) {
	if f, ok := fieldNames[name]; ok {
		return part{field: f}, nil
	}
	kind, arg, hasArg := strings.Cut(name, ":")
	switch {
	case hasArg && kind == "header":
		if arg == "" || !isToken(arg) {
			return part{}, fmt.Errorf("%%header:NAME%% needs a header name (letters, digits and !#$&'*+-.^_`|~), found %q", arg)
		}
		return part{field: FieldHeader, text: strings.ToLower(arg)}, nil
	case hasArg && kind == "claim":
		if arg == "" {
			return part{}, fmt.Errorf("%%claim:NAME%% needs a claim name")
		}
		return part{field: FieldClaim, text: arg}, nil
	}
	msg := fmt.Sprintf("unknown field %%%s%%", name)
	if s := yamlconf.Suggest(name, templateFieldList); s != "" {
		msg += fmt.Sprintf(" (did you mean %%%s%%?)", s)
	}
	return part{}, fmt.Errorf("%s; allowed: %s", msg, allowedTemplateFields)
}

var templateFieldList = []string{"tenant", "tier", "user", "key_id", "subject", "issuer", "client_ip", "auth",
	"method", "host", "path", "header:", "claim:"}

// isToken says whether s is an HTTP field name (RFC 9110 token).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 && c != '%':
		default:
			return false
		}
	}
	return s != ""
}

// String returns the template's source text.
func (t *Template) String() string { return t.src }

// Fields reports the fields the template names, in order (no literals).
func (t *Template) Fields() []Field {
	var out []Field
	for _, p := range t.parts {
		if p.field != FieldLiteral {
			out = append(out, p.field)
		}
	}
	return out
}

// value is one part's rendered value.
func (p *part) value(v *Vars) string {
	id := v.Identity
	if id == nil {
		id = &noIdentity
	}
	switch p.field {
	case FieldLiteral:
		return p.text
	case FieldTenant:
		return id.Tenant
	case FieldTier:
		return id.Tier
	case FieldUser:
		return id.User
	case FieldKeyID:
		return id.KeyID
	case FieldSubject:
		return id.Subject
	case FieldIssuer:
		return id.Issuer
	case FieldClientIP:
		return id.ClientIP
	case FieldAuth:
		return id.Auth
	case FieldMethod:
		return v.Method
	case FieldHost:
		return v.Host
	case FieldPath:
		return v.Path
	case FieldHeader:
		if v.Header != nil {
			return v.Header(p.text)
		}
	case FieldClaim:
		if v.Claim != nil {
			return v.Claim(p.text)
		}
	}
	return ""
}

var noIdentity Identity

// Append appends the rendered value to b and returns the extended slice; it
// allocates only when b must grow.
func (t *Template) Append(b []byte, v *Vars) []byte {
	for i := range t.parts {
		b = append(b, t.parts[i].value(v)...)
	}
	return b
}

// Empty says whether the value comes out empty for v: when it renders
// empty, and also when any field it names renders empty, so that
// "user-%user%" without a user is left out (as the door leaves out a
// descriptor with an empty entry) rather than counted under "user-" for
// everyone.
func (t *Template) Empty(v *Vars) bool {
	if len(t.parts) == 0 {
		return true
	}
	for i := range t.parts {
		if t.parts[i].field != FieldLiteral && t.parts[i].value(v) == "" {
			return true
		}
	}
	return false
}

// AppendValue is Append and Empty in one pass: it appends the rendered
// value and reports ok false when the value comes out empty (see Empty);
// b is then returned as it was given.
func (t *Template) AppendValue(b []byte, v *Vars) (out []byte, ok bool) {
	if len(t.parts) == 0 {
		return b, false
	}
	n := len(b)
	for i := range t.parts {
		s := t.parts[i].value(v)
		if s == "" && t.parts[i].field != FieldLiteral {
			return b[:n], false
		}
		b = append(b, s...)
	}
	return b, true
}
