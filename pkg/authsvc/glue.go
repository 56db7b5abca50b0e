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
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*TokenResult, error)
}

// ErrInvalidToken is what a TokenVerifier's error wraps when the token is
// invalid.
var ErrInvalidToken = jwtauth.ErrInvalid

var _ TokenVerifier = (*jwtauth.Verifier)(nil)
