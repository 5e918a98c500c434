#!/usr/bin/env bash
# Soak: 15,000 members held for 15 minutes, 2,000 relayed msg/s with pairs leaving and joining all
# the time; the server's RSS, descriptors and queues must stay flat after warm-up, nothing lost.
#
#   bench/soak.sh [--minutes N] [--warmup-minutes M] [--redis] [--conns N] [--active-pairs N]
#                 [--rate MSGS_PER_S] [--churn PAIRS_PER_S] [--sample-every S] [--out DIR]
#                 [--nice N] [--no-build]
#
# The standard run (embedded bus, 15 minutes, the default load) writes bench/results/soak/
# (soak.json: the result, the command and the machine; soak-series.jsonl: one sample of the
# server every 10 s), then bench/soak_report redraws docs/perf-soak.svg and rewrites the part of
# docs/PERFORMANCE.md between the soak:begin/soak:end markers. Any other run (--minutes 1 to
# check the scripts, --redis, another load) writes everything, a copy of the page included, to
# build/bench/soak/, leaving the committed figures alone. Warm-up: 3 minutes, or a third of a
# shorter run.
# Builds the Release binaries in build/bench, starts the server (and with --redis its own
# redis-server) on free ports with the rate limits far above the load, as bench/run.sh does, and
# stops them however it exits. Server on CPU 0, signal-bench (and redis-server) on CPU 1.
# --nice N runs them all at that priority (e.g. -5 on a machine shared with compiles; needs root).
# Exit status: signal-bench's (0 when clean and flat).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
invocation="bench/soak.sh"
for a in "$@"; do [ "$a" = --no-build ] || invocation+=" $a"; done
minutes=15
warmup_minutes=""
redis=0
conns=15000
active=500
rate=2000
churn=10
sample=10
out=""
nice_n=0
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift ;;
    --warmup-minutes) warmup_minutes="$2"; shift ;;
    --redis) redis=1 ;;
    --conns) conns="$2"; shift ;;
    --active-pairs) active="$2"; shift ;;
    --rate) rate="$2"; shift ;;
    --churn) churn="$2"; shift ;;
    --sample-every) sample="$2"; shift ;;
    --out) out="$2"; shift ;;
    --nice) nice_n="$2"; shift ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

duration=$(python3 -c "print(round($minutes * 60))")
if [ -n "$warmup_minutes" ]; then
  warmup=$(python3 -c "print(round($warmup_minutes * 60))")
else
  warmup=$(python3 -c "print(min(180, round($duration / 3)))")
fi
# Short runs sample more often, so that the windows after warm-up hold a few samples.
if [ "$duration" -lt 600 ] && [ "$sample" = 10 ]; then
  sample=$(python3 -c "print(max(1, $duration // 30))")
fi
standard=0
if [ "$minutes" = 15 ] && [ -z "$warmup_minutes" ] && [ $redis = 0 ] && [ "$conns" = 15000 ] &&
   [ "$active" = 500 ] && [ "$rate" = 2000 ] && [ "$churn" = 10 ] && [ "$sample" = 10 ]; then
  standard=1
fi
if [ -z "$out" ]; then
  if [ $standard = 1 ]; then out=bench/results/soak; else out=build/bench/soak; fi
fi
logs=bench/results/logs/soak
[ $standard = 1 ] || logs="$out/logs"
mkdir -p "$out" "$logs"
out=$(cd "$out" && pwd)
logs=$(cd "$logs" && pwd)

need=()
for p in gnuplot-nox python3 util-linux; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ $redis = 0 ] || dpkg-query -W -f='${Status}' redis-server 2>/dev/null |
  grep -q "install ok installed" || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "soak.sh: need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "soak.sh: installing ${need[*]}" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -q \
    --no-install-recommends "${need[@]}"
fi

if [ $build = 1 ]; then
  scripts/deps.sh build
  cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIGNAL_BUILD_TESTS=OFF >/dev/null
  cmake --build build/bench --target signal-server signal-bench
fi

# Every member needs a descriptor in the server and one in signal-bench.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((conns + 1000)) ]; then
  echo "soak.sh: open-files limit $(ulimit -n) is too low for $conns connections" >&2
  exit 1
fi

