#!/usr/bin/env bash
# Installs what is missing, builds (Release) and starts signal-server on the embedded bus.
# Extra arguments go to the server, e.g. scripts/run.sh --ws-port 3003
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIGNAL_BUILD_TESTS=OFF >/dev/null
cmake --build build/release --target signal-server
exec build/release/signal-server "$@"
