# End-to-end tests (e2e/), included by the Makefile. They build the sidecar
# binary and run it as users do, against real redis-server processes on
# loopback (make deps installs redis-server when it is missing).

.PHONY: e2e e2e-docker

## e2e: the real binary: Envoy's descriptors, hot reload, Redis outage,
##      SIGTERM under load, two sidecars on one Redis, validate and check,
##      the auth door, and the response cache over ext_proc streams (memory
##      and Redis stores, two sidecars sharing one Redis).
e2e: deps
	$(GO) test -race -count=1 ./e2e/...

## e2e-docker: the same plus the Docker test (the sidecar image from the
##      Dockerfile, Envoy, Redis and an app in containers); without a Docker
##      engine that test skips. Building the image takes minutes.
e2e-docker: deps
	$(GO) test -race -count=1 -timeout 30m -tags docker ./e2e/...
