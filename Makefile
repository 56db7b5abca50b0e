# Floodgate: the two commands a new user needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/sidecar
CONFIG  ?= examples/config.yaml
# Tests run with the race detector and in shuffled order.
TESTFLAGS ?= -race -shuffle=on -timeout 15m

.PHONY: all build run test test-unit e2e bench lint deps tidy clean fresh-check

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sidecar

## run: start the sidecar on the embedded memory backend with the example config
##      (gRPC on :8081, HTTP on :8080).
run: build
	./$(BIN) serve --config $(CONFIG)

## deps: install what the tests need (redis-server, memcached) when it is missing.
deps:
	@command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && command -v memcached >/dev/null 2>&1 || { \
		echo "installing redis-server and memcached with apt-get (the tests run real Redis and memcached on loopback)"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		if [ -n "$$SUDO" ] && ! command -v sudo >/dev/null 2>&1; then \
			echo "redis-server or memcached is missing: run this as root, or install sudo" >&2; exit 1; fi; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server memcached >/dev/null; }
	@redis-server --version
	@memcached -V

## test: install test dependencies, vet, and run every test with -race.
test: deps
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...
	# Allocation counts need a build without the race detector.
	$(GO) test -count=1 -run 'Alloc' ./pkg/...

## bench: in-process benchmarks (memory backend, matcher, Redis backend).
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./pkg/...

## lint: formatting, vet and a tidy module.
lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff

## fresh-check: `make test` from a clone of HEAD in a fresh Debian root where
##      nothing is installed (needs root; the root is built once with
##      debootstrap and cached). FRESHFLAGS: --with-shared (../shared beside
##      the clone, CI=true), --as-user (a non-root user with sudo), --target T.
fresh-check:
	hack/freshroot/run.sh $(FRESHFLAGS)

clean:
	rm -rf bin

# End-to-end (e2e/) and Kubernetes (k8s/) targets live beside this file.
-include e2e.mk k8s.mk soak.mk ui.mk chaos.mk fuzz.mk
