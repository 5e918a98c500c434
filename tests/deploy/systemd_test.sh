#!/usr/bin/env bash
# systemd-analyze verify on deploy/systemd/signal-server.service, with ExecStart pointed at the
# built binary (verify needs it to exist; the shipped unit uses the .deb's /usr/bin path).
# Usage: systemd_test.sh SRC BINARY
set -euo pipefail
src=$1 bin=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
unit="$src/deploy/systemd/signal-server.service"
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing: scripts/deps.sh test installs systemd"
grep -qx 'ExecStart=/usr/bin/signal-server' "$unit" || fail "ExecStart must be /usr/bin/signal-server (the .deb path)"
grep -qx 'EnvironmentFile=-/etc/default/signal-server' "$unit" || fail "EnvironmentFile=-/etc/default/signal-server missing"

# The stop timeout must outlast the drain (DRAIN_TIMEOUT_MS default from the server itself).
drain_ms=$("$bin" --help | sed -n 's/^ *DRAIN_TIMEOUT_MS (default \([0-9]*\)).*/\1/p')
stop_s=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$unit")
[ -n "$drain_ms" ] && [ -n "$stop_s" ] || fail "cannot read DRAIN_TIMEOUT_MS default or TimeoutStopSec"
[ $((stop_s * 1000)) -gt "$drain_ms" ] || fail "TimeoutStopSec=${stop_s}s is not above DRAIN_TIMEOUT_MS=${drain_ms}ms"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
sed "s|^ExecStart=/usr/bin/signal-server|ExecStart=$bin|" "$unit" >"$scratch/signal-server.service"
# verify prints problems on stderr but may still exit 0 for some of them: fail on any output.
out=$(systemd-analyze verify "$scratch/signal-server.service" 2>&1) || fail "systemd-analyze verify failed:
$out"
[ -z "$out" ] || fail "systemd-analyze verify reported:
$out"
echo "ok: systemd-analyze verify clean; TimeoutStopSec=${stop_s}s > DRAIN_TIMEOUT_MS=${drain_ms}ms"
