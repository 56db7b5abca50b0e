# The soak (hack/soak/run.sh), included by the Makefile: the built sidecar
# under moderate load on all three doors for an hour, sampled, plotted and
# judged. See docs/reliability.md, "Soak".

.PHONY: soak

SOAK_DURATION ?= 1h
SOAK_BACKEND  ?= redis
SOAK_SAMPLE   ?= 10s
SOAK_WARMUP   ?= 2m
SOAK_OUT      ?= bin/soak

## soak: SOAK_DURATION (1h) of steady load on the built sidecar with a
##      redis-server of its own (SOAK_BACKEND=memory: none), sampled every
##      SOAK_SAMPLE into SOAK_OUT (bin/soak/): samples.csv, plot.svg,
##      summary.txt; fails when goroutines, fds or RSS grow or errors occur.
soak: deps
	$(GO) build -o bin/sidecar ./cmd/sidecar
	$(GO) build -o bin/loadgen ./cmd/loadgen
	$(GO) build -o bin/soaktool ./hack/soak
	SOAK_DURATION=$(SOAK_DURATION) SOAK_BACKEND=$(SOAK_BACKEND) SOAK_SAMPLE=$(SOAK_SAMPLE) \
		SOAK_WARMUP=$(SOAK_WARMUP) SOAK_OUT=$(SOAK_OUT) hack/soak/run.sh
