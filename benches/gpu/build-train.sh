#!/usr/bin/env bash
# Builds, here, a `vellum` CLI that also trains on NVIDIA GPUs (`vellum train --device cuda:N`)
# and the `train_timing` bench (benches/compare/compare_train.py --device cuda --exe ...):
# candle's CUDA backend, whose kernels nvcc compiles at build time (~25 minutes on 2 cores; kept
# out of CI). nvcc 13.0 comes from PyPI wheels (no GPU needed); `libcuda.so.1`, which no wheel
# ships, is linked against a stub with its name and the symbols used, and the real driver is
# loaded on the GPU machine. Output: benches/gpu/vellum-train-cuda.tar.xz (carry it; run with
# LD_LIBRARY_PATH on the CUDA 13 libraries, e.g. torch's nvidia/cu13/lib).
# See ../shared/GPU.md for the facts this relies on.
set -euo pipefail
cd "$(dirname "$0")/../.."
V=${NVCC_VENV:-/tmp/vellum-nvcc}
if [ ! -x "$V/bin/python" ]; then
  python3 -m venv "$V"
  "$V/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.0.19 \
    nvidia-curand==10.4.0.35
fi
"$V/bin/pip" install -q "nvidia-cuda-nvrtc==13.0.*"
C13=$("$V/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
# nvcc expects lib64 and the cccl headers beside the others.
[ -e "$C13/lib64" ] || ln -s lib "$C13/lib64"
# The driver library stub: every cu* symbol candle's cudarc links, as a no-op.
STUB="$V/stub"  # a fixed path: a changed RUSTFLAGS would rebuild everything
rm -rf "$STUB"; mkdir -p "$STUB"
python3 - "$STUB" <<'PYEOF'
import re, subprocess, sys, glob, os
d = sys.argv[1]
src = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs"))[-1]
names = sorted(set(re.findall(r"pub (?:unsafe )?fn (cu[A-Za-z0-9_]+)\(", open(src).read())))
open(f"{d}/stub.c", "w").write("".join(f"int {n}(void) {{ return 999; }}\n" for n in names))
subprocess.check_call(["cc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o",
                       f"{d}/libcuda.so.1", f"{d}/stub.c"])
os.symlink("libcuda.so.1", f"{d}/libcuda.so")
PYEOF
# The linker wants unversioned names for the CUDA libraries the wheels ship versioned.
for lib in cudart nvrtc curand cublas cublasLt; do
  found=$(ls "$C13"/lib/lib$lib.so.* 2>/dev/null | head -1)
  [ -n "$found" ] && ln -sf "$found" "$STUB/lib$lib.so"
done
export PATH="$C13/bin:$PATH" CUDA_HOME="$C13" CUDA_PATH="$C13" CUDA_ROOT="$C13" \
  CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000 \
  LIBRARY_PATH="$STUB:$C13/lib:${LIBRARY_PATH:-}" RUSTFLAGS="-L $STUB -L $C13/lib"
cargo build --release -p vellum-cli --no-default-features --features cuda-train \
  --target-dir target/gpu-train
cargo build --release -p vellum-train --features cuda-train --bench train_timing \
  --target-dir target/gpu-train
cp "$(ls -t target/gpu-train/release/deps/train_timing-* | grep -v '\.d$' | head -1)" \
  target/gpu-train/release/train_timing
strip target/gpu-train/release/vellum target/gpu-train/release/train_timing
tar -cJf benches/gpu/vellum-train-cuda.tar.xz -C target/gpu-train/release vellum train_timing
ls -la benches/gpu/vellum-train-cuda.tar.xz
