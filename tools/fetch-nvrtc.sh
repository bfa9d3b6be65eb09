#!/usr/bin/env bash
# Installs NVRTC, CUDA's run-time compiler (the PyPI wheel nvidia-cuda-nvrtc 13.0, no GPU or
# driver needed), into a cached folder and prints the folder holding libnvrtc.so.13. With that
# folder on LD_LIBRARY_PATH, `cargo test` compiles vellum's GPU kernels (src/gpu/kernels.cu) for
# sm_75 and sm_90 (test gpu::tests::kernels_compile_with_nvrtc), which otherwise skips.
# Usage: export LD_LIBRARY_PATH="$(tools/fetch-nvrtc.sh):$LD_LIBRARY_PATH"
set -euo pipefail
D="${VELLUM_NVRTC_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vellum/nvrtc-13.0}"
LIB="$D/nvidia/cu13/lib"
if [ ! -e "$LIB/libnvrtc.so.13" ]; then
    rm -rf "$D"
    python3 -m pip install --quiet --disable-pip-version-check --target "$D" \
        "nvidia-cuda-nvrtc==13.0.*" >&2
fi
echo "$LIB"
