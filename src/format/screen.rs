//! The screening-codes section (kind 21): an 8-bit copy of a dense field with a rigorous error
//! bound per row, which exact single-query search scans instead of the full-precision vectors
//! (a quarter of f32's bytes) before rescoring the few rows that can reach the top-k. Specified in
//! `format-spec/screen.md`.
//!
//! ```text
//! header (64 bytes)
//!   0 u32 dim          the field's dimension d
//!   4 u32 metric       1 ip, 2 cosine, 3 l2 (the field's)
//!   8 u64 rows         N = the segment's row count
//!  16 u32 code_type    1: i8 codes with a per-dimension affine map
//!  20..64 reserved, zero
//! at 64:                          mid   f32[d], then scale f32[d]
//! at stats = align64(64 + 8d):    code_norm f32[N], residual_norm f32[N], value_norm f32[N]
//! at codes = align64(stats + 12N): codes i8[N × d], row-major; the section ends there
//! ```
//!
//! The coded value of row `r` (normalised for cosine) is `v[r][j] = mid[j] + scale[j]·c[r][j] +
//! e[r][j]` with `|c| ≤ 127`, `code_norm[r] ≥ ‖c[r]‖₂`, `residual_norm[r] ≥ ‖e[r]‖₂`, and
//! `value_norm[r]` the f32 nearest to `‖x[r]‖₂` of the stored row. A `residual_norm` of +∞ marks
//! a row without a bound (always rescored).

use std::path::Path;

use crate::dtype::Metric;
use crate::error::{Error, Result};
use crate::format::graph::metric_code;
use crate::format::segment::{ExtraSection, SectionKind, SegmentSource};
use crate::schema::FieldKind;

/// Bytes of the section header.
pub const HEADER_LEN: usize = 64;
/// `code_type` of i8 codes with a per-dimension affine map.
pub const CODE_I8_AFFINE: u32 = 1;
/// Largest code magnitude.
pub const MAX_CODE: i8 = 127;
/// Cosine rows whose squared norm is below this (as f64) are unbounded: f32 arithmetic on them
/// underflows.
pub const MIN_COSINE_SQ_NORM: f64 = 1.0 / (1u128 << 100) as f64;

fn align64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// Byte offsets of the arrays inside a section of `rows` rows of dimension `dim`:
/// `(stats, codes, length)`, or `None` on overflow.
pub fn layout(rows: u64, dim: u32) -> Option<(usize, usize, usize)> {
    let (rows, dim) = (usize::try_from(rows).ok()?, dim as usize);
    let stats = align64(HEADER_LEN.checked_add(dim.checked_mul(8)?)?);
    let codes = align64(stats.checked_add(rows.checked_mul(12)?)?);
    let len = codes.checked_add(rows.checked_mul(dim)?)?;
    Some((stats, codes, len))
}

/// The f32 at or above `v` (`v` finite, non-negative): a stored bound never rounds below the
/// value it bounds.
fn up(v: f64) -> f32 {
    let f = v as f32;
    if (f as f64) < v {
        f.next_up()
    } else {
        f
    }
}

/// The row as the codes represent it: the stored values as f64, divided by their norm for
/// cosine. `None` for a row without a bound (non-finite values; a cosine row of (almost) zero
/// norm).
fn coded_value(metric: Metric, x: &[f32], out: &mut Vec<f64>) -> Option<()> {
    out.clear();
    out.extend(x.iter().map(|&v| v as f64));
    if out.iter().any(|v| !v.is_finite()) {
        return None;
    }
    if metric == Metric::Cosine {
        let sq: f64 = out.iter().map(|v| v * v).sum();
        if sq < MIN_COSINE_SQ_NORM {
            return None;
        }
        let inv = 1.0 / sq.sqrt();
        out.iter_mut().for_each(|v| *v *= inv);
    }
    Some(())
}

