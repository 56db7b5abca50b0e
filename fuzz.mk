# Fuzzing (go test -fuzz), included by the Makefile. hack/fuzz.sh finds every
# `func FuzzX` in the module's *_test.go files and runs them one at a time.

FUZZTIME ?= 10s

.PHONY: fuzz

## fuzz: every fuzz target in turn, each for FUZZTIME (default 10s; CI uses
##      5s); FUZZ_FILTER (a regexp on "DIR FuzzX") picks some. A failing
##      input lands in the package's testdata/fuzz/FuzzX/: keep it as a seed.
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) hack/fuzz.sh
