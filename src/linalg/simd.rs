//! Instruction-set levels of vellum's hand-written kernels, detected at run time.
//!
//! Every kernel has a portable scalar twin (the test oracle) and x86-64 variants for AVX2+FMA and
//! AVX-512; on aarch64, NEON variants (NEON is part of the aarch64 baseline, so `Neon` is always
//! supported there; kernels without a NEON version run their scalar twins, written so that the
//! compiler vectorises them). The widest level the CPU has is used, unless `VELLUM_SIMD` names a
//! narrower one (`avx512`, `avx2`, `neon`, `scalar`) — the way to measure an AVX2 machine's path
//! on an AVX-512 machine. Within a level, the VNNI dot-product instructions are used where the CPU
//! has them (AVX-512 VNNI; AVX-VNNI, the VEX form, with AVX2); `avx512-novnni` and `avx2-novnni`
//! name the level without them (an AVX-512 CPU before Cascade Lake, an AVX2 CPU before Alder Lake
//! or Zen 5).

/// An instruction-set level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// AVX-512 F + BW + VL (512-bit vectors, byte and word lanes).
    Avx512,
    /// AVX2 with FMA (256-bit vectors).
    Avx2,
    /// aarch64 Advanced SIMD (128-bit vectors).
    Neon,
    /// Portable code.
    Scalar,
}

impl Level {
    /// The name `VELLUM_SIMD` takes and benchmarks print.
    pub fn name(self) -> &'static str {
        match self {
            Level::Avx512 => "avx512",
            Level::Avx2 => "avx2",
            Level::Neon => "neon",
            Level::Scalar => "scalar",
        }
    }

    /// Whether this CPU runs code of this level.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Level::Avx512 => {
                    std::is_x86_feature_detected!("avx512f")
                        && std::is_x86_feature_detected!("avx512bw")
                        && std::is_x86_feature_detected!("avx512vl")
                }
                Level::Avx2 => {
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
                }
                Level::Neon => false,
                Level::Scalar => true,
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            // NEON is part of the aarch64 baseline, except on targets built without it.
            self == Level::Scalar || (self == Level::Neon && cfg!(target_feature = "neon"))
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            self == Level::Scalar
        }
    }
}

/// The level kernels use: the widest this CPU supports, or the one `VELLUM_SIMD` names when the
/// CPU has it. Detected once per process.
pub fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let available = available_levels();
        let wanted = match std::env::var("VELLUM_SIMD").ok().as_deref() {
            Some("avx512") | Some("avx512-novnni") => Some(Level::Avx512),
            Some("avx2") | Some("avx2-novnni") => Some(Level::Avx2),
            Some("neon") => Some(Level::Neon),
            Some("scalar") => Some(Level::Scalar),
            _ => None,
        };
        wanted
            .filter(|w| available.contains(w))
            .unwrap_or(available[0])
    })
}

/// Every level this CPU supports, widest first (the tests run them all).
pub fn available_levels() -> Vec<Level> {
    [Level::Avx512, Level::Avx2, Level::Neon, Level::Scalar]
        .into_iter()
        .filter(|l| l.supported())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_is_always_available_and_last() {
        let levels = available_levels();
        assert_eq!(levels.last(), Some(&Level::Scalar));
        assert!(levels.contains(&level()));
    }
}
