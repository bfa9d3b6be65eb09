"""The CPU a comparison runs on, and the peers' best settings for it.

Every comparison script imports this before numpy / faiss / torch, so that:
- OpenBLAS (bundled with numpy and faiss-cpu) uses the kernels of this CPU: `SkylakeX` with
  AVX-512, `Zen` on AMD and `Haswell` on Intel with AVX2 (forcing SkylakeX there, as these scripts
  once did, is wrong: it makes OpenBLAS fall back), left to OpenBLAS elsewhere (aarch64);
- OpenMP threads sleep instead of spinning at barriers (`OMP_WAIT_POLICY=PASSIVE`): on a shared
  machine FAISS's spinning barrier made 2 threads slower than 1;
- every result names the CPU model and its SIMD flags (`describe()`).
An explicit OPENBLAS_CORETYPE / OMP_WAIT_POLICY in the environment wins.
"""
import os
import platform

SIMD_FLAGS = ["avx512f", "avx512_bf16", "avx512_vnni", "avx2", "fma", "f16c", "asimd", "sve"]


def _cpuinfo():
    model, flags, vendor = platform.processor() or platform.machine(), set(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
                elif key == "vendor_id" and not vendor:
                    vendor = value.strip()
    except OSError:
        pass
    return model, flags, vendor


MODEL, FLAGS, VENDOR = _cpuinfo()


def openblas_coretype():
    """OpenBLAS's best kernel set for this CPU, or None to let it choose."""
    if "avx512f" in FLAGS:
        return "SkylakeX"
    if "avx2" in FLAGS:
        return "Zen" if VENDOR == "AuthenticAMD" else "Haswell"
    return None


def setup_peer_env():
    """Sets the peers' environment (call before importing numpy, faiss or torch)."""
    coretype = openblas_coretype()
    if coretype:
        os.environ.setdefault("OPENBLAS_CORETYPE", coretype)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def describe():
    """One line naming the CPU, its SIMD flags and the peers' settings."""
    simd = [f for f in SIMD_FLAGS if f in FLAGS] or ["none of " + ", ".join(SIMD_FLAGS)]
    coretype, best = os.environ.get("OPENBLAS_CORETYPE", "(auto)"), openblas_coretype()
    if best and coretype != best:
        coretype += f" (set outside the script; this CPU's best is {best}: FAISS and numpy run slower)"
    return (f"CPU: {MODEL} ({platform.machine()}, {os.cpu_count()} cores); SIMD: {' '.join(simd)}; "
            f"OPENBLAS_CORETYPE={coretype}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}")
