#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every check: formatting, clang-tidy on
# the pure core, unit tests under ASan+UBSan, the fuzz targets briefly, then the whole suite
# (unit + integration).
# The last lines printed are CTest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
jobs=$(nproc)

echo "== clang-format"
files=$(git ls-files '*.cpp' '*.hpp' 2>/dev/null || find src tests tools -name '*.[ch]pp')
clang-format-14 --dry-run --Werror $files

echo "== build (RelWithDebInfo)"
cmake -S . -B build/test -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/test -j "$jobs"

echo "== clang-tidy (pure core)"
core=$(ls src/config/*.cpp src/signaling/*.cpp src/auth/*.cpp src/limits/*.cpp src/obs/*.cpp src/bus/*.cpp)
clang-tidy-14 -p build/test --quiet --extra-arg=-Wno-unknown-warning-option $core 2>/dev/null | (! grep -E "(error|warning):")

echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSIGNAL_SANITIZE=ON >/dev/null
cmake --build build/asan -j "$jobs" --target unit_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/asan/tests/unit/unit_tests --gtest_brief=1

echo "== fuzz targets (30 s each, seeds in fuzz/corpus)"
scripts/fuzz.sh 30

echo "== test suite"
cd build/test
ctest --output-on-failure -j "$jobs" --timeout 300
