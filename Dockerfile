# syntax=docker/dockerfile:1
#
# The mediator image: a release build of `services/mediator` on a distroless runtime (glibc,
# libgcc, CA certificates; no shell, no package manager), running as the numeric user 10001.
#
#   docker build -t didcomm-mediator .
#   docker run --rm -p 3000:3000 -p 9464:9464 \
#     -e MEDIATOR_MASTER_SECRET=... -e MEDIATOR_PUBLIC_HTTP_ENDPOINT=https://mediator.example.com \
#     -e MEDIATOR_PUBLIC_WS_ENDPOINT=wss://mediator.example.com didcomm-mediator
#
# Configuration: built-in defaults, then `--config FILE` (or MEDIATOR_CONFIG=FILE), then
# MEDIATOR_-prefixed variables with `__` between levels (MEDIATOR_STORAGE__REDIS__URL=...).
# The image only changes the two listen addresses so that they are reachable from outside the
# container. There is no HEALTHCHECK (no curl in a distroless image): orchestrators probe
# GET /healthz (alive) and GET /readyz (store reachable, not shutting down) on port 3000.

ARG RUST_IMAGE=rust:1.89-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The whole workspace: cargo needs every member's manifest to resolve the lock file.
COPY . .
# Cache mounts keep the registry and the target directory between builds (BuildKit); the binary
# is copied out of the cached target directory in the same step.
RUN --mount=type=cache,id=mediator-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=mediator-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=mediator-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p mediator \
    && install -D -m 0755 target/release/mediator /out/mediator \
    && install -d -m 0700 /out/data

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/mediator /usr/local/bin/mediator
# A single node without Redis keeps its data (the embedded store, the generated master secret)
# here: mount a volume on it. Compose and the Kubernetes manifests run the Redis backend.
COPY --from=build --chown=10001:10001 /out/data /var/lib/mediator
# Reachable from outside the container (the built-in defaults bind 127.0.0.1 and no metrics).
ENV MEDIATOR_LISTEN=0.0.0.0:3000 \
    MEDIATOR_TELEMETRY__PROMETHEUS__LISTEN=0.0.0.0:9464 \
    MEDIATOR_DATA_DIR=/var/lib/mediator
VOLUME /var/lib/mediator
# 3000: DIDComm over HTTP POST and WebSocket, /healthz, /readyz, /invitation. 9464: /metrics.
EXPOSE 3000 9464
# Numeric, so that Kubernetes' runAsNonRoot can check it without an /etc/passwd entry.
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/mediator"]
