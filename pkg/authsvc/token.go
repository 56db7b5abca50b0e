package authsvc

import (
	"context"

	"github.com/floodgate/floodgate/pkg/jwtauth"
)

// TokenResult is what a verified token yields.
type TokenResult = jwtauth.Result

// TokenVerifier verifies a bearer token: *jwtauth.Verifier. An error that
// wraps ErrInvalidToken is the client's (invalid-credentials); any other
// error is the verifier's own failure.
// Cached answers from the verifier's cache of tokens verified before,
// with no I/O and no signature check; false is no verdict (Verify then).
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*TokenResult, error)
	Cached(token string) (*TokenResult, bool)
}

// ErrInvalidToken is what a TokenVerifier's error wraps when the token is
// invalid.
var ErrInvalidToken = jwtauth.ErrInvalid

var _ TokenVerifier = (*jwtauth.Verifier)(nil)
