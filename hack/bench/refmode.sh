#!/usr/bin/env bash
# refmode.sh: CPU per decision of the ratelimit mode (envoyproxy/ratelimit's
# environment, its counting: fixed windows, every hit counted) beside serve
# (its defaults: sliding windows, all-or-nothing) and serve with the
# reference's counting by flags, with the floor (a do-nothing grpc-go
# server), in one run, on the memory backend and on one real Redis. One
# binary, so any gap is the mode's. Everything listens on 127.0.0.1.
#
#   hack/bench/refmode.sh [ROUNDS] [SECONDS]
#
# It builds the sidecar, loadgen and floorserver from this tree, runs each
# load against each server in turn, ROUNDS times (default 3), and prints one
# line per measurement and the median per server and load. Needs
# redis-server and python3.
#
# The ratelimit mode's backend is Redis only (BACKEND_TYPE accepts redis);
# its memory variant here adds flags after the mode (--backend=memory
# --redis-url=), which win over the environment, to measure the mode's own
# cost apart from Redis's.
set -euo pipefail
rounds=${1:-3}; secs=${2:-6}
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/fg-refmode.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/sidecar" ./cmd/sidecar
go build -o "$work/loadgen" ./cmd/loadgen
go build -o "$work/floorserver" ./cmd/floorserver
# The reference's runtime layout: RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config.
mkdir -p "$work/runtime/current/config"
cat > "$work/runtime/current/config/bench.yaml" <<'YAML'
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
cfg="$work/runtime/current/config/bench.yaml"
redis-server --port 46479 --bind 127.0.0.1 --save '' --appendonly no --dir "$work" --daemonize no >/dev/null &
pids+=($!)
start() { # name port cmd...
  local name=$1 port=$2; shift 2
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!); echo "$name $port $!" >>"$work/servers"
}
# ratelimit NAME GRPC_PORT [FLAGS...]: the ratelimit mode, as Envoy Gateway
# runs it (statsd off; Prometheus off here, as serve's own /metrics stays on).
ratelimit() {
  local name=$1 port=$2; shift 2
  start "$name" "$port" env RUNTIME_ROOT="$work/runtime" RUNTIME_SUBDIRECTORY=current RUNTIME_IGNOREDOTFILES=true \
    GRPC_HOST=127.0.0.1 GRPC_PORT="$port" HOST=127.0.0.1 PORT=$((port + 1)) DEBUG_HOST=127.0.0.1 DEBUG_PORT=$((port + 2)) \
    USE_STATSD=false LOG_LEVEL=warn BACKEND_TYPE=redis REDIS_SOCKET_TYPE=tcp REDIS_URL=127.0.0.1:46479 \
    "$work/sidecar" ratelimit "$@"
}
serve() { # NAME GRPC_PORT [FLAGS...]
  local name=$1 port=$2; shift 2
  start "$name" "$port" "$work/sidecar" serve --config "$cfg" --grpc-addr "127.0.0.1:$port" --http-addr "127.0.0.1:$((port + 1))" --log-level warn "$@"
}
refcount=(--default-algorithm=fixed_window --count-rejected)
start floor 47101 "$work/floorserver" --addr 127.0.0.1:47101
serve serve-memory 47111
serve servefix-memory 47121 "${refcount[@]}"
ratelimit ratelimit-memory 47131 --backend=memory --redis-url=
serve serve-redis 47141 --redis-url redis://127.0.0.1:46479
serve servefix-redis 47151 --redis-url redis://127.0.0.1:46479 "${refcount[@]}"
ratelimit ratelimit-redis 47161
sleep 2
while read -r name port pid; do
  kill -0 "$pid" 2>/dev/null || { echo "$name did not start:"; cat "$work/$name.log"; exit 1; }
done <"$work/servers"
loads=(
  "1desc-c32|--descriptor one={n} --concurrency 32"
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
print("round %s %-10s %-16s %8.0f req/s  server %6.1f us/decision  p99 %7.0f us  errors %d" % (a[1], a[2], a[3], r["rps"], c, p, r["errors_total"]))' "$r" "$lname" "$name" "$out"
    done <"$work/servers"
  done
done
echo
echo "median server CPU us/decision (and req/s) over $rounds rounds, and the ratelimit mode against serve:"
python3 - "$work/results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r, load, name, js = line.split(" ", 3)
    d = json.loads(js)
    rows.setdefault((load, name), []).append((d["server_cpu"]["us_per_request"], d["rps"]))
med = {k: statistics.median(x for x, _ in v) for k, v in rows.items()}
for (load, name), v in sorted(rows.items()):
    xs = sorted(x for x, _ in v)
    print("%-10s %-16s %6.1f us  (min %5.1f, max %5.1f)  %8.0f req/s" % (load, name, med[(load, name)], xs[0], xs[-1], statistics.median(y for _, y in v)))
print()
for load in sorted({l for l, _ in rows}):
    for b in ("memory", "redis"):
        rl, sv, sf = med.get((load, "ratelimit-" + b)), med.get((load, "serve-" + b)), med.get((load, "servefix-" + b))
        if rl and sv and sf:
            print("%-10s %-6s ratelimit/serve %+5.1f %%   ratelimit/serve-with-reference-counting %+5.1f %%" % (load, b, 100 * (rl / sv - 1), 100 * (rl / sf - 1)))
PY