/// `(code_norm, residual_norm)` bounds of a row's codes against its coded value; the residual is
/// computed in f64 from the f32 map, plus margins for the f64 rounding of the sums and of `v`
/// itself (`max(1e-12, d·2⁻⁵¹)` relative, `max(2⁻⁴⁰, d·2⁻⁵⁰)·‖v‖` absolute).
fn row_norms(value: &[f64], codes: &[i8], mid: &[f32], scale: &[f32]) -> (f32, f32) {
    let mut c2 = 0i64;
    let (mut e2, mut v2) = (0f64, 0f64);
    for j in 0..value.len() {
        let c = codes[j] as i64;
        c2 += c * c;
        let e = value[j] - (mid[j] as f64 + scale[j] as f64 * c as f64);
        e2 += e * e;
        v2 += value[j] * value[j];
    }
    // f64 sums of d terms: relative error up to d·2⁻⁵³ (covered at any dimension up to 2¹⁶).
    let d = value.len() as f64;
    let residual = e2.sqrt() * (1.0 + f64::max(1e-12, d * 2f64.powi(-51)))
        + v2.sqrt() * f64::max(2f64.powi(-40), d * 2f64.powi(-50));
    (up((c2 as f64).sqrt()), up(residual))
}

/// Screening codes of one segment's dense field, built from its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScreenCodes {
    /// The field's metric.
    pub metric: Metric,
    /// Dimension.
    pub dim: u32,
    /// Value of code 0, per dimension.
    pub mid: Vec<f32>,
    /// Value step per code, per dimension (finite, > 0).
    pub scale: Vec<f32>,
    /// Per row: an upper bound of the codes' Euclidean norm.
    pub code_norm: Vec<f32>,
    /// Per row: an upper bound of the coding residual's norm (+∞: no bound).
    pub residual_norm: Vec<f32>,
    /// Per row: the stored vector's norm (before any normalisation).
    pub value_norm: Vec<f32>,
    /// `rows × dim` codes.
    pub codes: Vec<i8>,
}

impl ScreenCodes {
    /// Codes for `rows` given as f32 (`rows.len() / dim` of them): per dimension, the map spans the
    /// minimum and maximum coded value (no value is clipped, so no residual exceeds half a step).
    pub fn build(
        metric: Metric,
        dim: usize,
        rows: &dyn Fn(usize) -> Result<Vec<f32>>,
        n: usize,
    ) -> Result<Self> {
        let mut lo = vec![f64::INFINITY; dim];
        let mut hi = vec![f64::NEG_INFINITY; dim];
        let mut v = Vec::with_capacity(dim);
        for r in 0..n {
            if coded_value(metric, &rows(r)?, &mut v).is_some() {
                for j in 0..dim {
                    lo[j] = lo[j].min(v[j]);
                    hi[j] = hi[j].max(v[j]);
                }
            }
        }
        let (mut mid, mut scale) = (vec![0f32; dim], vec![1f32; dim]);
        for j in 0..dim {
            if lo[j] <= hi[j] {
                mid[j] = ((lo[j] + hi[j]) / 2.0) as f32;
                let step = ((hi[j] - lo[j]) / (2.0 * MAX_CODE as f64)) as f32;
                scale[j] = if step.is_finite() && step > 0.0 {
                    step
                } else {
                    1.0
                };
            }
        }
        let mut out = ScreenCodes {
            metric,
            dim: dim as u32,
            mid,
            scale,
            code_norm: Vec::with_capacity(n),
            residual_norm: Vec::with_capacity(n),
            value_norm: Vec::with_capacity(n),
            codes: vec![0; n * dim],
        };
        for r in 0..n {
            let x = rows(r)?;
            out.value_norm.push(crate::dtype::norm_f64(&x) as f32);
            let codes = &mut out.codes[r * dim..(r + 1) * dim];
            if coded_value(metric, &x, &mut v).is_none() {
                out.code_norm.push(0.0);
                out.residual_norm.push(f32::INFINITY);
                continue;
            }
            for j in 0..dim {
                let c = ((v[j] - out.mid[j] as f64) / out.scale[j] as f64).round();
                codes[j] = c.clamp(-(MAX_CODE as f64), MAX_CODE as f64) as i8;
            }
            let (cn, rn) = row_norms(&v, codes, &out.mid, &out.scale);
            out.code_norm.push(cn);
            out.residual_norm.push(rn);
        }
        Ok(out)
    }

