#!/usr/bin/env bash
# Relay throughput of two or more signal-server binaries, interleaved round by round so that a
# noisy machine hits them alike (compare medians, not single runs):
#
#   bench/ab_relay.sh [--redis | --two] [--query '?resume=1'] [--rounds N] BENCH BIN...
#
# Each run: the server pinned to CPU 0 (THREADS=1), signal-bench (and redis-server with --redis)
# on CPU 1, 500 rooms of two peers, 300-byte candidates, closed loop (window 8, or 4 with Redis),
# 2 s warm-up, 6 s measured. Prints "BINARY msg/s" per run, then the median per binary. With
# Redis, a run also prints how many times its servers' Redis connections failed ("redis cuts N":
# a subscriber that falls behind is cut by Redis at its pub/sub output limit, and relays between
# instances are lost meanwhile), counted from the servers' warnings.
# --two: two instances of BIN on one redis-server, both on CPU 0, each room's peers split across
# them (signal-bench --url-b), as bench/run.sh's relay_redis_two_max.
# --query adds to the connect URL (e.g. '?resume=1' to measure resumable sessions).
set -euo pipefail
redis=0; query=""; rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --redis) redis=1 ;;
    --two) redis=2 ;;
    --query) query="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    *) break ;;
  esac
  shift
done
bench=$1; shift
. "$(dirname "$0")/lib.sh"
results=$(mktemp); logs=$(mktemp -d)
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    port=$(free_port); extra=(); rpid=""; window=8
    if [ $redis != 0 ]; then
      rport=$(free_port)
      taskset -c 1 redis-server --port "$rport" --save '' --appendonly no >/dev/null 2>&1 & rpid=$!
      for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
      extra=(REDIS_URL="redis://127.0.0.1:$rport"); window=4
    fi
    : >"$logs/server.log"
    env "${lim[@]}" "${extra[@]}" THREADS=1 WS_PORT="$port" LOG_LEVEL=warn \
      taskset -c 0 "$bin" >>"$logs/server.log" 2>&1 & spid=$!
    spid2=""; url_b=()
    if [ $redis = 2 ]; then
      port2=$(free_port)
      env "${lim[@]}" "${extra[@]}" THREADS=1 WS_PORT="$port2" LOG_LEVEL=warn \
        taskset -c 0 "$bin" >>"$logs/server.log" 2>&1 & spid2=$!
      url_b=(--url-b "ws://127.0.0.1:$port2/$query")
      for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port2/readyz" >/dev/null && break; sleep 0.1; done
    fi
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    out=$(taskset -c 1 "$bench" relay --url "ws://127.0.0.1:$port/$query" "${url_b[@]}" --rooms 500 \
          --size 300 --rate 0 --window "$window" --duration 6 --warmup 2 2>/dev/null | tail -1 || true)
    rate=$(echo "$out" | grep -o '"delivered_per_s":[0-9.]*' | cut -d: -f2)
    # The servers stop before Redis, so that its going away is not counted.
    kill "$spid" ${spid2:+"$spid2"} 2>/dev/null || true
    wait "$spid" ${spid2:+"$spid2"} 2>/dev/null || true
    cuts=""
    if [ -n "$rpid" ]; then
      kill "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true
      cuts=" redis cuts $(grep -c '"msg":"Redis connection failed"' "$logs/server.log" || true)"
    fi
    echo "$bin ${rate:-failed}$cuts" | tee -a "$results"
  done
done
echo "median msg/s:"
for bin in "$@"; do
  echo "  $bin: $(grep -F "$bin " "$results" | awk '{print $2}' | median)"
done
rm -rf "$results" "$logs"
