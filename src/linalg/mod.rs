//! CPU kernels with scalar twins: similarity of one query against stored vectors of every element
//! type ([`similarity`], simsimd with runtime dispatch), blocked `Q·Xᵀ` products ([`gemm`], the
//! `gemm` crate), and the bf16 screening tile ([`tile`], AVX-512 BF16 with runtime detection).
//!
//! Every SIMD kernel keeps a scalar twin that the tests compare against. This layer knows nothing
//! of collections, segments or files.

pub mod gemm;
pub mod similarity;
pub mod tile;