    /// The section's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let rows = self.value_norm.len() as u64;
        let (stats, codes, len) = layout(rows, self.dim).expect("fits in memory");
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&self.dim.to_le_bytes());
        b.extend_from_slice(&metric_code(self.metric).to_le_bytes());
        b.extend_from_slice(&rows.to_le_bytes());
        b.extend_from_slice(&CODE_I8_AFFINE.to_le_bytes());
        b.resize(HEADER_LEN, 0);
        for v in self.mid.iter().chain(&self.scale) {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.resize(stats, 0);
        for v in self
            .code_norm
            .iter()
            .chain(&self.residual_norm)
            .chain(&self.value_norm)
        {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.resize(codes, 0);
        b.extend(self.codes.iter().map(|&c| c as u8));
        debug_assert_eq!(b.len(), len);
        b
    }
}

/// The screening-codes sections a new segment gets: one per dense field, when the segment has at
/// least `min_rows` rows (and at least one).
pub fn screen_sections(source: &dyn SegmentSource, min_rows: u64) -> Result<Vec<ExtraSection>> {
    let n = source.row_count();
    if n == 0 || (n as u64) < min_rows {
        return Ok(Vec::new());
    }
    let schema = source.schema();
    let mut out = Vec::new();
    for (fi, f) in schema.fields.iter().enumerate() {
        let FieldKind::Dense { dim, dtype, metric } = f.kind else {
            continue;
        };
        let row = |r: usize| -> Result<Vec<f32>> {
            let mut v = Vec::with_capacity(dim as usize);
            dtype.decode_into(&source.field(fi, r)?, &mut v);
            Ok(v)
        };
        let codes = ScreenCodes::build(metric, dim as usize, &row, n)?;
        out.push(ExtraSection {
            kind: SectionKind::ScreenCodes,
            field: fi as u32,
            count: n as u64,
            body: Box::new(codes.encode()),
            replaces_tokens: None,
        });
    }
    Ok(out)
}

/// A validated, mapped screening-codes section.
#[derive(Debug, Clone, Copy)]
pub struct ScreenView<'a> {
    /// The field's metric.
    pub metric: Metric,
    /// Dimension.
    pub dim: usize,
    /// Value of code 0, per dimension.
    pub mid: &'a [f32],
    /// Value step per code, per dimension.
    pub scale: &'a [f32],
    /// Per row: bound of the codes' norm.
    pub code_norm: &'a [f32],
    /// Per row: bound of the residual's norm (+∞: no bound).
    pub residual_norm: &'a [f32],
    /// Per row: the stored vector's norm.
    pub value_norm: &'a [f32],
    /// `rows × dim` codes.
    pub codes: &'a [i8],
}

