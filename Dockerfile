# syntax=docker/dockerfile:1
#
# One image for all of orderflow: the five services, the schema registry and
# orderctl, all in /usr/local/bin. There is no ENTRYPOINT. docker-compose.yml
# and deploy/ choose the binary with the command, e.g.
#
#   docker build -t orderflow:dev .
#   docker run --rm orderflow:dev orderctl topics list
#   docker run --rm -e DATABASE_URL=... -p 8080:8080 orderflow:dev order-service
#
# Build notes:
# - The dependencies are compiled in a layer of their own (cargo-chef). That
#   layer changes only when Cargo.toml, Cargo.lock or third_party/rdkafka-sys
#   change, so editing the code rebuilds only the workspace crates.
# - librdkafka is built from third_party/rdkafka-sys (the published
#   rdkafka-sys with one fix, see third_party/librdkafka/README.md), using
#   its ./configure + make build. This needs only the C toolchain and the zlib
#   and OpenSSL headers that rust:1-bookworm already has. The workspace
#   enables the rdkafka features `tokio`, `libz` and `ssl` (TLS and
#   SASL/SCRAM to the brokers, linked against the system OpenSSL, so the
#   runtime image installs libssl3); no cmake, no Cyrus SASL, no zstd.
# - sqlx needs no database at build time: the compile-time checked queries
#   (sqlx::query!) compile from the data committed in each crate's .sqlx/,
#   because .cargo/config.toml sets SQLX_OFFLINE=true; both are in the build
#   context. The migrations are embedded with sqlx::migrate!(), and each
#   service applies them when it starts, or alone with `--migrate-only`.
# - The event schemas and openapi.json files are compiled in with
#   include_str!. A copy of schemas/ also goes into the image at
#   /usr/share/orderflow/schemas (the working directory), so that
#   `orderctl schemas check --dir schemas` works there as it does in a
#   checkout.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ------------------------------------------------------------------ chef
FROM ${RUST_IMAGE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src
# No debug info, and symbols stripped by cargo. This is set here so that the
# dependency layer (cook) and the final build use the same profile.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never

# ------------------------------------------------------------------ planner
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ------------------------------------------------------------------ builder
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The patched librdkafka ([patch.crates-io] in Cargo.toml) is a dependency
# the recipe does not carry; the cook needs it in place.
COPY third_party/rdkafka-sys/ third_party/rdkafka-sys/
# Dependencies only (cached until the recipe changes).
RUN cargo chef cook --release --locked --workspace --bins --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && for bin in order-service inventory-service payment-service shipping-service \
               notification-service schema-registry orderctl; do \
      install -m 0755 "target/release/$bin" /out/; \
    done

# ------------------------------------------------------------------ runtime
FROM ${RUNTIME_IMAGE} AS runtime
# curl: for container healthchecks (GET /health/ready). ca-certificates:
# the usual trust store. libssl3: librdkafka's TLS and SASL/SCRAM.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 orderflow \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin orderflow

COPY --from=builder /out/ /usr/local/bin/
COPY schemas/ /usr/share/orderflow/schemas/
WORKDIR /usr/share/orderflow

# The services bind 0.0.0.0 on their own port by default: order 8080,
# registry 8081, inventory 8082, payment 8083, shipping 8084,
# notification 8085.
EXPOSE 8080 8081 8082 8083 8084 8085
# The user is given by number, so Kubernetes can check runAsNonRoot.
USER 10001:10001

LABEL org.opencontainers.image.title="orderflow" \
      org.opencontainers.image.description="orderflow services (order, inventory, payment, shipping, notification), schema registry and orderctl" \
      org.opencontainers.image.licenses="Apache-2.0"

# No ENTRYPOINT: the command names the binary (see docker-compose.yml and
# deploy/). Without a command, the image prints orderctl's help.
CMD ["orderctl", "--help"]
