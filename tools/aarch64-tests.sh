#!/usr/bin/env bash
# Builds vellum for aarch64 and runs its unit tests (every SIMD kernel against its scalar twin,
# NEON included) under qemu user-mode emulation. Correctness only: emulated timings mean nothing.
# Installs the cross compiler and qemu from Debian and the Rust target with rustup when missing;
# where the target cannot be installed (no access to Rust's distribution server), says so and
# stops without failing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then
    (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user) >/dev/null
fi
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    if ! rustup target add aarch64-unknown-linux-gnu; then
        echo "aarch64 tests SKIPPED: rustup could not install the aarch64-unknown-linux-gnu target"
        exit 0
    fi
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo clippy -p vellum --features encoders --target aarch64-unknown-linux-gnu --lib -- -D warnings
cargo test -p vellum --features encoders --target aarch64-unknown-linux-gnu --lib "$@"
