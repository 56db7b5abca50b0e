package sidecar

import "github.com/floodgate/floodgate/pkg/descriptors"

// SetLimitsLoader replaces how m reads its limits config (before Start), so
// that a test can hold a reload in its loader.
func SetLimitsLoader(m *Main, load func(path string) (*descriptors.Config, error)) {
	m.loadLimits = load
}
