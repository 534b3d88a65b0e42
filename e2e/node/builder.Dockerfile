# The builder image for the repository's Dockerfile where no registry is reachable: the
# debootstrap base (images.sh) plus the Rust toolchain CI uses, laid out like the official
# rust:<version>-bookworm image (CARGO_HOME=/usr/local/cargo, cargo and rustc on PATH), so the
# Dockerfile's build stage runs unchanged on either.
#   docker build -f e2e/node/builder.Dockerfile --build-arg BASE_IMAGE=… --build-arg TOOLCHAIN_IMAGE=… CONTEXT
# CONTEXT holds only `ca/` (below); the toolchain comes in as an image.
ARG BASE_IMAGE
ARG TOOLCHAIN_IMAGE
FROM ${TOOLCHAIN_IMAGE} AS toolchain

FROM ${BASE_IMAGE}
# What rust:*-bookworm brings that a Rust build needs: a C toolchain (linking, build scripts),
# pkg-config, certificates for crates.io.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make pkg-config ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The host's local certificate authorities (/usr/local/share/ca-certificates, copied into the
# context by images.sh; often none): where HTTPS goes through an inspecting proxy, cargo inside
# the build must trust what the host trusts to reach crates.io.
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY --from=toolchain / /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo && cargo --version && rustc --version
