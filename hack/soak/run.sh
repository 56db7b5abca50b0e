#!/usr/bin/env bash
# The soak: the built sidecar (bin/sidecar) under moderate, steady load on
# all three of its doors for SOAK_DURATION, sampled every SOAK_SAMPLE, then
# judged by bin/soaktool report (docs/reliability.md, "Soak"). `make soak` builds
# the binaries and runs this. Settings (environment):
#   SOAK_DURATION  run length (Go duration)                      default 1h
#   SOAK_BACKEND   redis (a redis-server of its own) or memory   default redis
#   SOAK_SAMPLE    time between samples                          default 10s
#   SOAK_WARMUP    left out of the steady state                  default 2m
#   SOAK_OUT       results directory                             default bin/soak
#   SOAK_SCALE     multiplies every loader's request rate        default 1
#   SOAK_KEEP      1: keep the temporary directory (configs, logs)
# and the verdict's bounds (bin/soaktool report -h):
#   SOAK_RSS_SLOPE_PCT  RSS slope bound, % of the steady level per hour  default 5
#   SOAK_GOROUTINE_TOL  final goroutines minus warm ones, at most        default 10
#   SOAK_FD_TOL         final fds minus warm ones, at most               default 4
# Exit status: 0 when the run passed, 1 when it failed or could not run.
set -euo pipefail

cd "$(dirname "$0")/../.."
duration=${SOAK_DURATION:-1h}
backend=${SOAK_BACKEND:-redis}
sample=${SOAK_SAMPLE:-10s}
warmup=${SOAK_WARMUP:-2m}
out=${SOAK_OUT:-bin/soak}
scale=${SOAK_SCALE:-1}

case $backend in
redis | memory) ;;
*) echo "soak: SOAK_BACKEND=$backend: want redis or memory" >&2; exit 1 ;;
esac
for b in bin/sidecar bin/loadgen bin/soaktool; do
	[ -x "$b" ] || { echo "soak: $b missing: run make soak (it builds them)" >&2; exit 1; }
done
if [ "$backend" = redis ] && ! command -v redis-server >/dev/null; then
	echo "soak: redis-server not found (make deps installs it)" >&2
	exit 1
fi
# Fail on a bad value now rather than an hour in.
rate() { awk -v r="$1" -v s="$scale" 'BEGIN { if (s !~ /^[0-9.]+$/ || s <= 0) exit 1; printf "%g", r * s }' ||
	{ echo "soak: SOAK_SCALE=$scale: want a positive number" >&2; exit 1; }; }
rate 1 >/dev/null

work=$(mktemp -d -t floodgate-soak.XXXXXX)
pids=()  # every process started here still to be stopped on exit
infra=() # redis-server and the sidecar
cleanup() {
	local code=$?
	trap - EXIT INT TERM
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill "${pids[i]}" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -d "$out" ] && [ -f "$work/sidecar.log" ]; then cp "$work/sidecar.log" "$out/sidecar.log" 2>/dev/null || true; fi
	if [ "${SOAK_KEEP:-}" = 1 ]; then
		echo "soak: kept $work"
	else
		rm -rf "$work"
	fi
	exit "$code"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# SOAK_OUT is emptied first: refuse a directory that holds anything but an
# earlier soak's results.
if [ -d "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -f "$out/samples.csv" ] && [ ! -d "$out/loaders" ]; then
	echo "soak: SOAK_OUT=$out is not empty and holds no earlier soak results: pick another directory" >&2
	exit 1
fi
rm -rf "$out"
mkdir -p "$out/loaders"

# --- the configs: one domain, an auth policy with API keys, a cache rule ---
mkdir -p "$work/limits"
cat >"$work/limits/soak.yaml" <<'YAML'
domain: soak
descriptors:
  # Few keys, far over their limit: most answers OVER_LIMIT.
  - key: hot
    rate_limit: {unit: second, requests_per_unit: 5}
  # Many distinct keys, each under its limit: counters are made all the
  # time and leave by TTL (Redis) or expiry and eviction (memory).
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 100}
  - key: route
    rate_limit: {unit: minute, requests_per_unit: 200, algorithm: fixed_window}
  # What the auth policy's Check asks, per tenant and tier.
  - key: tenant
    descriptors:
      - key: tier
        value: pro
        rate_limit: {unit: second, requests_per_unit: 100, algorithm: token_bucket, burst: 200, name: tenant-pro}
      - key: tier
        value: free
        rate_limit: {unit: second, requests_per_unit: 5, name: tenant-free}
YAML
cat >"$work/auth.yaml" <<'YAML'
api_keys:
  header: x-api-key
  files: [keys.yaml]
failed_auth_limit: {unit: minute, requests_per_unit: 20}
policies:
  - name: api
    match: {path_prefix: /v1/}
    auth: api_key
    tiers: [free, pro]
    rate_limit:
      domain: soak
      descriptors:
        - [{key: tenant, value: "%tenant%"}, {key: tier, value: "%tier%"}]
YAML
cat >"$work/cache.yaml" <<'YAML'
rules:
  - name: pages
    match: {path_prefix: /pages/}
    scope: public
    ttl: 30s
    max_ttl: 1m
