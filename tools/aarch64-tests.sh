#!/usr/bin/env bash
# Builds vellum for aarch64 and runs its unit tests (every SIMD kernel against its scalar twin,
# NEON included) under qemu user-mode emulation. Correctness only: emulated timings mean nothing.
# Installs the cross compilers and qemu from Debian and the Rust target with rustup when missing.
# Where they cannot be installed (no apt, no access to Rust's distribution server) it says
# SKIPPED and exits 0, unless VELLUM_REQUIRE_AARCH64=1 makes that an error.
set -euo pipefail
cd "$(dirname "$0")/.."
skip() {
    echo "aarch64 tests SKIPPED: $*"
    [ "${VELLUM_REQUIRE_AARCH64:-0}" = 1 ] && exit 1
    exit 0
}
have() { command -v "$1" >/dev/null 2>&1; }
if ! have aarch64-linux-gnu-gcc || ! have aarch64-linux-gnu-g++ || ! have qemu-aarch64; then
    (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user) >/dev/null \
        || skip "could not install the cross compilers and qemu with apt-get"
fi
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    rustup target add aarch64-unknown-linux-gnu \
        || skip "rustup could not install the aarch64-unknown-linux-gnu target"
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo clippy -p vellum --features encoders --target aarch64-unknown-linux-gnu --lib -- -D warnings
cargo test -p vellum --features encoders --target aarch64-unknown-linux-gnu --lib "$@"
