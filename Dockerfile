# The `enoki` binary (the gateway, the example services, the CLI), built
# in the Rust image and run in a slim one as a non-root user.
#
#   docker build -t enoki .
#   docker run -p 8000:8000 enoki          # everything embedded: open http://127.0.0.1:8000/
#
# Dependencies build in a layer of their own (cargo-chef): a change to the
# code rebuilds enoki, not every crate.

FROM rust:1-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin enoki
COPY . .
RUN cargo build --release --locked --bin enoki

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin enoki \
    && install -d -o enoki -g enoki /app
COPY --from=build /src/target/release/enoki /usr/local/bin/enoki
# The example routes and the page are built into the binary; mount a
# directory and pass --routes DIR to serve others.
WORKDIR /app
USER enoki
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:8000/healthz"]
ENTRYPOINT ["enoki"]
CMD ["--listen", "0.0.0.0:8000"]
