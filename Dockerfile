# syntax=docker/dockerfile:1.7
# sessiongate's container image: a release build in the Rust image, run from Debian slim as an
# unprivileged user (README, "Docker"). scripts/docker-check verifies this file on a machine
# without Docker.
#
#   docker build --build-arg SESSIONGATE_REVISION=$(git rev-parse --short=12 HEAD) -t sessiongate .
#
# The image carries docker/gateway.toml as /etc/sessiongate/gateway.toml (listening on every
# interface of the container); mount certs/, keys/ and users.toml beside it, or your own
# gateway.toml over it. Relative paths in it are read from /etc/sessiongate.

# Base images pinned to exact releases: the Rust toolchain the project is tested with, and the
# Debian point release scripts/docker-check rebuilds the runtime stage from.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# The whole manifest's targets must exist for cargo to read it (benches, tests, the fuzz
# workspace member), so the sources come in whole; .dockerignore keeps out target/, .git and
# node_modules. Dependencies stay cached across builds in BuildKit cache mounts, whatever the
# target list says.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The pages' askama templates (and their configuration), compiled into the binary.
COPY askama.toml ./
COPY templates ./templates
COPY benches ./benches
COPY tests ./tests
COPY fuzz ./fuzz
# .git is not copied: build.rs takes the revision that --version prints from this argument.
ARG SESSIONGATE_REVISION=unknown
ENV SESSIONGATE_REVISION=${SESSIONGATE_REVISION}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sessiongate \
    && install -D -m 0755 target/release/sessiongate /out/sessiongate \
    && strip /out/sessiongate

FROM debian:12.15-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin sessiongate
COPY --from=build /out/sessiongate /usr/local/bin/sessiongate
COPY docker/gateway.toml /etc/sessiongate/gateway.toml
# `run` and `healthcheck` both read this file unless -c names another.
ENV SESSIONGATE_CONFIG=/etc/sessiongate/gateway.toml
WORKDIR /etc/sessiongate
USER 10001:10001
# HTTPS and the plain-HTTP redirect. The admin listener (/healthz, /readyz, /metrics) stays on
# the container's loopback, where the health check below asks it.
EXPOSE 8443 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/sessiongate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/sessiongate"]
CMD ["run"]
