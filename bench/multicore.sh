#!/usr/bin/env bash
# Event loops against cores: relay and join throughput for THREADS=1, 2, 4, 8, 16 (those the
# machine has cores for), 100,000 idle connections with RSS per connection, the Redis bus relay.
#
#   bench/multicore.sh [OUT_DIR] [--build-dir DIR] [--loops 1,2,4] [--repeats N]
#                      [--hold-conns N] [--budget-s S] [--no-redis] [--nice N] [--rt N]
#                      [--quick]
#
# OUT_DIR (default bench/results/multicore-<UTC date>) gets multicore.json, summary.md and logs/.
# --build-dir DIR: use the signal-server and signal-bench already built there; without it the
#   Release binaries are built in build/bench (as bench/run.sh does).
# Run it as root on the big machine: the open-files limit is then raised to 250,000 so that
# 100,000 connections fit (one descriptor each in the server and in signal-bench). Where it
# cannot be raised, the hold step holds what the limit allows and the summary says so.
# Needs taskset (util-linux), python3; redis-server for the Redis bus step (skipped without it);
# the build installs its own Debian packages (scripts/deps.sh build).
# On 16 cores the steps take about 5 minutes; every step has a timeout and none starts after
# --budget-s (540 s by default, counted from the start, build included), so the whole run ends
# within 10 minutes (595 s at most). --quick: seconds per step, to check the script.
# --nice N / --rt N: every process it starts runs at that priority, or under chrt -f N
#   (SCHED_FIFO: other work never preempts it; for a machine shared with compiles; root).
# Nothing here runs in CI or in any test.
set -euo pipefail

cd "$(dirname "$0")/.."
invocation="bench/multicore.sh${*:+ $*}"
out="bench/results/multicore-$(date -u +%Y%m%d-%H%M%S)"
build_dir=""
budget=540
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift ;;
    --budget-s) budget="$2"; shift ;;
    --loops|--repeats|--hold-conns|--nice|--rt) pass+=("$1" "$2"); shift ;;
    --no-redis|--quick) pass+=("$1") ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "multicore.sh: unknown option $1" >&2; exit 2 ;;
    *) out="$1" ;;
  esac
  shift
done

for tool in taskset python3; do
  command -v "$tool" >/dev/null || { echo "multicore.sh: $tool is missing" >&2; exit 1; }
done

if [ -z "$build_dir" ]; then
  build_dir=build/bench
  scripts/deps.sh build  # the build's Debian packages, only those missing
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIGNAL_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build_dir" --target signal-server signal-bench
fi
for b in signal-server signal-bench; do
  [ -x "$build_dir/$b" ] || { echo "multicore.sh: $build_dir/$b is not built" >&2; exit 1; }
done

# 100,000 held connections: a descriptor each in the server and in signal-bench, plus the rest.
# Root may raise the hard limit (the kernel's fs.nr_open permitting); anyone may use the hard one.
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 250000 ]; then
  ulimit -Hn 250000 2>/dev/null || echo "multicore.sh: open-files limit stays at $(ulimit -Hn)" >&2
fi
ulimit -n "$(ulimit -Hn)"

mkdir -p "$out"
{ echo "\$ uptime"; uptime; echo "\$ nproc"; nproc; grep -m1 'model name' /proc/cpuinfo || true; } \
  > "$out/machine.txt"

# multicore.py stops every process it started when it exits, however it exits; this trap
# covers a signal that reaches the shell first (forwarded, then its cleanup is waited for).
runner=""
cleanup() {
  if [ -n "$runner" ] && kill -0 "$runner" 2>/dev/null; then
    kill -TERM "$runner" 2>/dev/null || true
    wait "$runner" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The budget counts from this script's start (a build included); the timeout stops a step that
# hangs past it, so that the whole run ends within budget + 55 s (595 s by default).
budget=$((budget - SECONDS))
[ "$budget" -ge 60 ] || { echo "multicore.sh: no time left after the build (--budget-s)" >&2; exit 1; }
timeout --signal=TERM --kill-after=15 $((budget + 40)) /usr/bin/python3 bench/multicore.py \
  --out "$out" --build-dir "$build_dir" --budget-s "$budget" --command "$invocation" \
  ${pass[@]+"${pass[@]}"} &
runner=$!
wait "$runner"
runner=""
