#!/usr/bin/env bash
# Server CPU cost per handshake + join, counted in instructions by callgrind (deterministic enough
# that a noisy machine does not blur it the way it blurs joins/s):
#
#   bench/callgrind_join.sh [--runs N] [--conns N] [--concurrency C] BENCH BIN...
#
# Each run: BIN under valgrind --tool=callgrind with instrumentation off (THREADS=1, on CPU 0);
# BENCH connect (CPU 1) opens, joins and closes 500 connections to warm it up; instrumentation is
# switched on for --conns more (default 4000, --concurrency 50 at once) and off again. Prints
# "BIN Ir/join (Ir, joins)" per run (collected Ir / joins), runs interleaved binary by binary, then
# the median per binary. The environment reaches the server: run it once per setting to compare
# one (GLIBC_TUNABLES=... bench/callgrind_join.sh ...). A run fails when a pair fails to join.
set -euo pipefail
runs=2; conns=4000; concurrency=50
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift ;;
    --conns) conns="$2"; shift ;;
    --concurrency) concurrency="$2"; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "callgrind_join.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 2 ] || { sed -n '5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
bench=$1; shift
for t in valgrind callgrind_control curl python3 taskset; do
  command -v "$t" >/dev/null || { echo "callgrind_join.sh: needs $t" >&2; exit 1; }
done
work=$(mktemp -d); results="$work/results.txt"; : >"$results"
spid=""
cleanup() { if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
. "$(dirname "$0")/lib.sh"

for run in $(seq "$runs"); do
  for bin in "$@"; do
    port=$(free_port); cg="$work/callgrind.$run.$(basename "$bin")"
    env "${lim[@]}" THREADS=1 WS_PORT="$port" LOG_LEVEL=warn taskset -c 0 valgrind --tool=callgrind \
      --instr-atstart=no --callgrind-out-file="$cg" "$bin" >"$cg.log" 2>&1 & spid=$!
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    taskset -c 1 "$bench" connect --url "ws://127.0.0.1:$port/" --conns 500 \
      --concurrency "$concurrency" >/dev/null 2>&1
    callgrind_control -i on "$spid" >/dev/null 2>&1
    out=$(taskset -c 1 "$bench" connect --url "ws://127.0.0.1:$port/" --conns "$conns" \
          --concurrency "$concurrency" 2>/dev/null | tail -1)
    callgrind_control -i off "$spid" >/dev/null 2>&1
    kill -INT "$spid"; wait "$spid" 2>/dev/null || true; spid=""
    joined=$(echo "$out" | grep -o '"joined_conns":[0-9]*' | cut -d: -f2)
    failed=$(echo "$out" | grep -o '"failed_pairs":[0-9]*' | cut -d: -f2)
    if [ "${joined:-0}" != "$conns" ] || [ "${failed:-1}" != 0 ]; then
      echo "callgrind_join.sh: run $run of $bin: joined ${joined:-?} of $conns, failed pairs ${failed:-?}" >&2
      exit 1
    fi
    # Collected with instrumentation on only: the interval's Ir ("totals:"; "summary:" stays 0).
    ir=$(awk '$1 == "totals:" {print $2}' "$cg")
    echo "$bin $((ir / conns)) Ir/join ($ir Ir, $conns joins)" | tee -a "$results"
  done
done
echo "median Ir/join:"
for bin in "$@"; do
  echo "  $bin: $(grep -F "$bin " "$results" | awk '{print $2}' | median)"
done
