package authsvc_test

import (
	"crypto/sha256"
	"strings"
	"time"
	"unsafe"

	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/authsvc"
)

// The smallest stand-ins for pkg/authconfig's Config.Match, KeySet.Lookup
// and Template.Append, which are written in parallel: enough of the
// contract's meaning for the door's tests. A KeySet and a Template's
// parts cannot be built outside pkg/authconfig, so keys live in a map by
// digest and templates' texts in a map by entry key.
type standIns struct {
	keys map[[32]byte]*authconfig.Key
	tpls map[string]string // entry key → value template
}

func (s *standIns) funcs() authsvc.StandIns {
	return authsvc.StandIns{Match: match, Lookup: s.lookup, Render: s.render}
}

func match(c *authconfig.Config, host, path, method string) *authconfig.Policy {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	host = strings.ToLower(host)
	for _, p := range c.Policies {
		if !strings.HasPrefix(path, p.PathPrefix) {
			continue
		}
		if len(p.Methods) > 0 && !containsFold(p.Methods, method) {
			continue
		}
		if len(p.Hosts) > 0 && !hostMatches(p.Hosts, host) {
			continue
		}
		return p
	}
	return nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func hostMatches(hosts []string, host string) bool {
	for _, h := range hosts {
		h = strings.ToLower(h)
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return true
			}
		} else if h == host {
			return true
		}
	}
	return false
}

func (s *standIns) lookup(_ *authconfig.KeySet, key string, now time.Time) *authconfig.Key {
	// Hashed in place: a key is longer than the 32 bytes a []byte
	// conversion may take on the stack, and Lookup need not allocate.
	k := s.keys[sha256.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))]
	if k == nil || (!k.Expires.IsZero() && !now.Before(k.Expires)) {
		return nil
	}
	return k
}

func (s *standIns) render(t *authconfig.Template, b []byte, v *authconfig.Vars) []byte {
	text := s.tpls[t.Key]
	for text != "" {
		i := strings.IndexByte(text, '%')
		if i < 0 {
			return append(b, text...)
		}
		b = append(b, text[:i]...)
		text = text[i+1:]
		j := strings.IndexByte(text, '%')
		name := text[:j]
		text = text[j+1:]
		id := v.Identity
		switch {
		case name == "tenant":
			b = append(b, id.Tenant...)
		case name == "tier":
			b = append(b, id.Tier...)
		case name == "user":
			b = append(b, id.User...)
		case name == "key_id":
			b = append(b, id.KeyID...)
		case name == "subject":
			b = append(b, id.Subject...)
		case name == "issuer":
			b = append(b, id.Issuer...)
		case name == "client_ip":
			b = append(b, id.ClientIP...)
		case name == "auth":
			b = append(b, id.Auth...)
		case name == "method":
			b = append(b, v.Method...)
		case name == "host":
			b = append(b, v.Host...)
		case name == "path":
			b = append(b, v.Path...)
		case strings.HasPrefix(name, "header:"):
			b = append(b, v.Header(name[len("header:"):])...)
		case strings.HasPrefix(name, "claim:"):
			b = append(b, v.Claim(name[len("claim:"):])...)
		}
	}
	return b
}
