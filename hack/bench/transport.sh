#!/usr/bin/env bash
# transport.sh: the gRPC listener over TCP loopback against a Unix socket
# (--grpc-addr unix:///path, Envoy's pipe address), side by side in one
# run: the sidecar on the memory backend, and the floor (a do-nothing
# grpc-go server) for the transport's own cost.
#
#   hack/bench/transport.sh [ROUNDS] [SECONDS]
#
# It builds the sidecar, loadgen and floorserver from this tree, runs each
# load against each server in turn, ROUNDS times (default 3), and prints
# one line per measurement and the median per server and load. Needs
# python3.
set -euo pipefail
rounds=${1:-3}; secs=${2:-6}
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/fg-transport.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/sidecar" ./cmd/sidecar
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
start() { # name addr cmd...
  local name=$1 addr=$2; shift 2
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!); echo "$name $addr $!" >>"$work/servers"
}
start floor-tcp 127.0.0.1:47101 "$work/floorserver" --addr 127.0.0.1:47101
start floor-unix "unix://$work/floor.sock" "$work/floorserver" --addr "unix://$work/floor.sock"
start sidecar-tcp 127.0.0.1:47111 "$work/sidecar" serve --config "$work/bench.yaml" --grpc-addr 127.0.0.1:47111 --http-addr 127.0.0.1:47112 --log-level warn
start sidecar-unix "unix://$work/rls.sock" "$work/sidecar" serve --config "$work/bench.yaml" --grpc-addr "unix://$work/rls.sock" --http-addr 127.0.0.1:47122 --log-level warn
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
    while read -r name addr pid; do
      # shellcheck disable=SC2086
      "$work/loadgen" --addr "$addr" --domain bench $largs --keys 10000 --duration 1s >/dev/null
      # shellcheck disable=SC2086
      out=$("$work/loadgen" --addr "$addr" --domain bench $largs --keys 10000 --duration "${secs}s" --pid "$pid" --json)
      echo "$r $lname $name $out" >>"$work/results"
      python3 -c 'import json,sys
a=sys.argv; r=json.loads(a[4]); c=r["server_cpu"]["us_per_request"]; p=r["latency_us"]
print("round %s %-11s %-13s %8.0f req/s  server %6.1f us/decision  p50 %6.0f us  p99 %7.0f us  errors %d" % (a[1], a[2], a[3], r["rps"], c, p["p50"], p["p99"], r["errors_total"]))' "$r" "$lname" "$name" "$out"
    done <"$work/servers"
  done
done
echo
echo "medians over $rounds rounds: server CPU us/decision, req/s, p50 and p99 latency:"
python3 - "$work/results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r, load, name, js = line.split(" ", 3)
    d = json.loads(js)
    rows.setdefault((load, name), []).append((d["server_cpu"]["us_per_request"], d["rps"], d["latency_us"]["p50"], d["latency_us"]["p99"]))
med = lambda v, i: statistics.median(x[i] for x in v)
for (load, name), v in sorted(rows.items()):
    print("%-11s %-13s %6.1f us  %8.0f req/s  p50 %6.0f us  p99 %7.0f us   (cpu per round: %s)" % (load, name, med(v, 0), med(v, 1), med(v, 2), med(v, 3), " ".join("%.1f" % x[0] for x in v)))
# Within a round the two transports run back to back: their ratio is the
# fairest comparison on a machine whose speed drifts.
print()
print("unix/tcp server CPU within each round (median, then the rounds):")
for load in sorted({l for l, _ in rows}):
    for srv in ("floor", "sidecar"):
        t, u = rows.get((load, srv + "-tcp")), rows.get((load, srv + "-unix"))
        if t and u:
            r = [b[0] / a[0] for a, b in zip(t, u)]
            print("%-11s %-8s %.2f  (%s)" % (load, srv, statistics.median(r), " ".join("%.2f" % x for x in r)))
PY
