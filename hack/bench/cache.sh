#!/usr/bin/env bash
# cache.sh: CPU per request of the sidecar's response cache (the ext_proc
# door) side by side with the floor's do-nothing ext_proc, in one run, on
# the memory store and on a real Redis. Everything listens on 127.0.0.1.
#
#   hack/bench/cache.sh [SIDECAR_BINARY] [ROUNDS] [SECONDS] [BASELINE_BINARY]
#
# SIDECAR_BINARY defaults to a build of this tree. It builds loadgen and
# floorserver from this tree, starts a redis-server on a free loopback port
# (its own --dir, no persistence), and writes, in a temp dir, a limits
# config (domain bench) and a cache config with one public rule
# (api.example.com, /v1/items/, ttl 60s). Servers:
#   floor        floorserver: CONTINUE to every message (the floor of a miss)
#   floor-hit    floorserver --extproc-hit-bytes 1024: an immediate_response
#                with a 1 KiB body to request headers (the floor of a hit)
#   sidecar-mem  sidecar serve --cache-config (memory store)
#   sidecar-redis  the same with --redis-url (the Redis store)
#   base-redis   with BASELINE_BINARY (e.g. a build of an earlier commit):
#                BASELINE_BINARY as sidecar-redis, on the same Redis with
#                --redis-key-prefix base: (measured right after it)
# Loads (loadgen --mode extproc), each against its floor and both sidecars,
# ROUNDS times (default 3), 1 s warm-up and SECONDS measured (default 8):
#   hit-cC   GET /v1/items/1 again and again: after the warm-up's first
#            request stored it, every request a hit (1 KiB body)
#   miss-cC  GET /v1/items/{n}, a new n every request: every request a miss
#            whose response (200, max-age=60, 1 KiB) is stored; the floor
#            does not ask for the body, the sidecar does (one more message)
# with C = 32 and 128. For sidecar-redis it also reads Redis's INFO
# commandstats and CPU (/proc) around the measurement: commands per request,
# those sent (EVALSHA, EVAL and any command no script of pkg/rediscache
# runs) apart from those the scripts run. It prints one line per
# measurement and the medians, with the rounds and the sidecar/floor
# ratios. Needs python3 and redis-server.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/fg-cache.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
sidecar=${1:-}
rounds=${2:-3}; secs=${3:-8}; baseline=${4:-}
if [[ -z $sidecar ]]; then
  go build -o "$work/sidecar" ./cmd/sidecar
  sidecar=$work/sidecar
fi
go build -o "$work/loadgen" ./cmd/loadgen
go build -o "$work/floorserver" ./cmd/floorserver

