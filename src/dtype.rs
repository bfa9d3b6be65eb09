//! Element types of stored vectors and the similarity metrics.

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The element type a vector field is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16 (the usual choice for ColBERT token embeddings).
    F16,
    /// bfloat16: the top 16 bits of a binary32.
    Bf16,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }

    /// The code stored in segment section tables (see `format-spec/segment.md`).
    pub const fn code(self) -> u32 {
        match self {
            DType::F32 => 1,
            DType::F16 => 2,
            DType::Bf16 => 3,
        }
    }

    /// Inverse of [`DType::code`].
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(DType::F32),
            2 => Some(DType::F16),
            3 => Some(DType::Bf16),
            _ => None,
        }
    }

    /// Lower-case name as used in field specs (`f32`, `f16`, `bf16`).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }

    /// Parses `f32`, `f16` or `bf16`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(DType::F32),
            "f16" | "float16" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            other => Err(Error::Schema(format!(
                "unknown element type {other:?}: expected f32, f16 or bf16"
            ))),
        }
    }

    /// The first value (index and value) that this type cannot hold as a finite number (it would
    /// round to ±infinity), if any: above 65504 in magnitude for f16, above ~3.3895e38 for bf16.
    pub fn first_overflow(self, values: &[f32]) -> Option<(usize, f32)> {
        let over = |v: f32| match self {
            DType::F32 => !v.is_finite(),
            DType::F16 => f16::from_f32(v).is_infinite(),
            DType::Bf16 => bf16::from_f32(v).is_infinite(),
        };
        values.iter().position(|&v| over(v)).map(|i| (i, values[i]))
    }

    /// Appends `values` encoded in this type (little-endian) to `out`.
    pub fn encode_into(self, values: &[f32], out: &mut Vec<u8>) {
        match self {
            DType::F32 => out.extend_from_slice(bytemuck::cast_slice(values)),
            DType::F16 => {
                out.reserve(values.len() * 2);
                for v in values {
                    out.extend_from_slice(&f16::from_f32(*v).to_le_bytes());
                }
            }
            DType::Bf16 => {
                out.reserve(values.len() * 2);
                for v in values {
                    out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes());
                }
            }
        }
    }

    /// Inverse of [`DType::encode_into`]: appends the values of little-endian `bytes` (any
    /// alignment; a trailing partial element is ignored) to `out` as f32.
    ///
    /// ```
    /// use vellum::DType;
    /// let mut bytes = Vec::new();
    /// DType::F16.encode_into(&[1.5, -2.0], &mut bytes);
    /// let mut back = Vec::new();
    /// DType::F16.decode_into(&bytes, &mut back);
    /// assert_eq!(back, [1.5, -2.0]);
    /// ```
    pub fn decode_into(self, bytes: &[u8], out: &mut Vec<f32>) {
        match self {
            DType::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            DType::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            DType::Bf16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How two vectors are compared. Every metric is reported as a score where higher is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Inner product `q·x`.
    Ip,
    /// Cosine similarity `q·x / (|q||x|)` (0 when either vector is zero).
    Cosine,
    /// Negated squared Euclidean distance `-|q-x|²`, so that higher is better.
    L2,
}

impl Metric {
    /// Lower-case name (`ip`, `cosine`, `l2`).
    pub const fn name(self) -> &'static str {
        match self {
            Metric::Ip => "ip",
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
        }
    }

    /// Parses `ip`, `cosine` or `l2` (also `dot`, `cos`).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ip" | "dot" | "inner_product" => Ok(Metric::Ip),
            "cosine" | "cos" => Ok(Metric::Cosine),
            "l2" | "euclidean" => Ok(Metric::L2),
            other => Err(Error::Schema(format!(
                "unknown metric {other:?}: expected ip, cosine or l2"
            ))),
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A borrowed run of stored elements, typed by the field's [`DType`]. Zero-copy from the mapped file.
#[derive(Debug, Clone, Copy)]
pub enum VectorRef<'a> {
    /// f32 elements.
    F32(&'a [f32]),
    /// f16 elements.
    F16(&'a [f16]),
    /// bf16 elements.
    Bf16(&'a [bf16]),
}

impl<'a> VectorRef<'a> {
    /// Interprets little-endian `bytes` as elements of `dtype`.
    ///
    /// Returns `None` when the length is not a multiple of the element size or the bytes are not
    /// aligned for the element type (never the case for sections of a valid segment).
    pub fn from_bytes(dtype: DType, bytes: &'a [u8]) -> Option<Self> {
        Some(match dtype {
            DType::F32 => VectorRef::F32(bytemuck::try_cast_slice(bytes).ok()?),
            DType::F16 => VectorRef::F16(bytemuck::try_cast_slice(bytes).ok()?),
            DType::Bf16 => VectorRef::Bf16(bytemuck::try_cast_slice(bytes).ok()?),
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            VectorRef::F32(v) => v.len(),
            VectorRef::F16(v) => v.len(),
            VectorRef::Bf16(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            VectorRef::F32(_) => DType::F32,
            VectorRef::F16(_) => DType::F16,
            VectorRef::Bf16(_) => DType::Bf16,
        }
    }

    /// Converts into `out` (which must have the same length) as f32.
    pub fn write_f32(&self, out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        match self {
            VectorRef::F32(v) => out.copy_from_slice(v),
            VectorRef::F16(v) => v.convert_to_f32_slice(out),
            VectorRef::Bf16(v) => v.convert_to_f32_slice(out),
        }
    }

    /// Copies the elements out as f32.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.len()];
        self.write_f32(&mut out);
        out
    }

    /// A sub-range of the elements.
    pub fn slice(&self, range: std::ops::Range<usize>) -> VectorRef<'a> {
        match self {
            VectorRef::F32(v) => VectorRef::F32(&v[range]),
            VectorRef::F16(v) => VectorRef::F16(&v[range]),
            VectorRef::Bf16(v) => VectorRef::Bf16(&v[range]),
        }
    }

    /// Index of the first NaN or infinite element, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        match self {
            VectorRef::F32(v) => v.iter().position(|x| !x.is_finite()),
            VectorRef::F16(v) => v.iter().position(|x| !x.is_finite()),
            VectorRef::Bf16(v) => v.iter().position(|x| !x.is_finite()),
        }
    }

    /// The raw little-endian bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            VectorRef::F32(v) => bytemuck::cast_slice(v),
            VectorRef::F16(v) => bytemuck::cast_slice(v),
            VectorRef::Bf16(v) => bytemuck::cast_slice(v),
        }
    }
}

