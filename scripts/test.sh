#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every check: formatting, clang-tidy on
# the pure core, the unit, integration and e2e suites under ASan+UBSan, the integration suite
# under ThreadSanitizer with two event loops, the fuzz targets briefly, then the whole suite
# (unit + integration + e2e + deploy) on the RelWithDebInfo build.
# The last lines printed are CTest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
jobs=$(nproc)

echo "== clang-format"
files=$(git ls-files '*.cpp' '*.hpp' 2>/dev/null || find src tests tools -name '*.[ch]pp')
clang-format-14 --dry-run --Werror $files

echo "== build (RelWithDebInfo)"
cmake -S . -B build/test -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSIGNAL_FAULT_INJECTION=ON \
  >/dev/null
cmake --build build/test -j "$jobs"

echo "== clang-tidy (pure core)"
core=$(ls src/config/*.cpp src/signaling/*.cpp src/auth/*.cpp src/limits/*.cpp src/obs/*.cpp src/bus/*.cpp)
clang-tidy-14 -p build/test --quiet --extra-arg=-Wno-unknown-warning-option $core 2>/dev/null | (! grep -E "(error|warning):")

# The sanitizer builds share the e2e tests' npm packages with build/test (installed once).
npm_dir="$PWD/build/test/tests/e2e/npm"

echo "== unit, integration and e2e suites under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSIGNAL_SANITIZE=ON -DSIGNAL_FAULT_INJECTION=ON \
  -DSIGNAL_E2E_NPM_DIR="$npm_dir" >/dev/null
cmake --build build/asan -j "$jobs" --target unit_tests integration_tests serial_integration_tests bus_tests
export UBSAN_OPTIONS=print_stacktrace=1
# Leaks are checked at every exit, the servers' too: the integration harness passes these options
# on and fails a test whose server printed a sanitizer report.
export ASAN_OPTIONS=detect_leaks=1
build/asan/tests/unit/unit_tests --gtest_brief=1
# The C++ client's tests run in the main suite only: its library compiles Beast header-only,
# minutes per file under a sanitizer on two cores.
client_tests='^(CppClient[.]|client_install_consumer$)'
(cd build/asan && ctest -L 'integration|e2e' -E "$client_tests" -j "$jobs" --timeout 300 --output-on-failure)

echo "== integration suite under ThreadSanitizer, THREADS=2"
cmake -S . -B build/tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSIGNAL_SANITIZE=thread \
  -DSIGNAL_FAULT_INJECTION=ON >/dev/null
cmake --build build/tsan -j "$jobs" --target integration_tests serial_integration_tests bus_tests
# Two loops in every server the tests start, whatever the machine's core count, so an upgrade's
# move to its room's loop, cross-loop delivery (TLS rooms, the bus' loop) and the loop-owned
# releases all run concurrently.
(cd build/tsan && SIGNAL_TEST_THREADS=2 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest -L integration -E "$client_tests" -j "$jobs" --timeout 300 --output-on-failure)

echo "== fuzz targets (30 s each, seeds in fuzz/corpus)"
scripts/fuzz.sh 30

echo "== test suite"
cd build/test
ctest --output-on-failure -j "$jobs" --timeout 300
