#!/usr/bin/env bash
# Runs every performance scenario with signal-bench and regenerates the performance page.
#
#   bench/run.sh [--quick] [--out DIR] [--hold-conns N] [--repeats N] [--only a,b] [--nice N]
#                [--rt N] [--no-build]
#
# Full run (~16 minutes): results in bench/results/ (one JSON per scenario, results.json with all
# of them and the machine), then bench/report rewrites the generated part of docs/PERFORMANCE.md
# and docs/perf-p99.svg.
# --quick: about two seconds per scenario, to check that the scripts work; results and a copy of
# the page go to build/bench/quick/ (the committed figures and page are left alone).
# Installs what is missing (Debian packages), builds the Release binaries in build/bench, raises
# the open-files limit to the hard limit, starts and stops every server and redis-server itself.
# --nice N runs them all at that priority (e.g. -5 on a machine shared with compiles; needs root).
# --rt N runs them all under chrt -f N (SCHED_FIFO): other work never preempts them (needs root).
set -euo pipefail

cd "$(dirname "$0")/.."
quick=0
out=""
build=1
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; pass+=(--quick) ;;
    --out) out="$2"; shift ;;
    --no-build) build=0 ;;
    --hold-conns|--repeats|--only|--nice|--rt) pass+=("$1" "$2"); shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$out" ]; then
  if [ $quick = 1 ]; then out=build/bench/quick; else out=bench/results; fi
fi

# Packages: the build's (scripts/deps.sh), then the benchmark's own, only those missing.
scripts/deps.sh build
need=()
for p in redis-server gnuplot-nox python3 util-linux procps; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "run.sh: need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "run.sh: installing ${need[*]}" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -q \
    --no-install-recommends "${need[@]}"
fi

if [ $build = 1 ]; then
  cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIGNAL_BUILD_TESTS=OFF >/dev/null
  cmake --build build/bench --target signal-server signal-bench
fi

# Held connections need one descriptor each in the server and in signal-bench.
ulimit -n "$(ulimit -Hn)"

# run.py stops every process it started when it exits, however it exits; this trap covers a
# signal that reaches the shell first (it forwards it and waits for run.py's cleanup).
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

/usr/bin/python3 bench/run.py --out "$out" --build-dir build/bench ${pass[@]+"${pass[@]}"} &
runner=$!
wait "$runner"
runner=""

if [ $quick = 1 ]; then
  cp docs/PERFORMANCE.md "$out/PERFORMANCE.md"
  /usr/bin/python3 bench/report --results "$out" --doc "$out/PERFORMANCE.md" \
    --svg "$out/perf-p99.svg" --readme ""
else
  /usr/bin/python3 bench/report --results "$out"
fi