server_cpu=0; bench_cpu=1
[ "$(nproc)" -ge 2 ] || bench_cpu=0
pin() { # CPU: sets `pinned` to the prefix that runs a command on that CPU (and under nice when
         # asked); both exec, so the pid of what they start is the command's.
  pinned=(taskset -c "$1")
  if [ "$nice_n" != 0 ]; then pinned=(nice -n "$nice_n" "${pinned[@]}"); fi
}
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/signal-soak.XXXXXX)  # no .env for the server to pick up here
server_pid=""; redis_pid=""; bench_pid=""; server_status=""
stopped_status=0
stop_pid() { # PID: TERM, 5 s, then KILL; its exit status in stopped_status
  local pid=$1
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  stopped_status=0
  wait "$pid" 2>/dev/null || stopped_status=$?
}
cleanup() {
  if [ -n "$bench_pid" ]; then stop_pid "$bench_pid"; bench_pid=""; fi
  if [ -n "$server_pid" ]; then stop_pid "$server_pid"; server_status=$stopped_status; server_pid=""; fi
  if [ -n "$redis_pid" ]; then stop_pid "$redis_pid"; redis_pid=""; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

server_env=(RATE_LIMIT_MESSAGES_PER_10S=100000000 RATE_LIMIT_IP_MSGS_PER_10S=1000000000
            RATE_LIMIT_ROOM_MSGS_PER_10S=100000000 RATE_LIMIT_CONN_PER_10S=100000000
            LOG_LEVEL=warn HOST=127.0.0.1 DRAIN_TIMEOUT_MS=1000 THREADS=1)
if [ $redis = 1 ]; then
  redis_port=$(free_port)
  pin $bench_cpu
  (cd "$work" && exec env -i PATH="$PATH" "${pinned[@]}" redis-server --port "$redis_port" \
    --bind 127.0.0.1 --save "" --appendonly no >"$logs/redis.log" 2>&1) &
  redis_pid=$!
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  server_env+=(REDIS_URL="redis://127.0.0.1:$redis_port")
fi
port=$(free_port)
pin $server_cpu
(cd "$work" && exec env -i PATH="$PATH" HOME="$HOME" "${server_env[@]}" WS_PORT="$port" \
  "${pinned[@]}" "$root/build/bench/signal-server" >"$logs/server.log" 2>&1) &
server_pid=$!
python3 - "$port" "$server_pid" <<'EOF'
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
for _ in range(200):
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("soak.sh: the server exited at start (see its log)")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit("soak.sh: the server did not become ready")
EOF
sleep 1  # the empty process's RSS is the bench's first reading

args=(soak --url "ws://127.0.0.1:$port" --conns "$conns" --active-pairs "$active" --rate "$rate"
      --churn "$churn" --duration "$duration" --warmup "$warmup" --sample-every "$sample"
      --source-ips 127.0.0.2-127.0.0.9)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "soak.sh: $((duration / 60)) min $((duration % 60)) s, warm-up $warmup s, results in $out" >&2
bench_status=0
pin $bench_cpu
# In the background, waited for: a signal to this script then stops everything at once.
"${pinned[@]}" build/bench/signal-bench "${args[@]}" --series "$out/soak-series.jsonl" \
  --pid "$server_pid" >"$out/soak-bench.out" 2> >(tee "$logs/signal-bench.log" >&2) &
bench_pid=$!
wait "$bench_pid" || bench_status=$?
bench_pid=""
loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)
server_alive=0
kill -0 "$server_pid" 2>/dev/null && server_alive=1
cleanup
trap - EXIT

# The command as the page shows it: ports and pids are per run.
shown="taskset -c $bench_cpu signal-bench ${args[*]} --series soak-series.jsonl --pid <server pid>"
[ "$nice_n" = 0 ] || shown="nice -n $nice_n $shown"
python3 bench/soak_report record --out "$out" --bench-output "$out/soak-bench.out" \
  --bench-exit "$bench_status" --server-alive "$server_alive" --server-exit "$server_status" \
  --command "$shown" --server-env "${server_env[*]}" --bus "$([ $redis = 1 ] && echo redis || echo embedded)" \
  --pinning "server CPU $server_cpu; signal-bench$([ $redis = 1 ] && echo ' and redis-server') CPU $bench_cpu" \
  --started "$started" --loadavg-start "$loadavg_start" --loadavg-end "$loadavg_end" \
  --nice "$nice_n" --invocation "$invocation"
rm -f "$out/soak-bench.out"

if [ $standard = 1 ]; then
  python3 bench/soak_report render --results "$out"
else
  cp docs/PERFORMANCE.md "$out/PERFORMANCE.md"
  python3 bench/soak_report render --results "$out" --doc "$out/PERFORMANCE.md" \
    --svg "$out/perf-soak.svg"
fi
exit "$bench_status"
