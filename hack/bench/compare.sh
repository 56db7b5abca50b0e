#!/usr/bin/env bash
# compare.sh: CPU per decision of two sidecar builds side by side with the
# floor (a do-nothing grpc-go server), in one run, on the memory backend and
# on one real Redis. Everything listens on 127.0.0.1.
#
#   hack/bench/compare.sh BEFORE_BINARY AFTER_BINARY [ROUNDS] [SECONDS]
#
# Build the two binaries first, e.g.
#   git worktree add /tmp/before <commit> && (cd /tmp/before && go build -o /tmp/bench/before ./cmd/sidecar)
#   go build -o /tmp/bench/after ./cmd/sidecar
# It builds loadgen and floorserver from this tree, runs each load against
# each server in turn, ROUNDS times (default 3), and prints one line per
# measurement and the median per server and load. Needs redis-server and
# python3.
set -euo pipefail
before=${1:?before binary}; after=${2:?after binary}
rounds=${3:-3}; secs=${4:-6}
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/fg-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/loadgen" ./cmd/loadgen
go build -o "$work/floorserver" ./cmd/floorserver
cat > "$work/bench.yaml" <<'YAML'
domain: bench
descriptors:
  - key: one
    rate_limit: {unit: second, requests_per_unit: 1000000000}
  - key: a
    rate_limit: {unit: second, requests_per_unit: 1000000000}
  - key: b
    rate_limit: {unit: second, requests_per_unit: 1000000000}
  - key: c
    rate_limit: {unit: second, requests_per_unit: 1000000000}
YAML
redis-server --port 46479 --bind 127.0.0.1 --save '' --appendonly no --dir "$work" --daemonize no >/dev/null &
pids+=($!)
start() { # name port cmd...
  local name=$1 port=$2; shift 2
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!); echo "$name $port $!" >>"$work/servers"
}
start floor 47001 "$work/floorserver" --addr 127.0.0.1:47001
start before-memory 47011 "$before" serve --config "$work/bench.yaml" --grpc-addr 127.0.0.1:47011 --http-addr 127.0.0.1:47012 --log-level warn
start after-memory 47021 "$after" serve --config "$work/bench.yaml" --grpc-addr 127.0.0.1:47021 --http-addr 127.0.0.1:47022 --log-level warn
start before-redis 47031 "$before" serve --config "$work/bench.yaml" --grpc-addr 127.0.0.1:47031 --http-addr 127.0.0.1:47032 --redis-url redis://127.0.0.1:46479 --log-level warn
start after-redis 47041 "$after" serve --config "$work/bench.yaml" --grpc-addr 127.0.0.1:47041 --http-addr 127.0.0.1:47042 --redis-url redis://127.0.0.1:46479 --log-level warn
sleep 2
loads=(
  "1desc-c32|--descriptor one={n} --concurrency 32"
  "1desc-c128|--descriptor one={n} --concurrency 128"
  "3desc-c32|--descriptor a={n} --descriptor b={n} --descriptor c={n} --concurrency 32"
)
: >"$work/results"
for r in $(seq "$rounds"); do
  for load in "${loads[@]}"; do
    lname=${load%%|*}; largs=${load#*|}
    while read -r name port pid; do
      # shellcheck disable=SC2086
      "$work/loadgen" --addr "127.0.0.1:$port" --domain bench $largs --keys 10000 --duration 1s >/dev/null
      # shellcheck disable=SC2086
      out=$("$work/loadgen" --addr "127.0.0.1:$port" --domain bench $largs --keys 10000 --duration "${secs}s" --pid "$pid" --json)
      echo "$r $lname $name $out" >>"$work/results"
      python3 -c 'import json,sys
a=sys.argv; r=json.loads(a[4]); c=r["server_cpu"]["us_per_request"]; p=r["latency_us"]["p99"]
print("round %s %-11s %-14s %8.0f req/s  server %6.1f us/decision  p99 %7.0f us  errors %d" % (a[1], a[2], a[3], r["rps"], c, p, r["errors_total"]))' "$r" "$lname" "$name" "$out"
    done <"$work/servers"
  done
done
echo
echo "median server CPU us/decision (and req/s) over $rounds rounds:"
python3 - "$work/results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r, load, name, js = line.split(" ", 3)
    d = json.loads(js)
    rows.setdefault((load, name), []).append((d["server_cpu"]["us_per_request"], d["rps"]))
for (load, name), v in sorted(rows.items()):
    print("%-11s %-14s %6.1f us  %8.0f req/s" % (load, name, statistics.median(x for x, _ in v), statistics.median(y for _, y in v)))
PY
