#!/usr/bin/env bash
# Runs every fuzz target of the module, one after the other (go test takes
# one -fuzz target per invocation), each for $FUZZTIME (default 10s), and
# fails if any fails. Targets are found by grepping the *_test.go files for
# `func FuzzX(`; FUZZ_FILTER (an extended regexp) keeps only the targets
# whose "DIR FuzzX" matches. A failing input is written by go test under
# the package's testdata/fuzz/FuzzX/: keep it there as a regression seed.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
FUZZ_FILTER=${FUZZ_FILTER:-.}
# Go minimizes every new interesting input for up to a minute by default,
# which stalls a short run on targets whose executions are slow (a gRPC
# stream, a YAML document); a few seconds keep the runs fuzzing.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-3s}

targets=$(grep -rHo --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(' . |
	sed -E 's#^\./(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($#\1 \2#' |
	sort -u | grep -E -- "$FUZZ_FILTER" || true)
if [ -z "$targets" ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
n=$(printf '%s\n' "$targets" | wc -l)
echo "fuzz: $n targets, $FUZZTIME each"
failed=()
start=$SECONDS
while read -r dir name; do
	echo "fuzz: ./$dir $name"
	if ! $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "./$dir"; then
		failed+=("./$dir $name")
	fi
done <<<"$targets"
echo "fuzz: $n targets in $((SECONDS - start))s"
if [ ${#failed[@]} -gt 0 ]; then
	printf 'fuzz: FAILED %s\n' "${failed[@]}" >&2
	exit 1
fi
