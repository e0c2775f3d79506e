# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, run from a small Debian image as a
# non-root user. Configuration, users and certificates are mounted under /etc/sessiongate.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
# The workspace's fuzz targets are not built here; cargo only needs their manifest.
COPY fuzz/Cargo.toml fuzz/
RUN mkdir -p src benches tests/e2e fuzz/src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/hot_path.rs && echo 'fn main() {}' > tests/e2e/main.rs \
    && echo 'fn main() {}' > fuzz/src/main.rs \
    && cargo build --release --locked \
    && rm -rf src benches tests
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN touch src/main.rs src/lib.rs && cargo build --release --locked \
    && strip target/release/sessiongate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin sessiongate
COPY --from=build /src/target/release/sessiongate /usr/local/bin/sessiongate
WORKDIR /etc/sessiongate
USER 10001:10001
# HTTPS, plain-HTTP redirect, admin (health, readiness).
EXPOSE 8443 8080 9090
STOPSIGNAL SIGTERM
# Health: GET /healthz and /readyz on server.admin_listen (set it to 0.0.0.0:9090 for probes
# from outside the container, with admin.token_env: a reachable admin listener needs a token).
ENTRYPOINT ["/usr/local/bin/sessiongate"]
CMD ["run", "--config", "/etc/sessiongate/gateway.toml"]