# The commands the Redis store's scripts run (counted by commandstats too).
inner=$(grep -ho "redis.call(['\"][A-Za-z]*" pkg/rediscache/*.lua 2>/dev/null | sed "s/redis.call(['\"]//" | tr 'A-Z' 'a-z' | sort -u | tr '\n' ' ' || true)

cat >"$work/limits.yaml" <<'YAML'
domain: bench
descriptors:
  - key: tenant
    rate_limit: {unit: second, requests_per_unit: 1000000000}
YAML
cat >"$work/cache.yaml" <<'YAML'
rules:
  - name: items
    match: {hosts: [api.example.com], path_prefix: /v1/items/}
    scope: public
    ttl: 60s
YAML
"$sidecar" validate --config "$work/limits.yaml" --cache-config "$work/cache.yaml"

rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir "$work/redis"
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/redis" >"$work/redis.log" 2>&1 &
rpid=$!; pids+=($rpid)
for _ in $(seq 50); do redis-cli -p "$rport" ping </dev/null >/dev/null 2>&1 && break; sleep 0.1; done

start() { # name port cmd...
  local name=$1 port=$2; shift 2
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!); echo "$name $port $!" >>"$work/servers"
}
start floor 47201 "$work/floorserver" --addr 127.0.0.1:47201
start floor-hit 47202 "$work/floorserver" --addr 127.0.0.1:47202 --extproc-hit-bytes 1024
start sidecar-mem 47211 "$sidecar" serve --config "$work/limits.yaml" --cache-config "$work/cache.yaml" \
  --grpc-addr 127.0.0.1:47211 --http-addr 127.0.0.1:47212 --log-level warn
start sidecar-redis 47221 "$sidecar" serve --config "$work/limits.yaml" --cache-config "$work/cache.yaml" \
  --redis-url "redis://127.0.0.1:$rport" --grpc-addr 127.0.0.1:47221 --http-addr 127.0.0.1:47222 --log-level warn
if [[ -n $baseline ]]; then
  start base-redis 47231 "$baseline" serve --config "$work/limits.yaml" --cache-config "$work/cache.yaml" \
    --redis-url "redis://127.0.0.1:$rport" --redis-key-prefix base: --grpc-addr 127.0.0.1:47231 --http-addr 127.0.0.1:47232 --log-level warn
fi
sleep 2

# stats: Redis's commandstats (name=calls) and its CPU ticks, one line.
stats() {
  { redis-cli -p "$rport" info commandstats </dev/null | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1=\2/p' | tr '\n' ' '
    awk '{print "cpu_ticks=" $14+$15}' "/proc/$rpid/stat"; } | tr -d '\r'
}
common=(--mode extproc --host api.example.com)
loads=(
  "hit-c32|--concurrency 32|floor-hit|--cache-load hit --path /v1/items/1"
  "hit-c128|--concurrency 128|floor-hit|--cache-load hit --path /v1/items/1"
  "miss-c32|--concurrency 32|floor|--cache-load miss --path /v1/items/{n}"
  "miss-c128|--concurrency 128|floor|--cache-load miss --path /v1/items/{n}"
)
: >"$work/results"
line() { # round load server json before after
  python3 - "$@" "$inner" "$(getconf CLK_TCK)" <<'PY'
import json, sys
rnd, load, name, js, before, after, inner, hz = sys.argv[1:9]
r = json.loads(js)
c, p = r["server_cpu"]["us_per_request"], r["latency_us"]["p99"]
s = "round %s %-9s %-13s %8.0f req/s  server %6.1f us/req  loadgen %5.1f us/req  p99 %6.0f us  streams %d  hits %d  bodies %d  unexpected %d  errors %d" % (
    rnd, load, name, r["rps"], c, r["loadgen_cpu"]["us_per_request"], p, r["ok"], r.get("hits", 0), r.get("bodies_sent", 0), r["unknown"], r["errors_total"])
if before != "-":
    kv = lambda t: {k: int(v) for k, v in (x.split("=") for x in t.split())}
    b, a = kv(before), kv(after)
    n = max(r["ok"], 1)
    delta = {k: a[k] - b.get(k, 0) for k in a if k not in ("info", "cpu_ticks") and a[k] - b.get(k, 0) > 0}
    ins = set(inner.split())
    sent = sum(v for k, v in delta.items() if k not in ins)
    rcpu = (a["cpu_ticks"] - b["cpu_ticks"]) * 1e6 / int(hz) / n
    s += "\n        redis: %.2f sent/req (%s), %.2f in all, %.1f us redis CPU/req" % (
        sent / n, " ".join("%s %.2f" % (k, v / n) for k, v in sorted(delta.items()) if k not in ins),
        sum(delta.values()) / n, rcpu)
    s += "\n        inside scripts: " + " ".join("%s %.2f" % (k, v / n) for k, v in sorted(delta.items()) if k in ins)
    r["redis_sent_per_req"], r["redis_all_per_req"], r["redis_cpu_us_per_req"] = sent / n, sum(delta.values()) / n, rcpu
print(s)
sys.stderr.write(json.dumps(r) + "\n")  # the row, for the medians
PY
}
for r in $(seq "$rounds"); do
  for load in "${loads[@]}"; do
    IFS='|' read -r lname largs floorname lflags <<<"$load"
    while read -r name port pid; do
      case $name in floor*) [[ $name == "$floorname" ]] || continue ;; esac
      # shellcheck disable=SC2086
      "$work/loadgen" --addr "127.0.0.1:$port" "${common[@]}" $lflags $largs --duration 1s >/dev/null
      before=- after=-
      [[ $name == *-redis ]] && before=$(stats)
      # shellcheck disable=SC2086
      out=$("$work/loadgen" --addr "127.0.0.1:$port" "${common[@]}" $lflags $largs --duration "${secs}s" --pid "$pid" --json)
      [[ $name == *-redis ]] && after=$(stats)
      line "$r" "$lname" "$name" "$out" "$before" "$after" 2>>"$work/results.json"
      echo "$r $lname $name $(tail -1 "$work/results.json")" >>"$work/results"
    done <"$work/servers"
  done
done
echo
echo "median server CPU us/request over $rounds rounds (rounds in brackets), req/s, sidecar/floor:"
python3 - "$work/results" <<'PY'
import json, statistics, sys
rows, order = {}, []
for line in open(sys.argv[1]):
    r, load, name, js = line.split(" ", 3)
    d = json.loads(js)
    if load not in order:
        order.append(load)
    rows.setdefault((load, name.replace("floor-hit", "floor")), []).append(d)
med = lambda v, k: statistics.median(x[k] if k != "cpu" else x["server_cpu"]["us_per_request"] for x in v)
for load in order:
    f = rows[(load, "floor")]
    fm = med(f, "cpu")
    print("%-9s floor         %6.1f us (%s) %7.0f req/s" % (load, fm, " ".join("%.1f" % x["server_cpu"]["us_per_request"] for x in f), med(f, "rps")))
    for name in ("sidecar-mem", "sidecar-redis", "base-redis"):
        if (load, name) not in rows:
            continue
        s = rows[(load, name)]
        sm = med(s, "cpu")
        per = " ".join("%.2f" % (b["server_cpu"]["us_per_request"] / a["server_cpu"]["us_per_request"]) for a, b in zip(f, s))
        extra = ""
        if "redis_sent_per_req" in s[0]:
            extra = "  redis sent/req %.2f, in all %.2f, redis CPU %.1f us/req" % (med(s, "redis_sent_per_req"), med(s, "redis_all_per_req"), med(s, "redis_cpu_us_per_req"))
        print("%-9s %-13s %6.1f us (%s) %7.0f req/s  ratio %.2f (rounds %s)%s" % (
            load, name, sm, " ".join("%.1f" % x["server_cpu"]["us_per_request"] for x in s), med(s, "rps"), sm / fm, per, extra))
PY
