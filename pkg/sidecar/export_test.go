package sidecar

import (
	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/descriptors"
)

// SetLimitsLoader replaces how m reads its limits config (before Start), so
// that a test can hold a reload in its loader.
func SetLimitsLoader(m *Main, load func(path string) (*descriptors.Config, error)) {
	m.loadLimits = load
}

// SetAuthLoader replaces how m reads its auth config (before Start).
func SetAuthLoader(m *Main, load func(path string) (*authconfig.Config, error)) {
	m.loadAuth = load
}

// AuthConfig is the auth config in force, nil before one loaded or
// without --auth-config.
func AuthConfig(m *Main) *authconfig.Config {
	if m.authSrc == nil {
		return nil
	}
	snap := m.authSrc.Snapshot()
	if !snap.Loaded {
		return nil
	}
	return snap.Config.cfg
}

// ConfigInForce is the config that source ("limits", "auth" or "cache")
// has in force (a pointer: a reload that fails leaves it the same), or nil.
func ConfigInForce(m *Main, source string) any {
	switch {
	case source == "limits" && m.limits != nil && m.limits.Snapshot().Loaded:
		return m.limits.Snapshot().Config
	case source == "auth" && m.authSrc != nil && m.authSrc.Snapshot().Loaded:
		return m.authSrc.Snapshot().Config
	case source == "cache" && m.cacheSrc != nil && m.cacheSrc.Snapshot().Loaded:
		return m.cacheSrc.Snapshot().Config
	}
	return nil
}

// Tracing says whether m built a tracer provider (and so installed the
// gRPC stats handler).
func Tracing(m *Main) bool { return m.tracing != nil }
