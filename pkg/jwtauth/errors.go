package jwtauth

import "errors"

// ErrInvalid is what every rejected token's error wraps: test it with
// errors.Is. The error's text adds a reason meant for logs; a reason never
// holds the token or any part of it (not even a claim or header value the
// token carries), only fixed words and configured names.
var ErrInvalid = errors.New("invalid token")

// invalidError is a rejection with its reason, and for the few reasons
// that have one (a cancelled wait for a key set), a cause.
type invalidError struct {
	reason string
	cause  error
}

func (e *invalidError) Error() string { return "invalid token: " + e.reason }

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func (e *invalidError) Unwrap() error { return e.cause }

func invalid(reason string) error { return &invalidError{reason: reason} }

// Reasons that need no issuer name are built once.
var (
	errTooLarge     = invalid("token too large")
	errMalformed    = invalid("malformed token")
	errBadHeader    = invalid("malformed header")
	errBadPayload   = invalid("malformed claims")
	errNoIssuer     = invalid("no iss claim")
	errUnknownIss   = invalid("unknown issuer")
	errUnsupported  = invalid("unsupported header (b64 or crit)")
	errMultipleSigs = invalid("not a single-signature compact JWS")
)
