// Package e2e tests Floodgate as users run it: the real sidecar binary, built
// once per test run, started as a process on loopback ports, fed the
// descriptors that the Envoy configs in envoy/ send, against real
// redis-server processes. It holds no code outside its tests.
//
// Run it with `make e2e` (go test -race -count=1 ./e2e/...). The Docker test
// (sidecar image, Envoy and Redis in containers) needs the build tag docker:
// `make e2e-docker`; without a Docker engine it skips.
package e2e
