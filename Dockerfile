# signal-server container image.
#   docker build -t signal-server .
#   docker run --rm -p 3002:3002 signal-server
# tests/deploy/check_dockerfile.py keeps the build stage in step with scripts/deps.sh and
# scripts/run.sh, so the image is built exactly as the README builds it.

# ---- build stage: the same packages and the same Release build as scripts/run.sh
FROM debian:bookworm AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      g++ cmake ninja-build ccache pkg-config libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libssl-dev libhiredis-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIGNAL_BUILD_TESTS=OFF \
 && cmake --build build/release --target signal-server \
 && strip build/release/signal-server

# ---- runtime stage: only the shared libraries the binary links (see `ldd signal-server`), and
# the CA store that an https:// JWKS_URL is verified against
FROM debian:bookworm-slim
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libboost-json1.81.0 libboost-url1.81.0 libhiredis0.14 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Fixed numeric uid so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 signal \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin signal
COPY --from=build /src/build/release/signal-server /usr/bin/signal-server
USER 10001:10001
# The server reads an optional .env from its working directory: an empty root-owned one.
WORKDIR /app
ENV NODE_ENV=production
# glibc keeps 7 freed blocks of each size per thread by default; connections that open or close
# together, and messages delivered in one burst, free more than that, and the rest take malloc's
# slow path. 64 per size: 6-7% fewer instructions per relayed message and 12% per join, at no
# cost in memory per connection (docs/PERFORMANCE.md, "glibc's per-thread cache").
ENV GLIBC_TUNABLES=glibc.malloc.tcache_count=64
EXPOSE 3002
# PORT (set by hosting platforms) wins over WS_PORT inside the server; the probe follows it.
# curl is not in slim: bash's /dev/tcp talks HTTP without adding a package.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-3002} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# SIGTERM starts the drain (clients get 1012) and the process exits 0 within DRAIN_TIMEOUT_MS.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/signal-server"]
