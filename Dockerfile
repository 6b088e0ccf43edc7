# flowlens image for the server roles: collect, land, migrate, and the sensor (see docs/scale-out.md).
# The lab stack (docker-compose.yml) builds it; by hand: docker build -t flowlens .
#
# GO_VERSION must match the `go` line of go.mod (scripts/compose-check.sh checks it).
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: this layer stays cached while only sources change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# cgo for the sensor's AF_PACKET capture (gopacket's afpacket reads the kernel's
# TPACKET_V3 structures through cgo; without it `flowlens sensor --interface` says
# it is unavailable). It links only glibc, which the runtime image has.
RUN CGO_ENABLED=1 go build -trimpath -ldflags '-s -w' -o /flowlens ./cmd/flowlens

# The runtime must have glibc: the binary is dynamically linked (cgo, and purego,
# the lazy libchdb binding, which needs /lib64/ld-linux-x86-64.so.2, libc.so.6, libdl.so.2 and libpthread.so.0
# (no symbol versions, so any glibc does). Alpine (musl) and distroless/static
# cannot exec it. A glibc base also lets `flowlens run` load a mounted libchdb
# (CHDB_LIB_PATH) if someone wants the embedded store in a container.
FROM debian:13-slim
# wget serves the health check; nothing else is added.
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 flowlens \
 && useradd --system --uid 10001 --gid flowlens --home-dir /var/lib/flowlens \
      --no-create-home --shell /usr/sbin/nologin flowlens \
 && install -d -o flowlens -g flowlens -m 0750 /var/lib/flowlens
COPY --from=build /flowlens /usr/local/bin/flowlens

# Non-root: every port is above 1024. SO_RCVBUFFORCE needs root, so the UDP
# receive buffer is capped by the host's net.core.rmem_max (docs/scale-out.md).
USER flowlens:flowlens
# A fresh named volume mounted here is created owned by flowlens (Docker copies
# the directory's owner), so the Kafka spool and template state are writable.
WORKDIR /var/lib/flowlens
ENV FLOWLENS_DATA_DIR=/var/lib/flowlens \
    FLOWLENS_HTTP_LISTEN=:8080
EXPOSE 2055/udp 4739/udp 6343/udp 8080/tcp

# For long-running roles (collect, land); the compose file disables it for migrate.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD wget -q -O /dev/null http://127.0.0.1:8080/healthz || exit 1

ENTRYPOINT ["/usr/local/bin/flowlens"]
CMD ["collect"]
