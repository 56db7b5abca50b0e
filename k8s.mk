# Kubernetes targets, included by the Makefile.
#
#   make test-k8s    the manifests against a real API server: installs etcd
#                    (Debian's etcd-server) when missing, builds kube-apiserver
#                    once into $(KUBE_APISERVER_CACHE) (about 7 minutes cold,
#                    at the lowest CPU priority), then runs the k8s tests with
#                    the k8sapi build tag. `make test` runs the same package
#                    without the tag: manifests built, decoded and checked,
#                    no API server.
GO                   ?= go
KUBE_VERSION         ?= v1.37.2
KUBE_APISERVER_CACHE ?= $(HOME)/.cache/floodgate
K8S_TESTFLAGS        ?= -race -count=1 -timeout 30m

.PHONY: test-k8s k8s-deps kube-apiserver

## k8s-deps: install etcd (for the API-server test) when it is missing.
k8s-deps:
	@command -v etcd >/dev/null 2>&1 || { \
		echo "installing etcd-server with apt-get (the API-server test runs etcd on loopback)"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		if [ -n "$$SUDO" ] && ! command -v sudo >/dev/null 2>&1; then \
			echo "etcd-server is missing: run this as root, or install sudo" >&2; exit 1; fi; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
	@etcd --version | head -1

## kube-apiserver: build (or find in the cache) kube-apiserver $(KUBE_VERSION).
kube-apiserver:
	@KUBE_VERSION=$(KUBE_VERSION) KUBE_APISERVER_CACHE=$(KUBE_APISERVER_CACHE) GO=$(GO) hack/kube-apiserver/build.sh

## test-k8s: the manifests and the injection webhook against etcd + kube-apiserver.
test-k8s: k8s-deps
	KUBE_APISERVER="$$(KUBE_VERSION=$(KUBE_VERSION) KUBE_APISERVER_CACHE=$(KUBE_APISERVER_CACHE) GO=$(GO) hack/kube-apiserver/build.sh)" \
		$(GO) test -tags k8sapi $(K8S_TESTFLAGS) ./k8s/... ./pkg/inject/...
