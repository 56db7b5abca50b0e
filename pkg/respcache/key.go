package respcache

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/floodgate/floodgate/pkg/cacheconfig"
	"github.com/floodgate/floodgate/pkg/httpcache"
)

// Identity is the verified identity Envoy forwards from ext_authz
// (the envoy.filters.http.ext_authz dynamic metadata), the only source of
// it: request headers never are.
type Identity struct {
	Auth, Issuer, Tenant, User, KeyID, Subject string
}

// scopeParts is what a scope adds to the key, or ok false when the
// identity does not have it (the request bypasses the cache).
func scopeParts(s cacheconfig.Scope, id *Identity) (parts [4]string, ok bool) {
	switch s {
	case cacheconfig.Public:
		return parts, true
	case cacheconfig.Tenant:
		if id == nil || id.Tenant == "" {
			return parts, false
		}
		return [4]string{id.Auth, id.Issuer, id.Tenant}, true
	case cacheconfig.User:
		if id == nil {
			return parts, false
		}
		who := id.User
		if who == "" {
			who = "k:" + id.KeyID
			if id.KeyID == "" {
				who = "s:" + id.Subject
				if id.Subject == "" {
					return parts, false
				}
			}
		} else {
			who = "u:" + who
		}
		return [4]string{id.Auth, id.Issuer, id.Tenant, who}, true
	}
	return parts, false
}

// primary is the digest of everything in a request's key but host, path
// and Vary: the rule and its scope, the canonical query, the rule's key
// headers and the scope's identity. Each part is length-prefixed, so no
// two distinct keys share an encoding.
func primary(r *rule, query string, header []Header, scope [4]string) string {
	h := sha256.New()
	var buf [64]byte
	put := func(s string) {
		h.Write(strconv.AppendInt(buf[:0], int64(len(s)), 10))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	put(r.Name)
	put(r.Scope.String())
	put(httpcache.CanonicalQuery(query, r.IgnoreQuery))
	for _, name := range r.KeyHeaders {
		put(name)
		n := 0
		for _, f := range header {
			if f.Name == name {
				put(f.Value)
				n++
			}
		}
		put(strconv.Itoa(n))
	}
	for _, p := range scope {
		put(p)
	}
	sum := h.Sum(buf[:0])
	return hex.EncodeToString(sum[:16])
}
