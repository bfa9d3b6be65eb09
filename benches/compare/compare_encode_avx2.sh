#!/usr/bin/env bash
# compare_encode.py on an AVX-512 CPU's AVX2 paths, the f32 matrix products included.
#
# `compare_encode.py --simd avx2-novnni` restricts vellum's own kernels (VELLUM_SIMD) and
# PyTorch's (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS) to AVX2, but the
# `gemm` crate behind vellum's f32 products picks its AVX-512 kernels by its own CPU detection,
# which has no switch. This script builds vellum once more, in a scratch clone of this
# repository's committed HEAD, with a copy of gemm-common whose `feature_detected!("avx512f")`
# answers false (so gemm takes its AVX2 + FMA kernels: `gemm_f32::microkernel::fma` in `perf`),
# and runs the comparison there. For measurement only: nothing in the repository changes.
#
# Usage: benches/compare/compare_encode_avx2.sh [compare_encode.py options]
#   (run with a Python that has torch and sentence-transformers: PY=/path/to/python)
# Scratch folder: $WORK (default /tmp/vellum-encode-avx2); delete it to rebuild from scratch.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${WORK:-/tmp/vellum-encode-avx2}"
PY="${PY:-python3}"
VERSION=$(awk '/^name = "gemm-common"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.lock")
SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/gemm-common-"$VERSION" | head -1)
mkdir -p "$WORK"
if [ ! -d "$WORK/gemm-common" ]; then
    cp -r "$SRC" "$WORK/gemm-common"
    "$PY" - "$WORK/gemm-common/src/lib.rs" <<'EOF'
import sys
path = sys.argv[1]
src = open(path).read()
old = """macro_rules! feature_detected {
    ($tt: tt) => {
        ::std::arch::is_x86_feature_detected!($tt)"""
new = """macro_rules! feature_detected {
    ("avx512f") => {
        false
    };
    ($tt: tt) => {
        ::std::arch::is_x86_feature_detected!($tt)"""
assert src.count(old) == 1, "gemm-common's feature_detected! changed: update this script"
open(path, "w").write(src.replace(old, new))
EOF
fi
rm -rf "$WORK/repo"
git clone -q "$ROOT" "$WORK/repo"
mkdir -p "$WORK/target"
ln -s "$WORK/target" "$WORK/repo/target"  # kept between runs: only changed crates rebuild
printf '\n[patch.crates-io]\ngemm-common = { path = "%s" }\n' "$WORK/gemm-common" >> "$WORK/repo/Cargo.toml"
bash "$ROOT/tools/fetch-minilm.sh" "$ROOT/models/all-MiniLM-L6-v2"
mkdir -p "$WORK/repo/models"
ln -sfn "$ROOT/models/all-MiniLM-L6-v2" "$WORK/repo/models/all-MiniLM-L6-v2"
cd "$WORK/repo"
exec "$PY" benches/compare/compare_encode.py --simd avx2-novnni "$@"