impl<'a> ScreenView<'a> {
    /// Checks the header and the exact length of section `bytes` (at file offset `base` of `path`,
    /// 64-aligned in memory) for a segment of `rows` rows whose dense field has dimension `dim`
    /// and metric `metric`, and checks the map's values (`dim` of them). Cost independent of
    /// `rows`.
    pub fn open(
        bytes: &'a [u8],
        path: &Path,
        base: u64,
        rows: u64,
        dim: usize,
        metric: Metric,
    ) -> Result<Self> {
        let err = |at: usize, detail: String| {
            Error::corrupt(path, "screening codes", base + at as u64, detail)
        };
        if bytes.len() < HEADER_LEN {
            return Err(err(
                0,
                format!(
                    "section of {} bytes is shorter than its header",
                    bytes.len()
                ),
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let (d, code, n, kind) = (
            u32_at(0),
            u32_at(4),
            u64::from_le_bytes(bytes[8..16].try_into().expect("8")),
            u32_at(16),
        );
        if d as usize != dim {
            return Err(err(
                0,
                format!("codes of dimension {d}, the field has {dim}"),
            ));
        }
        if code != metric_code(metric) {
            return Err(err(
                4,
                format!("codes for metric code {code}, the field's metric is {metric:?}"),
            ));
        }
        if n != rows {
            return Err(err(
                8,
                format!("codes cover {n} rows, the segment has {rows}"),
            ));
        }
        if kind != CODE_I8_AFFINE {
            return Err(err(
                16,
                format!("unknown code type {kind} (this build reads 1)"),
            ));
        }
        if bytes[20..HEADER_LEN].iter().any(|b| *b != 0) {
            return Err(err(20, "reserved header bytes are not zero".into()));
        }
        let (stats, codes, len) =
            layout(rows, d)
                .filter(|l| l.2 == bytes.len())
                .ok_or_else(|| {
                    err(
                        0,
                        format!(
                        "section of {} bytes; {rows} rows × {d} dimensions need a different length",
                        bytes.len()
                    ),
                    )
                })?;
        let f32s = |at: usize, len: usize| -> Result<&'a [f32]> {
            bytemuck::try_cast_slice(&bytes[at..at + len])
                .map_err(|_| err(at, "section is not 4-byte aligned in memory".into()))
        };
        let map = f32s(HEADER_LEN, 8 * dim)?;
        let (mid, scale) = map.split_at(dim);
        if let Some(j) =
            (0..dim).find(|&j| !(mid[j].is_finite() && scale[j].is_finite() && scale[j] > 0.0))
        {
            return Err(err(
                HEADER_LEN + 4 * j,
                format!(
                    "dimension {j}: mid {} and scale {} (expected finite, scale > 0)",
                    mid[j], scale[j]
                ),
            ));
        }
        let n = rows as usize;
        let st = f32s(stats, 12 * n)?;
        Ok(ScreenView {
            metric,
            dim,
            mid,
            scale,
            code_norm: &st[..n],
            residual_norm: &st[n..2 * n],
            value_norm: &st[2 * n..],
            codes: bytemuck::cast_slice(&bytes[codes..len]),
        })
    }

    /// Full check against the field's rows (`rows(r)` as f32; `path` and `base` name the section
    /// in errors): codes within ±127, value norms equal to the rows' norms, every row the writer
    /// rule leaves unbounded marked so, and every other row's norm bounds at or above the norms
    /// they bound.
    pub fn verify(
        &self,
        path: &Path,
        base: u64,
        rows: &dyn Fn(usize) -> Result<Vec<f32>>,
    ) -> Result<()> {
        let err = |detail: String| Error::corrupt(path, "screening codes", base, detail);
        let mut v = Vec::with_capacity(self.dim);
        for r in 0..self.value_norm.len() {
            let x = rows(r)?;
            let codes = &self.codes[r * self.dim..(r + 1) * self.dim];
            if let Some(j) = codes.iter().position(|&c| c < -MAX_CODE) {
                return Err(err(format!(
                    "row {r}, dimension {j}: code -128 (codes lie in -127..=127)"
                )));
            }
            let norm = crate::dtype::norm_f64(&x) as f32;
            if self.value_norm[r].to_bits() != norm.to_bits() {
                return Err(err(format!(
                    "row {r}: value norm {} recorded, the row's is {norm}",
                    self.value_norm[r]
                )));
            }
            let (cn, rn) = (self.code_norm[r], self.residual_norm[r]);
            if coded_value(self.metric, &x, &mut v).is_none() {
                if rn != f32::INFINITY {
                    return Err(err(format!("row {r} has no error bound (non-finite, or a cosine row of zero norm) but records residual norm {rn}")));
                }
                continue;
            }
            let (want_cn, want_rn) = row_norms(&v, codes, self.mid, self.scale);
            if !(cn >= want_cn && rn >= want_rn) {
                return Err(err(format!(
                    "row {r}: recorded code norm {cn} and residual norm {rn} are below the row's {want_cn} and {want_rn}: searches would miss results"
                )));
            }
        }
        Ok(())
    }
}
