#!/usr/bin/env bash
# flood.sh: the sidecar's resident memory (VmRSS of /proc/PID/status)
# under a flood of distinct keys, for two settings of each bound, to show
# that memory follows the setting and not the flood. Everything listens on
# 127.0.0.1; the memory backend and the memory cache store.
#
#   hack/bench/flood.sh [SIDECAR_BINARY] [KEYS] [MAX_KEYS_A] [MAX_KEYS_B]
#
# SIDECAR_BINARY defaults to a build of this tree (and loadgen is built
# from it). Runs:
#   keys-N   serve --memory-max-keys N (default 100000 and 1000000), then
#            loadgen --mode ratelimit --descriptor user={n} --keys KEYS
#            --sequential --requests KEYS (default 2000000): every request
#            a new counter, each sent once
#   cache-B  serve --cache-config (one public rule) --cache-max-bytes B
#            (16 MiB and 128 MiB), then loadgen --mode extproc --cache-load
#            miss --body-bytes 1024 for KEYS/10 requests: every response a
#            new entry that is stored
# While each runs, RSS is sampled every 0.5 s. It prints, per run, the RSS
# after start-up, the largest sample, the RSS after the flood, and the
# sidecar's own counts (floodgate_memory_evictions_total, or
# floodgate_cache_entries and floodgate_cache_bytes). Needs python3, curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/fg-flood.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
sidecar=${1:-}
keys=${2:-2000000}; maxa=${3:-100000}; maxb=${4:-1000000}
if [[ -z $sidecar ]]; then
  go build -o "$work/sidecar" ./cmd/sidecar
  sidecar=$work/sidecar
fi
go build -o "$work/loadgen" ./cmd/loadgen

cat >"$work/limits.yaml" <<'YAML'
domain: flood
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 1000}
YAML
cat >"$work/cache.yaml" <<'YAML'
rules:
  - name: items
    match: {hosts: [api.example.com], path_prefix: /v1/items/}
    scope: public
    ttl: 600s
YAML
"$sidecar" validate --config "$work/limits.yaml" --cache-config "$work/cache.yaml" >/dev/null

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; } # KiB
mib() { python3 -c "print('%.1f' % ($1/1024))"; }

# run NAME METRIC-REGEX LOADGEN-ARGS... -- SIDECAR-ARGS...
run() {
  local name=$1 metrics=$2; shift 2
  local largs=()
  while [[ $1 != -- ]]; do largs+=("$1"); shift; done; shift
  "$sidecar" serve --config "$work/limits.yaml" --grpc-addr 127.0.0.1:47311 --http-addr 127.0.0.1:47312 \
    --log-level warn "$@" >"$work/$name.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  for _ in $(seq 100); do curl -fs http://127.0.0.1:47312/readyz >/dev/null 2>&1 && break; sleep 0.1; done
  local base; base=$(rss "$pid")
  "$work/loadgen" --addr 127.0.0.1:47311 "${largs[@]}" --json >"$work/$name.json" &
  local lg=$! peak=$base
  while kill -0 "$lg" 2>/dev/null; do
    local r; r=$(rss "$pid"); (( r > peak )) && peak=$r
    sleep 0.5
  done
  wait "$lg"
  local end; end=$(rss "$pid")
  local counts; counts=$(curl -fs http://127.0.0.1:47312/metrics | grep -E "$metrics" | grep -v '^#' | tr '\n' ' ')
  local rps; rps=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%d requests, %.0f req/s, errors %d" % (r["requests"], r["rps"], r["errors_total"]))' "$work/$name.json")
  printf '%-14s start %7s MiB  peak %7s MiB  end %7s MiB  (%s)  %s\n' "$name" "$(mib "$base")" "$(mib "$peak")" "$(mib "$end")" "$rps" "$counts"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for m in "$maxa" "$maxb"; do
  run "keys-$m" '^floodgate_memory_evictions_total' --mode ratelimit --domain flood --descriptor 'user={n}' \
    --keys "$keys" --sequential --requests "$keys" --concurrency 64 --connections 4 -- --memory-max-keys "$m"
done
for b in 16777216 134217728; do
  run "cache-$((b >> 20))MiB" '^floodgate_cache_(entries|bytes) ' --mode extproc --host api.example.com \
    --path '/v1/items/{n}' --cache-load miss --body-bytes 1024 --requests $((keys / 10)) --concurrency 64 --connections 4 \
    -- --cache-config "$work/cache.yaml" --cache-max-bytes "$b"
done
