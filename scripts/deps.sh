#!/usr/bin/env bash
# Installs the Debian bookworm packages signal-server needs, only those missing.
# Usage: scripts/deps.sh [build|test]   (test adds what the test suite and lint need)
set -euo pipefail

packages=(g++ cmake ninja-build ccache pkg-config
          libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libssl-dev libhiredis-dev)
if [ "${1:-build}" = "test" ]; then
  packages+=(libgtest-dev libgmock-dev googletest libbenchmark-dev redis-server redis-sentinel clang-format-14 clang-tidy-14 clang-14 libclang-rt-14-dev curl dpkg-dev systemd python3-yaml openssl)
  # e2e tests (tests/e2e): headless Chromium, ip/unshare for their network namespace, and
  # coturn's turnserver (the TURN test starts its own on free loopback ports; the coturn service
  # the package enables is neither needed nor started by the tests).
  packages+=(chromium iproute2 util-linux coturn)
  # They need node >= 20 with npm; a node already on PATH is kept (Debian's is older).
  command -v node >/dev/null || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "deps.sh: installing ${missing[*]}" >&2
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
