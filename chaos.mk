# The fault suite (e2e/chaos_test.go, build tag chaos), included by the
# Makefile. It runs the built sidecar against real redis-server processes
# (standalone, a Cluster with replicas, Sentinel; Sentinel runs as
# `redis-server --sentinel`, so `make deps` has all it needs) under load,
# injects faults (SIGSTOP, SIGKILL, failovers, latency and stalls through
# internal/faultproxy, an empty restart) and writes what it measured to
# $(CHAOS_OUT): chaos.json, chaos.md (the tables) and chaos.log. It exits
# non-zero when a target is missed. CHAOS_RUN picks scenarios by name
# (a regular expression over a-stall, b-cluster-kill, c-sentinel-failover,
# d-proxy-latency, e-restart-empty, f-nearcache, f-respcache, g-exactness).

.PHONY: chaos

CHAOS_RUN ?= .
CHAOS_OUT ?= $(CURDIR)/bin/chaos

## chaos: the fault suite; results in bin/chaos/ (about 2 minutes, plus the
##      build). `make chaos CHAOS_RUN=a-stall` runs one scenario.
chaos: deps build
	@mkdir -p $(CHAOS_OUT)
	@echo "fault suite: results in $(CHAOS_OUT)"
	@CHAOS_OUT=$(CHAOS_OUT) $(GO) test -tags chaos -count=1 -timeout 20m -run 'TestChaos/$(CHAOS_RUN)' ./e2e/ >$(CHAOS_OUT)/chaos.log 2>&1; rc=$$?; \
		cat $(CHAOS_OUT)/chaos.md 2>/dev/null; \
		if [ $$rc != 0 ]; then grep -E 'target missed|FAIL|panic' $(CHAOS_OUT)/chaos.log | head -40; echo "fault suite failed (exit $$rc); log: $(CHAOS_OUT)/chaos.log" >&2; exit $$rc; fi
