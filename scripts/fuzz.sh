#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS (default 30) from the seed
# corpora in fuzz/corpus. New inputs go to a scratch copy; crashes land in build/fuzz/artifacts.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSIGNAL_FUZZ=ON \
  -DCMAKE_CXX_COMPILER=clang++-14 -DSIGNAL_BUILD_TESTS=OFF >/dev/null
cmake --build build/fuzz
mkdir -p build/fuzz/artifacts
failed=()
for t in protocol connect jwt jwks resp; do
  work="build/fuzz/corpus-$t"
  mkdir -p "$work"
  log="build/fuzz/fuzz_$t.log"
  echo "== fuzz_$t for ${seconds}s"
  # libFuzzer exits non-zero on a crash, a sanitizer report or a leak.
  if UBSAN_OPTIONS=halt_on_error=1 build/fuzz/fuzz/fuzz_$t -max_total_time="$seconds" \
      -max_len=8192 -artifact_prefix="build/fuzz/artifacts/$t-" -print_final_stats=1 \
      "$work" "fuzz/corpus/$t" >"$log" 2>&1; then
    grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units)" "$log" || true
  else
    grep -E "ERROR|SUMMARY|Test unit written" "$log" || tail -20 "$log"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures in ${failed[*]} (inputs in build/fuzz/artifacts)" >&2
  exit 1
fi
