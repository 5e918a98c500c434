#!/usr/bin/env bash
# Join rate (signal-bench connect) of signal-server binaries at several LOG_LEVELs, interleaved
# round by round so that a noisy machine hits them alike (compare medians, not single runs):
#
#   bench/ab_connect.sh [--rounds N] [--conns N] [--concurrency C] [--threads N] [--log FILE]
#                       BENCH BIN:LEVEL...
#
# e.g. bench/ab_connect.sh build/release/signal-bench old:info old:warn new:info new:warn
# Each run: the server pinned to CPU 0 (THREADS=1, or --threads: its loops share CPU 0), its stdout appended to --log (default a file
# in a temporary folder: logging costs a real write; /dev/null makes it nearly free), signal-bench
# on CPU 1; every other round runs the variants in reverse order. Prints "BIN:LEVEL joins/s
# server-CPU-us/join" per run, then the medians per variant.
# The server's CPU time (all its threads, from schedstat) per join is steadier than the rate on a
# machine shared with other work: it does not count the time the server waited for a CPU.
set -euo pipefail
rounds=5; conns=10000; concurrency=50; threads=1; log=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift ;;
    --conns) conns="$2"; shift ;;
    --concurrency) concurrency="$2"; shift ;;
    --threads) threads="$2"; shift ;;
    --log) log="$2"; shift ;;
    *) break ;;
  esac
  shift
done
bench=$1; shift
. "$(dirname "$0")/lib.sh"
# Nanoseconds on CPU of every thread of process $1.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
results="$tmp/results"
: >"$results"
own_log=0
[ -n "$log" ] || { log="$tmp/server.log"; own_log=1; }
variants=("$@")
for round in $(seq "$rounds"); do
  order=("${variants[@]}")
  # Every other round in reverse, so that no variant always runs right after the same one.
  if [ $((round % 2)) = 0 ]; then
    order=(); for ((i = ${#variants[@]} - 1; i >= 0; i--)); do order+=("${variants[$i]}"); done
  fi
  for variant in "${order[@]}"; do
    bin=${variant%:*}; level=${variant##*:}
    port=$(free_port)
    env "${lim[@]}" THREADS="$threads" WS_PORT="$port" LOG_LEVEL="$level" \
      taskset -c 0 "$bin" >>"$log" 2>&1 & spid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    cpu0=$(cpu_ns "$spid")
    out=$(taskset -c 1 "$bench" connect --url "ws://127.0.0.1:$port/" --conns "$conns" \
          --concurrency "$concurrency" 2>/dev/null | tail -1 || true)
    cpu1=$(cpu_ns "$spid")
    rate=$(echo "$out" | grep -o '"handshake_join_per_s":[0-9.]*' | cut -d: -f2)
    joined=$(echo "$out" | grep -o '"joined_conns":[0-9]*' | cut -d: -f2)
    us=$(awk -v c=$((cpu1 - cpu0)) -v j="${joined:-0}" 'BEGIN {if (j > 0) printf "%.1f", c / j / 1000; else print "failed"}')
    echo "$variant ${rate:-failed} $us" | tee -a "$results"
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    [ $own_log = 0 ] || : >"$log"  # one run's lines at a time
  done
done
echo "median joins/s, median server CPU us/join:"
for variant in "$@"; do
  r=$(grep -F "$variant " "$results" | awk '{print $2}' | median)
  c=$(grep -F "$variant " "$results" | awk '{print $3}' | median)
  echo "  $variant: $r $c"
done
