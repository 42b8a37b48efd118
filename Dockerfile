# Multi-stage build: a static-enough binary on a distroless, non-root runtime.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# jemalloc (the exporter's allocator) is built with make, which the slim image lacks.
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# Without the `demo` feature: the image carries no simulator (crates/xapi-sim stays in the
# build context only because the workspace lists it).
RUN cargo build --release --locked --no-default-features --bin xen-exporter

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="xen-exporter" \
      org.opencontainers.image.description="Prometheus exporter for XCP-ng and Citrix XenServer pools" \
      org.opencontainers.image.licenses="BSD-2-Clause"
COPY --from=build /src/target/release/xen-exporter /usr/local/bin/xen-exporter
USER nonroot
EXPOSE 9100
ENTRYPOINT ["/usr/local/bin/xen-exporter"]
