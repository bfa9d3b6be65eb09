//! CPU kernels with scalar twins: similarity of one query against stored vectors of every element
//! type ([`similarity`], simsimd with runtime dispatch), blocked `Q·Xᵀ` products ([`gemm`], the
//! `gemm` crate), the bf16 screening tile ([`tile`], AVX-512 BF16), i16 × i8 products over
//! screening codes ([`codes`], AVX-512 / AVX2) and u8 × i8 block products over panel-packed codes
//! ([`packed_codes`]), the rows whose products reach a threshold ([`select`]), i8 distances for
//! graph navigation ([`nav`]), and
//! few-rows f32 products for one query through an encoder ([`rows`]). [`simd`] picks the
//! instruction-set level at run time.
//!
//! Every SIMD kernel keeps a scalar twin that the tests compare against. This layer knows nothing
//! of collections, segments or files.

pub mod codes;
pub mod gemm;
pub mod nav;
pub mod packed_codes;
pub mod rows;
pub mod select;
pub mod simd;
pub mod similarity;
pub mod tile;

pub use crate::dtype::normalize;
