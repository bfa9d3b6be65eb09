#!/usr/bin/env bash
# compare_encode.py on an AVX-512 CPU's AVX2 paths, the f32 matrix products included.
#
# `compare_encode.py --simd avx2-novnni` restricts vellum's own kernels (VELLUM_SIMD) and
# PyTorch's (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS) to AVX2, but the
# `gemm` crate behind vellum's f32 products picks its AVX-512 kernels by its own CPU detection,
# which has no switch. This script builds vellum once more, in a scratch clone of this
# repository's committed HEAD (uncommitted changes are not measured: it warns), with a copy of
# gemm-common whose `feature_detected!("avx512f")` answers false (so gemm takes its AVX2 + FMA
# kernels: `gemm_f32::microkernel::fma` in `perf`), and runs the comparison there. For measurement
# only: nothing in the repository changes.
#
# Usage: PY=/path/to/python benches/compare/compare_encode_avx2.sh [compare_encode.py options]
#   PY: a Python with torch and sentence-transformers (default python3); paths given to
#   compare_encode.py (--docs) must be absolute: it runs inside the clone.
# Scratch folder: $VELLUM_AVX2_DIR (default /tmp/vellum-encode-avx2); the registry crates and the
# patched gemm-common built there are reused by later runs, vellum's own crates rebuild each time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DIR="${VELLUM_AVX2_DIR:-/tmp/vellum-encode-avx2}"
# Absolute, for after the `cd` below, without resolving symlinks (a venv's python is one).
PY="$(command -v "${PY:-python3}")"
case "$PY" in /*) ;; *) PY="$PWD/$PY" ;; esac

# gemm-common's source as cargo resolved it for this lock file (fetched if missing).
SRC=$(cargo metadata --manifest-path "$ROOT/Cargo.toml" --format-version 1 --locked |
    python3 -c 'import json, os, sys
found = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "gemm-common"]
if len(found) != 1:
    sys.exit(f"expected one gemm-common in the dependency graph, found {len(found)}")
print(os.path.dirname(found[0]["manifest_path"]))')
PATCHED="$DIR/$(basename "$SRC")"
if [ ! -d "$PATCHED" ]; then
    mkdir -p "$DIR"
    rm -rf "$PATCHED.tmp"
    cp -r "$SRC" "$PATCHED.tmp"
    python3 - "$PATCHED.tmp/src/lib.rs" <<'EOF'
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
if src.count(old) != 1:
    sys.exit("gemm-common's feature_detected! is not the one this script patches: update it")
open(path, "w").write(src.replace(old, new))
EOF
    mv "$PATCHED.tmp" "$PATCHED"
fi
grep -q '("avx512f") =>' "$PATCHED/src/lib.rs" || {
    echo "$PATCHED is not patched: delete it and run again" >&2
    exit 1
}

if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then
    echo "warning: uncommitted changes are not measured (the clone has HEAD only)" >&2
fi
echo "measuring $(git -C "$ROOT" rev-parse --short HEAD) with $PATCHED (AVX-512 detection off)"
rm -rf "$DIR/repo"
git clone -q "$ROOT" "$DIR/repo"
mkdir -p "$DIR/target"
ln -s "$DIR/target" "$DIR/repo/target"
if grep -q '^\[patch.crates-io\]' "$DIR/repo/Cargo.toml"; then
    echo "Cargo.toml already has [patch.crates-io]: add gemm-common to it by hand" >&2
    exit 1
fi
printf '\n[patch.crates-io]\ngemm-common = { path = "%s" }\n' "$PATCHED" >> "$DIR/repo/Cargo.toml"
bash "$ROOT/tools/fetch-minilm.sh" "$ROOT/models/all-MiniLM-L6-v2"
mkdir -p "$DIR/repo/models"
ln -sfn "$ROOT/models/all-MiniLM-L6-v2" "$DIR/repo/models/all-MiniLM-L6-v2"
cd "$DIR/repo"
VELLUM_GEMM_AVX2=patched exec "$PY" benches/compare/compare_encode.py --simd avx2-novnni "$@"
