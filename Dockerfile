# Weir images. Two targets from one build:
#   docker build --target worker   -t weir-worker   .   # `weir`: run, jobmanager, taskmanager, job control
#   docker build --target operator -t weir-operator .   # `weir-operator`: the StreamJob controller
# Both run as a non-root user on Debian slim (the worker links Debian's librocksdb), under tini:
# the binary is PID 1's child, so signals are forwarded and zombies reaped as usual, and a
# `kubectl exec <pod> -- kill -9 <pid>` of the binary crashes the container the way a real crash
# does (the kernel ignores SIGKILL sent to a namespace's PID 1 from inside it; e2e/run.sh relies
# on this to crash a JobManager and the operator on any cluster).
#
# The two images everything else comes from are build arguments, so the same file builds where
# no registry is reachable (e2e/node/images.sh passes a debootstrap base and a builder made from
# it with CI's Rust toolchain):
#   BUILDER_IMAGE  a Debian image with cargo on PATH and CARGO_HOME=/usr/local/cargo
#                  (default: the official rust:<RUST_VERSION>-<DEBIAN>)
#   BASE_IMAGE     the runtime's Debian with apt (default: debian:<DEBIAN>-slim)
# No `# syntax=` line: BuildKit's built-in Dockerfile frontend (Docker 20.10 and later) has the
# cache mounts used below, and an external frontend would have to be pulled from a registry.
#
# Where the binaries come from is a third build argument, BINARIES:
#   build      (default) the `build` stage below: `cargo build --release` from the sources
#   prebuilt   the `prebuilt` stage: `weir` and `weir-operator` taken from the build context, a
#              directory holding just those two files, built on a Debian of the same release
#              (glibc, librocksdb7.8). CI does this with the binaries it has already compiled
#              (e2e/node/images.sh): everything else in the images is this file's.
# BuildKit builds only the stages the target needs, so the other one is never run.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm
ARG BUILDER_IMAGE=rust:${RUST_VERSION}-${DEBIAN}
ARG BASE_IMAGE=debian:${DEBIAN}-slim
ARG BINARIES=build

FROM ${BUILDER_IMAGE} AS build
# The RocksDB state backend links Debian's librocksdb (bindgen needs libclang), as in CI
# (worker/engine/install-rocksdb-deps.sh).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librocksdb-dev libsnappy-dev liblz4-dev libzstd-dev zlib1g-dev libbz2-dev libclang-dev clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p weir -p weir-operator \
 && mkdir -p /out \
 && cp target/release/weir target/release/weir-operator /out/

FROM scratch AS prebuilt
COPY weir weir-operator /out/

FROM ${BINARIES} AS binaries

FROM ${BASE_IMAGE} AS base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 weir \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin weir

FROM base AS worker
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb7.8 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=binaries /out/weir /usr/local/bin/weir
USER 65532:65532
# REST API (rest.port) and the JobManager RPC port.
EXPOSE 8081 6123
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/weir"]
CMD ["--help"]

FROM base AS operator
COPY --from=binaries /out/weir-operator /usr/local/bin/weir-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/weir-operator"]
