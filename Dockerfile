# Multi-stage build of the `enoki` binary (the example services, the CLI).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin enoki

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /app enoki
WORKDIR /app
COPY --from=build /src/target/release/enoki /usr/local/bin/enoki
COPY routes /app/routes
COPY static /app/static
USER enoki
ENTRYPOINT ["enoki"]