/// Vector values read in place from a file or, when they had to be computed (the decompressed
/// tokens of a codes-only multi-vector field), owned as f32.
#[derive(Debug, Clone)]
pub enum VectorCow<'a> {
    /// Stored values, in the field's element type.
    Borrowed(VectorRef<'a>),
    /// Computed values.
    Owned(Vec<f32>),
}

impl VectorCow<'_> {
    /// The values as a [`VectorRef`] (f32 for computed values).
    pub fn as_ref(&self) -> VectorRef<'_> {
        match self {
            VectorCow::Borrowed(v) => *v,
            VectorCow::Owned(v) => VectorRef::F32(v),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.as_ref().len()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32, copied (or moved out when owned).
    pub fn into_f32_vec(self) -> Vec<f32> {
        match self {
            VectorCow::Borrowed(v) => v.to_f32_vec(),
            VectorCow::Owned(v) => v,
        }
    }

    /// The values as f32, copied.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        self.as_ref().to_f32_vec()
    }
}

/// Divides `v` by its L2 norm (a zero vector stays zero): the one normalisation the PLAID
/// codec, its k-means, its decompression and the late-interaction search share.
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The largest Euclidean norm a stored or query vector may have: `sqrt(f32::MAX / 8)`, about
/// 6.5e18. Within it every dense score (inner product, cosine, squared L2 distance) is a finite
/// f32: `|q·x| ≤ ‖q‖‖x‖ ≤ f32::MAX / 8` and `‖q − x‖² ≤ (‖q‖ + ‖x‖)² ≤ f32::MAX / 2`; so is an
/// inner-product or cosine MaxSim score when the query's token norms sum to at most this limit.
/// An L2 MaxSim sum over many tokens can still leave f32: that search is refused with an error.
pub const MAX_VECTOR_NORM: f64 = 6.521_908_718e18;

/// The Euclidean norm of `v`, computed in f64 (so that it does not overflow).
pub fn norm_f64(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// Rounds an f32 to bfloat16 bits, to nearest even; values that would overflow to infinity are
/// truncated instead (still within one bf16 unit in the last place).
#[inline]
pub fn to_bf16_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    // Branch-free so that loops over slices vectorise.
    let overflow = ((rounded & 0x7f80) == 0x7f80) & ((bits & 0x7f80_0000) != 0x7f80_0000);
    (if overflow { bits >> 16 } else { rounded }) as u16
}

/// The f32 value of bfloat16 bits.
#[inline]
pub fn from_bf16_bits(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_is_nearest_even_and_never_overflows() {
        assert_eq!(to_bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(to_bf16_bits(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(to_bf16_bits(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(to_bf16_bits(-2.5), half::bf16::from_f32(-2.5).to_bits());
        assert!(from_bf16_bits(to_bf16_bits(f32::MAX)).is_finite());
        for v in [0.1f32, -3.7, 1e-20, 12345.678] {
            let r = from_bf16_bits(to_bf16_bits(v));
            assert!((r - v).abs() <= v.abs() * 2f32.powi(-8), "{v} -> {r}");
        }
    }

    #[test]
    fn dtype_codes_round_trip() {
        for d in [DType::F32, DType::F16, DType::Bf16] {
            assert_eq!(DType::from_code(d.code()), Some(d));
            assert_eq!(DType::parse(d.name()).unwrap(), d);
        }
        assert_eq!(DType::from_code(0), None);
        assert!(DType::parse("f64").is_err());
    }

    #[test]
    fn encode_then_view_round_trips() {
        let values = [1.5f32, -2.25, 0.0, 1024.0];
        for d in [DType::F32, DType::F16, DType::Bf16] {
            let mut bytes = Vec::new();
            d.encode_into(&values, &mut bytes);
            assert_eq!(bytes.len(), values.len() * d.size());
            // Vec<u8> is not guaranteed 4-aligned, so copy into an aligned buffer first.
            let mut aligned = vec![0u32; bytes.len().div_ceil(4)];
            bytemuck::cast_slice_mut::<u32, u8>(&mut aligned)[..bytes.len()]
                .copy_from_slice(&bytes);
            let view =
                VectorRef::from_bytes(d, &bytemuck::cast_slice(&aligned)[..bytes.len()]).unwrap();
            assert_eq!(view.to_f32_vec(), values);
        }
    }

    #[test]
    fn metric_parse() {
        assert_eq!(Metric::parse("cosine").unwrap(), Metric::Cosine);
        assert_eq!(Metric::parse("IP").unwrap(), Metric::Ip);
        assert!(Metric::parse("hamming").is_err());
    }
}
