#!/usr/bin/env bash
# Builds, here (no CUDA toolkit or GPU needed: CUDA is loaded at run time), the binaries that
# benches/gpu/run.sh runs on a GPU machine, and packs them into benches/gpu/bin.tar.xz (ignored by
# git; carry it to the device). One command: benches/gpu/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benches/gpu/bin
rm -rf "$out" benches/gpu/bin.tar.xz
mkdir -p "$out"
artifact() { # cargo's JSON messages on stdin -> the executable of target $1
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1" | tail -1
}
cargo build --release -p vellum-cli
cp target/release/vellum "$out/"
cp "$(cargo test --release -p vellum --features cuda,encoders --test integration --no-run --message-format=json | artifact integration)" "$out/integration"
cp "$(cargo build --release -p vellum --features cuda,encoders --bench gpu_timing --message-format=json | artifact gpu_timing)" "$out/gpu_timing"
strip "$out"/*
tar -cJf benches/gpu/bin.tar.xz -C benches/gpu bin
rm -rf "$out"
ls -la benches/gpu/bin.tar.xz
