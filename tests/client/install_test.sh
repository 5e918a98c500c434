#!/usr/bin/env bash
# Installs the client library (component dev) from BUILD_DIR into a scratch prefix and builds
# the example host against it with find_package(signal_client).
# Usage: install_test.sh BUILD_DIR EXAMPLE_SOURCE_DIR
set -euo pipefail
build=$1 example=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cmake --build "$build" --target signal_client >"$scratch/build.log" 2>&1 ||
  { cat "$scratch/build.log" >&2; fail "building signal_client"; }
cmake --install "$build" --prefix "$scratch/prefix" --component dev >"$scratch/install.log" 2>&1 ||
  { cat "$scratch/install.log" >&2; fail "cmake --install --component dev"; }
for f in include/signal_client/client.hpp lib/libsignal_client.a \
         lib/cmake/signal_client/signal_client-config.cmake \
         lib/cmake/signal_client/signal_client-targets.cmake; do
  [ -f "$scratch/prefix/$f" ] || fail "not installed: $f ($(cd "$scratch/prefix" && find . -type f))"
done
# Only the public header: the library's private sources must not be needed.
[ "$(find "$scratch/prefix/include" -type f | wc -l)" -eq 1 ] || fail "extra headers installed"
[ ! -e "$scratch/prefix/bin" ] || fail "the dev component installs binaries"

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$example" -B "$scratch/consumer" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$scratch/prefix" >"$scratch/configure.log" 2>&1 ||
  { cat "$scratch/configure.log" >&2; fail "consumer configure (find_package)"; }
cmake --build "$scratch/consumer" >"$scratch/consumer.log" 2>&1 ||
  { cat "$scratch/consumer.log" >&2; fail "consumer build"; }
"$scratch/consumer/example_host" >/dev/null 2>&1 && fail "example without arguments should exit 2"
[ -x "$scratch/consumer/example_host" ] || fail "no example_host"
echo "ok: installed to a scratch prefix; example_host built against it"
