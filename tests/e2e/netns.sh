#!/usr/bin/env bash
# Runs a command in a network namespace of its own: loopback, plus a veth pair whose one
# address (198.18.0.1, a benchmarking range) gives WebRTC a host candidate. The namespace
# has no link to the outside, so nothing the browsers or peers send can leave the machine;
# Chromium gathers no candidates on loopback alone.
#   tests/e2e/netns.sh node tests/e2e/browser.e2e.mjs
set -euo pipefail
if [ "${E2E_IN_NETNS:-}" = 1 ]; then exec "$@"; fi
command -v unshare >/dev/null && command -v ip >/dev/null ||
  { echo "netns.sh: needs unshare (util-linux) and ip (iproute2)" >&2; exit 1; }
ns_opts=(--net)
[ "$(id -u)" -eq 0 ] || ns_opts=(--user --map-root-user --net)
exec unshare "${ns_opts[@]}" -- env E2E_IN_NETNS=1 bash -c '
  set -e
  ip link set lo up
  ip link add e2e0 type veth peer name e2e1
  ip addr add 198.18.0.1/24 dev e2e0
  ip link set e2e0 up
  ip link set e2e1 up
  ip route add default dev e2e0
  exec "$@"' netns.sh "$@"
