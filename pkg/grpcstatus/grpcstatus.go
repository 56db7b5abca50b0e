// Package grpcstatus maps the errors of the engine and of the doors'
// request validation to gRPC statuses: the one place that does, so every
// door answers alike.
package grpcstatus

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/pkg/engine"
)

// InvalidError marks a malformed request; its message is the reason given
// to the client.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return e.Reason }

// Invalidf returns an *InvalidError with a formatted reason.
func Invalidf(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// FromError returns the gRPC status error for err (nil for nil). Only an
// InvalidError's reason reaches the client; any other error becomes a fixed
// message, since its cause is logged where it happened and must not leak
// internals (addresses, script errors) to callers.
func FromError(err error) error {
	if err == nil {
		return nil
	}
	var inv *InvalidError
	switch {
	case errors.As(err, &inv):
		return status.Error(codes.InvalidArgument, inv.Reason)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled by the caller")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, engine.ErrUnavailable):
		return status.Error(codes.Unavailable, engine.ErrUnavailable.Error())
	case errors.Is(err, ErrNoConfig):
		return status.Error(codes.Unavailable, ErrNoConfig.Error())
	}
	return status.Error(codes.Internal, "internal error")
}

// ErrNoConfig is returned by a door asked before its first config loaded:
// UNAVAILABLE, so Envoy retries elsewhere or applies its failure mode.
var ErrNoConfig = errors.New("no config loaded yet")
