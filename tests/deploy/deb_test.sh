#!/usr/bin/env bash
# Builds the .debs with cpack: the server's (extracted, its binary run: healthz, SIGTERM -> exit 0,
# metadata checked) and the C++ client library's -dev package (contents and Depends).
# Usage: deb_test.sh BUILD_DIR VERSION
set -euo pipefail
build=$1 version=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
scratch=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$scratch"; }
trap cleanup EXIT

# -B: a private packaging dir, so parallel runs do not share cpack's staging tree.
cpack --config "$build/CPackConfig.cmake" -B "$scratch/pkg" >"$scratch/cpack.log" 2>&1 ||
  { cat "$scratch/cpack.log" >&2; fail "cpack failed"; }
deb="$scratch/pkg/signal-server_${version}_amd64.deb"
[ -f "$deb" ] || fail "expected $deb, cpack made: $(ls "$scratch/pkg")"

contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/signal-server ./usr/lib/systemd/system/signal-server.service ./etc/default/signal-server; do
  grep -q " $f\$" <<<"$contents" || fail "package lacks $f"
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/default/signal-server ||
  fail "/etc/default/signal-server is not a conffile"

# Depends: the runtime libraries, plus the package of every library the binary links.
depends=$(dpkg-deb -f "$deb" Depends)
[ -n "$depends" ] || fail "no Depends (dpkg-shlibdeps did not run?)"
dpkg -x "$deb" "$scratch/root"
bin="$scratch/root/usr/bin/signal-server"
required=(libboost-json1.81.0 libboost-url1.81.0 libhiredis0.14)
for lib in $(ldd "$bin" | awk '/=> \//{print $3}'); do
  required+=("$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib")")
done
ldd "$bin" | grep -qE 'libssl|libcrypto' && required+=(libssl3)
for p in "${required[@]}"; do
  p=${p%%:*}
  # Literal match (package names such as libstdc++6 are not regex-safe).
  [[ ", $depends," == *", $p "* || ", $depends," == *", $p,"* ]] || fail "Depends lacks $p: $depends"
done

# Run the extracted binary on a free port (WS_PORT=0; the port is in the JSON log line).
cd "$scratch"
env -i PATH="$PATH" WS_PORT=0 LOG_LEVEL=info "$bin" >"$scratch/server.log" 2>&1 &
pid=$!
port=""
deadline=$((SECONDS + 15))
while [ -z "$port" ] && [ $SECONDS -lt $deadline ]; do
  kill -0 "$pid" 2>/dev/null || { cat "$scratch/server.log" >&2; fail "server exited at start"; }
  port=$(grep -o '"port":[0-9]*' "$scratch/server.log" | head -1 | cut -d: -f2 || true)
  [ -n "$port" ] || sleep 0.05
done
[ -n "$port" ] || fail "no \"port\" log line within 15 s"
body=$(curl -sS --max-time 5 -w ' %{http_code}' "http://127.0.0.1:$port/healthz") || fail "healthz unreachable"
[ "$body" = "ok 200" ] || fail "/healthz answered '$body', expected 'ok' with 200"

kill -TERM "$pid"
deadline=$((SECONDS + 15))
while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "still running 15 s after SIGTERM"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || { cat "$scratch/server.log" >&2; fail "exit code $rc after SIGTERM, expected 0"; }

# The client library's -dev package: headers, static library and CMake package, nothing else.
dev="$scratch/pkg/libsignal-client-dev_${version}_amd64.deb"
[ -f "$dev" ] || fail "expected $dev, cpack made: $(ls "$scratch/pkg")"
dev_contents=$(dpkg-deb -c "$dev")
for f in ./usr/include/signal_client/client.hpp ./usr/lib/libsignal_client.a \
         ./usr/lib/cmake/signal_client/signal_client-config.cmake \
         ./usr/lib/cmake/signal_client/signal_client-config-version.cmake \
         ./usr/lib/cmake/signal_client/signal_client-targets.cmake; do
  grep -q " $f\$" <<<"$dev_contents" || fail "dev package lacks $f"
done
grep -q "usr/bin/" <<<"$dev_contents" && fail "dev package carries a binary"
grep -q "signal_client" <<<"$contents" && fail "server package carries the client library"
dev_depends=$(dpkg-deb -f "$dev" Depends)
for p in libboost1.81-dev libboost-json1.81-dev libssl-dev; do
  [[ ", $dev_depends," == *", $p,"* || ", $dev_depends," == *", $p "* ]] ||
    fail "dev Depends lacks $p: $dev_depends"
done
echo "ok: $(basename "$deb"), Depends: $depends; $(basename "$dev"), Depends: $dev_depends"
