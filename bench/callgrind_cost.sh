#!/usr/bin/env bash
# Server CPU cost per relayed message, counted in instructions by callgrind (deterministic, so a
# noisy machine does not blur it the way it blurs msg/s):
#
#   bench/callgrind_cost.sh [--redis | --cluster | --two] [--query '?resume=1'] [--runs N] [--rooms R] [--window K]
#       [--settle S] [--messages M] [--max-measure T] [--out DIR] BENCH BIN...
#
# Each run: BIN under valgrind --tool=callgrind (THREADS=1, pinned to CPU 0), BENCH relay (and
# redis-server with --redis, a Redis Cluster of three masters and no replicas with --cluster) on
# CPU 1, R rooms of two peers (default 50), 300-byte candidates,
# closed loop with window K (default 4). Once every room has joined and S seconds (default 5)
# of relay have passed, BENCH is stopped (SIGSTOP) until the server is idle; the forwarded
# counter is read and callgrind dumps (part 1: start-up, joins, settle; dropped). BENCH resumes
# until it has received M more messages (default 30000; at most T seconds, default 40), is
# stopped again until the server is idle, and callgrind dumps again (part 2). So part 2 holds
# whole messages only and no /metrics scrape: its Ir total / forwarded delta = Ir per message.
# (A dump opens the interval, not callgrind_control -z: after -z, valgrind 3.19's next dump has
# "totals:" above "summary:", by 0.7% in a trial; after a dump the two agree, as checked here.)
# --two: the receiving side of two instances on one redis-server. BIN runs a second, plain
# instance on CPU 1 that every room's sender joins; the peers under callgrind are the receivers,
# so part 2 counts what an instance spends on messages published elsewhere (read from Redis and
# delivered), per message the sending instance forwarded.
# Runs are interleaved binary by binary; prints "BIN Ir/msg (Ir, messages)" per run, then the
# median per binary. A run fails when BENCH reports anything lost, duplicated, reordered or
# closed, or when BENCH ended before the measured interval did.
# --query adds to the connect URL (e.g. '?resume=1' for resumable sessions).
# --out keeps the raw outputs (callgrind dumps, BENCH and server output) in DIR.
set -euo pipefail
redis=0; query=""; runs=2; rooms=50; window=4; settle=5; messages=30000; maxmeasure=40; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --redis) redis=1 ;;
    --cluster) redis=2 ;;
    --two) redis=3 ;;
    --query) query="$2"; shift ;;
    --runs) runs="$2"; shift ;;
    --rooms) rooms="$2"; shift ;;
    --window) window="$2"; shift ;;
    --settle) settle="$2"; shift ;;
    --messages) messages="$2"; shift ;;
    --max-measure) maxmeasure="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "callgrind_cost.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 2 ] || { sed -n '5,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
bench=$1; shift
need=(valgrind callgrind_control curl python3 taskset)
if [ $redis != 0 ]; then need+=(redis-server redis-cli); fi
for t in "${need[@]}"; do
  command -v "$t" >/dev/null || { echo "callgrind_cost.sh: needs $t" >&2; exit 1; }
done
if [ -z "$out" ]; then work=$(mktemp -d); keep=0; else mkdir -p "$out"; work=$out; keep=1; fi
results="$work/results.txt"; : >"$results"

spid=""; bpid=""; rpid=""; apid=""
stop_all() {
  for p in $bpid $spid $apid $rpid; do
    kill -CONT "$p" 2>/dev/null || true
    kill "$p" 2>/dev/null || true
  done
  for p in $bpid $spid $apid $rpid; do wait "$p" 2>/dev/null || true; done
  spid=""; bpid=""; rpid=""; apid=""
}
# Starts redis-server on CPU 1 on a free port, left in $rport; its pid joins rpid.
start_redis() {
  rport=$(free_port)
  taskset -c 1 redis-server --port "$rport" --save '' --appendonly no "$@" >>"$work/redis.$rport.log" 2>&1 &
  rpid="$rpid $!"
  for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
}
cleanup() { stop_all; if [ $keep = 0 ]; then rm -rf "$work"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$(dirname "$0")/lib.sh"
lim+=(STALE_MEMBER_PROBE_MS=0)
forwarded() {
  curl -sf "http://127.0.0.1:$1/metrics" | awk '$1=="cloudgaming_messages_forwarded_total" {print $2}'
}
received() { grep -o 'received=[0-9]*' "$1" | tail -1 | cut -d= -f2; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# Waits until the server spends under 2 clock ticks in half a second (BENCH stopped: drained).
wait_idle() {
  local a b
  for _ in $(seq 60); do
    a=$(cpu_ticks "$1"); sleep 0.5; b=$(cpu_ticks "$1")
    [ $((b - a)) -lt 2 ] && return 0
  done
  echo "callgrind_cost.sh: server $1 never went idle" >&2; return 1
}
dump_total() { awk '$1=="totals:" {print $2}' "$1"; }

fail_run() { echo "$1 failed: $2" | tee -a "$results" >&2; stop_all; }

for round in $(seq "$runs"); do
  i=0
  for bin in "$@"; do
    i=$((i + 1)); tag="bin$i.run$round"
    port=$(free_port); extra=()
    if [ $redis = 1 ] || [ $redis = 3 ]; then
      start_redis
      extra=(REDIS_URL="redis://127.0.0.1:$rport")
    elif [ $redis = 2 ]; then
      nodes=()
      for n in 1 2 3; do
        d="$work/$tag.node$n"; mkdir -p "$d"
        # The bus port is given: port + 10000 can overflow.
        start_redis --cluster-enabled yes --cluster-port "$(free_port)" \
          --cluster-config-file "$d/nodes.conf" --dir "$d"
        nodes+=("127.0.0.1:$rport")
      done
      redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$work/$tag.create.log" 2>&1
      for _ in $(seq 100); do
        redis-cli -p "${nodes[0]#*:}" cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1
      done
      extra=(REDIS_CLUSTER_NODES="$(IFS=,; echo "${nodes[*]}")")
    fi
    env "${lim[@]}" "${extra[@]}" THREADS=1 WS_PORT="$port" LOG_LEVEL=warn \
      taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/cg.$tag.%p" "$bin" \
      >"$work/$tag.server.log" 2>&1 &
    spid=$!
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { fail_run "$bin" "server not ready"; continue; }
    # The senders' instance (--two): its forwarded counter counts the messages.
    counted=$port; urls=(--url "ws://127.0.0.1:$port/$query")
    if [ $redis = 3 ]; then
      counted=$(free_port)
      env "${lim[@]}" "${extra[@]}" THREADS=1 WS_PORT="$counted" LOG_LEVEL=warn \
        taskset -c 1 "$bin" >"$work/$tag.sender.log" 2>&1 &
      apid=$!
      for _ in $(seq 100); do curl -sf "http://127.0.0.1:$counted/readyz" >/dev/null && break; sleep 0.1; done
      urls=(--url "ws://127.0.0.1:$counted/$query" --url-b "ws://127.0.0.1:$port/$query")
    fi
    # Long enough to outlast the settle, the two drains and the measured interval.
    taskset -c 1 "$bench" relay "${urls[@]}" --rooms "$rooms" --size 300 \
      --rate 0 --window "$window" --warmup 2 --duration $((settle + maxmeasure + 15)) \
      >"$work/$tag.bench.json" 2>"$work/$tag.bench.log" &
    bpid=$!
    for _ in $(seq 600); do grep -qs "joined=$rooms " "$work/$tag.bench.log" && break; sleep 0.1; done
    grep -q "joined=$rooms " "$work/$tag.bench.log" || { fail_run "$bin" "rooms not joined"; continue; }
    sleep "$settle"
    kill -STOP "$bpid"; wait_idle "$spid"
    c0=$(forwarded "$counted")
    callgrind_control -d "$spid" >/dev/null 2>&1   # part 1: start-up, joins, settle (dropped)
    kill -CONT "$bpid"
    r0=$(received "$work/$tag.bench.log"); t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$maxmeasure" ]; do
      sleep 1
      [ $(($(received "$work/$tag.bench.log") - r0)) -lt "$messages" ] || break
    done
    kill -STOP "$bpid"; wait_idle "$spid"
    callgrind_control -d "$spid" >/dev/null 2>&1   # part 2: the measured interval
    c1=$(forwarded "$counted"); sleep 1; c1b=$(forwarded "$counted")
    ended=0; grep -q '"mode"' "$work/$tag.bench.json" && ended=1
    kill -CONT "$bpid"
    brc=0; wait "$bpid" || brc=$?; bpid=""
    kill "$spid"; wait "$spid" 2>/dev/null || true; spid=""
    if [ -n "$apid" ]; then kill "$apid"; wait "$apid" 2>/dev/null || true; apid=""; fi
    for p in $rpid; do kill "$p"; wait "$p" 2>/dev/null || true; done; rpid=""
    dumps=("$work"/cg."$tag".*.2); dump=${dumps[0]}
    [ -f "$dump" ] || { fail_run "$bin" "no callgrind dump"; continue; }
    summary=$(tail -1 "$work/$tag.bench.json")
    [ $ended = 0 ] || { fail_run "$bin" "bench ended before the measured interval did"; continue; }
    [ "$c1" = "$c1b" ] || { fail_run "$bin" "server not idle at the dump ($c1 then $c1b)"; continue; }
    [ $brc = 0 ] || { fail_run "$bin" "bench exit $brc: $summary"; continue; }
    msgs=$((c1 - c0)); ir=$(dump_total "$dump")
    sum=$(awk '$1=="summary:" {print $2}' "$dump")
    [ "$sum" = "$ir" ] || { fail_run "$bin" "dump summary $sum != totals $ir"; continue; }
    [ "$msgs" -gt 0 ] || { fail_run "$bin" "nothing forwarded"; continue; }
    [ "$msgs" -ge 20000 ] || echo "callgrind_cost.sh: only $msgs messages measured (fewer than 20000)" >&2
    per=$(awk -v a="$ir" -v b="$msgs" 'BEGIN {printf "%.0f", a / b}')
    echo "$bin $per Ir/msg ($ir Ir, $msgs messages, $tag)" | tee -a "$results"
  done
done
echo "median Ir/msg:"
for bin in "$@"; do
  grep -F "$bin " "$results" | grep -v ' failed: ' | awk '{print $2}' | sort -n |
    awk -v b="$bin" '{v[NR]=$1} END {if (NR) print "  " b ": " (NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2); else print "  " b ": failed"}'
done
