package authsvc

import (
	"context"
	"errors"
	"time"

	"github.com/floodgate/floodgate/pkg/authconfig"
)

// This file is the door's one seam onto the packages written beside it:
// pkg/authconfig's Config.Match, KeySet.Lookup and Template.Append, and
// pkg/jwtauth's Verifier and Result. On this branch those do not exist
// yet, so the calls go through interfaces asserted at SetConfig; once
// they are merged, each function below becomes a direct call (and
// TokenResult an alias of jwtauth.Result, errInvalidToken
// jwtauth.ErrInvalid), and the compiler checks the signatures.

// TokenResult is what a verified token yields (jwtauth.Result).
type TokenResult struct {
	Issuer, Subject    string
	Tenant, Tier, User string
	Expiry             time.Time
	Claims             map[string]any
}

// TokenVerifier verifies a bearer token: *jwtauth.Verifier. An error that
// wraps ErrInvalidToken is the client's (invalid-credentials); any other
// error is the verifier's own failure.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*TokenResult, error)
}

// ErrInvalidToken is what a TokenVerifier's error wraps when the token is
// invalid (jwtauth.ErrInvalid).
var ErrInvalidToken = errors.New("invalid token")

// policies finds the request's policy: (*authconfig.Config).Match.
type policies interface {
	Match(host, path, method string) *authconfig.Policy
}

// keyLookup finds an API key's entry, nil when unknown or expired at now:
// (*authconfig.KeySet).Lookup.
type keyLookup interface {
	Lookup(key string, now time.Time) *authconfig.Key
}

// appender renders a template's value: (*authconfig.Template).Append.
type appender interface {
	Append(b []byte, v *authconfig.Vars) []byte
}

// configFuncs are the calls into pkg/authconfig. Tests give stand-ins.
type configFuncs struct {
	match  func(c *authconfig.Config, host, path, method string) *authconfig.Policy
	lookup func(ks *authconfig.KeySet, key string, now time.Time) *authconfig.Key
	render func(t *authconfig.Template, b []byte, v *authconfig.Vars) []byte
}

// authconfigFuncs calls pkg/authconfig's own methods.
var authconfigFuncs = configFuncs{
	match: func(c *authconfig.Config, host, path, method string) *authconfig.Policy {
		if m, ok := any(c).(policies); ok {
			return m.Match(host, path, method)
		}
		return nil
	},
	lookup: func(ks *authconfig.KeySet, key string, now time.Time) *authconfig.Key {
		if l, ok := any(ks).(keyLookup); ok && ks != nil {
			return l.Lookup(key, now)
		}
		return nil
	},
	render: func(t *authconfig.Template, b []byte, v *authconfig.Vars) []byte {
		if a, ok := any(t).(appender); ok {
			return a.Append(b, v)
		}
		return b
	},
}

// missingMethods says which of authconfig's calls this build lacks, so
// that SetConfig can log it instead of denying everything in silence.
func missingMethods() []string {
	var missing []string
	if _, ok := any((*authconfig.Config)(nil)).(policies); !ok {
		missing = append(missing, "(*authconfig.Config).Match(host, path, method string) *authconfig.Policy")
	}
	if _, ok := any((*authconfig.KeySet)(nil)).(keyLookup); !ok {
		missing = append(missing, "(*authconfig.KeySet).Lookup(key string, now time.Time) *authconfig.Key")
	}
	if _, ok := any((*authconfig.Template)(nil)).(appender); !ok {
		missing = append(missing, "(*authconfig.Template).Append(b []byte, v *authconfig.Vars) []byte")
	}
	return missing
}
