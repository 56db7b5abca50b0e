#!/usr/bin/env bash
# check.sh: CPU per Check of the sidecar's ext_authz door side by side with
# the floor's do-nothing Check (a default grpc-go server), in one run, on
# the memory backend. Everything listens on 127.0.0.1.
#
#   hack/bench/check.sh [SIDECAR_BINARY] [ROUNDS] [SECONDS] [TOKENS]
#
# SIDECAR_BINARY defaults to a build of this tree. It builds loadgen,
# floorserver and hack/bench/jwtsign from this tree and writes, in a temp
# dir, a limits config (domain bench, one tenant rule, 10^9/s), a keys file
# with one key made by `sidecar keys new`, a JWKS and the tokens (jwtsign),
# and an auth config like examples/auth.yaml (an API key or a JWT, one
# descriptor per request, failed_auth_limit set). Loads, each against the
# floor and then the sidecar, ROUNDS times (default 3), 1 s warm-up and
# SECONDS measured (default 8):
#   apikey-cC    x-api-key, concurrency C = 32, 128
#   jwt-cC       one RS256 token sent again and again (verifier cache hits)
#   rs256/es256  TOKENS distinct tokens (default 20000), each sent once
#                (--sequential), concurrency 32; fresh tokens every round
# It prints one line per measurement and the medians, with the rounds and
# the sidecar/floor ratios. Needs python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/fg-check.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
sidecar=${1:-}
rounds=${2:-3}; secs=${3:-8}; tokens=${4:-20000}
if [[ -z $sidecar ]]; then
  go build -o "$work/sidecar" ./cmd/sidecar
  sidecar=$work/sidecar
fi
go build -o "$work/loadgen" ./cmd/loadgen
go build -o "$work/floorserver" ./cmd/floorserver
go build -o "$work/jwtsign" ./hack/bench/jwtsign

mkdir "$work/limits" "$work/auth"
cat >"$work/limits/bench.yaml" <<'YAML'
domain: bench
descriptors:
  - key: tenant
    rate_limit: {unit: second, requests_per_unit: 1000000000}
YAML
"$sidecar" keys new --id k-bench --tenant bench --tier pro >"$work/newkey" 2>/dev/null
key=$(head -1 "$work/newkey")
{ echo "keys:"; tail -n +2 "$work/newkey"; } >"$work/auth/keys.yaml"
"$work/jwtsign" --dir "$work/auth" --count "$tokens" --rounds "$rounds" --issuer https://bench.example --tenant bench --tier pro
cat >"$work/auth/auth.yaml" <<'YAML'
api_keys:
  header: x-api-key
  files: [keys.yaml]
jwt:
  - issuer: https://bench.example
    audiences: [api]
    jwks_file: jwks.json
    algorithms: [RS256, ES256]
    claims: {tenant: org, tier: plan, user: sub}
client_address: {trusted_hops: 0}
failed_auth_limit: {unit: minute, requests_per_unit: 20}
policies:
  - name: api
    match: {path_prefix: /v1/}
    auth: any
    tiers: [pro]
    strip_credentials: true
    rate_limit:
      domain: bench
      descriptors:
        - [{key: tenant, value: "%tenant%"}]
YAML
"$sidecar" validate --auth-config "$work/auth/auth.yaml" --config "$work/limits"

start() { # name port cmd...
  local name=$1 port=$2; shift 2
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!); echo "$name $port $!" >>"$work/servers"
}
start floor 47101 "$work/floorserver" --addr 127.0.0.1:47101
start sidecar 47111 "$sidecar" serve --config "$work/limits" --auth-config "$work/auth/auth.yaml" \
  --grpc-addr 127.0.0.1:47111 --http-addr 127.0.0.1:47112 --log-level warn
sleep 2

# Envoy's view of a client: its address (250 of them, so failed_auth_limit
# and the door's address handling see many) and the request line.
common=(--mode check --path /v1/things --source '10.0.0.{n}' --keys 250)
jwt=$(cat "$work/auth/cached.txt")
loads=(
  "apikey-c32|--concurrency 32|x-api-key: $key"
  "apikey-c128|--concurrency 128|x-api-key: $key"
  "jwt-c32|--concurrency 32|authorization: Bearer $jwt"
  "jwt-c128|--concurrency 128|authorization: Bearer $jwt"
)
: >"$work/results"
line() { # round load server json
  python3 -c 'import json,sys
a=sys.argv; r=json.loads(a[4]); c=r["server_cpu"]["us_per_request"]; p=r["latency_us"]["p99"]
print("round %s %-11s %-8s %8.0f req/s  server %6.1f us/call  loadgen %5.1f us/call  p99 %7.0f us  ok %d  denied %d  over %d  errors %d" % (a[1], a[2], a[3], r["rps"], c, r["loadgen_cpu"]["us_per_request"], p, r["ok"], r.get("denied_total", 0), r["over_limit"], r["errors_total"]))' "$@"
}
for r in $(seq "$rounds"); do
  for load in "${loads[@]}"; do
    IFS='|' read -r lname largs lheader <<<"$load"
    while read -r name port pid; do
      # shellcheck disable=SC2086
      "$work/loadgen" --addr "127.0.0.1:$port" "${common[@]}" $largs --header "$lheader" --duration 1s >/dev/null
      # shellcheck disable=SC2086
      out=$("$work/loadgen" --addr "127.0.0.1:$port" "${common[@]}" $largs --header "$lheader" --duration "${secs}s" --pid "$pid" --json)
      echo "$r $lname $name $out" >>"$work/results"
      line "$r" "$lname" "$name" "$out"
    done <"$work/servers"
  done
  # Uncached: every token of this round's file once, in order. The warm-up
  # is the cached token's, so that no token of the file is seen twice.
  for alg in rs256 es256; do
    while read -r name port pid; do
      "$work/loadgen" --addr "127.0.0.1:$port" "${common[@]}" --concurrency 32 --header "authorization: Bearer $jwt" --duration 1s >/dev/null
      out=$("$work/loadgen" --addr "127.0.0.1:$port" --mode check --path /v1/things --source '10.0.0.1' \
        --header 'authorization: Bearer {key}' --key-file "$work/auth/$alg-$r.txt" --sequential \
        --requests "$tokens" --concurrency 32 --pid "$pid" --json)
      echo "$r $alg-c32 $name $out" >>"$work/results"
      line "$r" "$alg-c32" "$name" "$out"
    done <"$work/servers"
  done
done
echo
echo "median server CPU us/call over $rounds rounds (rounds in brackets), req/s, sidecar/floor:"
python3 - "$work/results" <<'PY'
import json, statistics, sys
rows, order = {}, []
for line in open(sys.argv[1]):
    r, load, name, js = line.split(" ", 3)
    d = json.loads(js)
    if load not in order:
        order.append(load)
    rows.setdefault((load, name), []).append((d["server_cpu"]["us_per_request"], d["rps"]))
fmt = lambda v: "%.1f (%s)" % (statistics.median(x for x, _ in v), " ".join("%.1f" % x for x, _ in v))
for load in order:
    f, s = rows[(load, "floor")], rows[(load, "sidecar")]
    fm, sm = statistics.median(x for x, _ in f), statistics.median(x for x, _ in s)
    per = " ".join("%.2f" % (b[0] / a[0]) for a, b in zip(f, s))
    print("%-11s floor %-22s %7.0f req/s   sidecar %-22s %7.0f req/s   ratio %.2f (rounds %s)" % (
        load, fmt(f), statistics.median(y for _, y in f), fmt(s), statistics.median(y for _, y in s), sm / fm, per))
PY