YAML
# Keys made as users make them: three pro tenants, one free tenant (over its
# limit), and one key that is no key (401, then 429 for its address).
echo "keys:" >"$work/keys.yaml"
: >"$work/keys.txt"
for spec in t1:pro t2:pro t3:pro t4:free; do
	bin/sidecar keys new --id "k-${spec%%:*}" --tenant "${spec%%:*}" --tier "${spec##*:}" 2>/dev/null >"$work/key.new"
	head -n 1 "$work/key.new" >>"$work/keys.txt"
	tail -n +2 "$work/key.new" >>"$work/keys.yaml"
done
rm -f "$work/key.new"
echo "fg_this-key-was-never-issued" >>"$work/keys.txt"

# --- redis-server on a free loopback port ---
args=()
if [ "$backend" = redis ]; then
	mkdir -p "$work/redis"
	port=$(bin/soaktool freeport)
	redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$work/redis" \
		--logfile "$work/redis.log" &
	pids+=($!)
	infra+=($!)
	for i in $(seq 100); do
		redis-cli -p "$port" ping >/dev/null 2>&1 && break
		[ "$i" = 100 ] && { echo "soak: redis-server did not answer on 127.0.0.1:$port; its log:" >&2; cat "$work/redis.log" >&2; exit 1; }
		sleep 0.1
	done
	args+=(--redis-url "redis://127.0.0.1:$port")
	echo "soak: redis-server on 127.0.0.1:$port"
fi

# --- the sidecar, on ports the kernel picks ---
# Small memory bounds, so that eviction runs all the time in the memory
# backend and the memory cache store (Redis expires by TTL instead).
bin/sidecar serve --config "$work/limits" --auth-config "$work/auth.yaml" --cache-config "$work/cache.yaml" \
	--grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --memory-max-keys 20000 --cache-max-bytes 1048576 \
	"${args[@]}" 2>"$work/sidecar.log" &
sidecar=$!
pids+=("$sidecar")
infra+=("$sidecar")
grpc= http=
for i in $(seq 300); do
	line=$(grep -m1 '"msg":"listening"' "$work/sidecar.log" || true)
	if [ -n "$line" ]; then
		grpc=$(sed -E 's/.*"grpc":"([^"]*)".*/\1/' <<<"$line")
		http=$(sed -E 's/.*"http":"([^"]*)".*/\1/' <<<"$line")
		break
	fi
	kill -0 "$sidecar" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$grpc" ]; then
	echo "soak: the sidecar did not start; its log:" >&2
	cat "$work/sidecar.log" >&2
	exit 1
fi
echo "soak: sidecar pid $sidecar, gRPC $grpc, HTTP $http, backend $backend, $duration, sampled every $sample"

# --- the sampler first (its first row is the idle sidecar), then the loaders ---
bin/soaktool sample --pid "$sidecar" --metrics "http://$http/metrics" --interval "$sample" \
	--duration "$duration" --out "$out/samples.csv" &
sampler=$!
pids+=("$sampler")

loader() { # NAME RATE ARGS...: one loadgen in the background, its JSON to the results
	local name=$1 r
	r=$(rate "$2")
	shift 2
	bin/loadgen --addr "$grpc" --duration "$duration" --rate "$r" --concurrency 4 --connections 1 \
		--json "$@" >"$out/loaders/$name.json" 2>"$out/loaders/$name.err" &
	pids+=($!)
	loaders+=($!)
}
loaders=()
loader rl-hot 150 --domain soak --descriptor 'hot=h{n}' --keys 10
loader rl-wide 250 --domain soak --descriptor 'user=u{n}' --keys 200000
loader rl-route 100 --domain soak --descriptor 'route=r{n}' --keys 50
loader authz 200 --mode check --path /v1/things --header 'x-api-key: {key}' \
	--key-file "$work/keys.txt" --source '10.1.{n}.1'
loader cache-hit 100 --mode extproc --path '/pages/{n}' --keys 100 --cache-load hit --max-age 30s
loader cache-miss 40 --mode extproc --path '/pages/new/{n}' --cache-load miss --body-bytes 2048 --max-age 30s

failed=0
if ! wait "$sampler"; then
	echo "soak: the sampler stopped early (did the sidecar exit? see $out/sidecar.log); stopping the loaders" >&2
	failed=1
	kill "${loaders[@]}" 2>/dev/null || true
fi
for p in "${loaders[@]}"; do
	wait "$p" || { echo "soak: a loader failed (see $out/loaders/*.err)" >&2; failed=1; }
done
# Those waited for are gone: only Redis and the sidecar are left to stop.
pids=("${infra[@]}")
kill -0 "$sidecar" 2>/dev/null || { echo "soak: the sidecar exited during the run" >&2; failed=1; }

bin/soaktool report --csv "$out/samples.csv" --loader "$out/loaders/*.json" --warmup "$warmup" --out "$out" \
	--rss-slope-pct "${SOAK_RSS_SLOPE_PCT:-5}" --goroutine-tol "${SOAK_GOROUTINE_TOL:-10}" --fd-tol "${SOAK_FD_TOL:-4}" \
	--title "floodgate soak: $backend backend, $duration, $(date -u +%Y-%m-%dT%H:%MZ)" || failed=1
echo "soak: results in $out (samples.csv, summary.txt, plot.svg, loaders/, sidecar.log)"
exit "$failed"
