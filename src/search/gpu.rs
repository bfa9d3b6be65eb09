//! Exact search on an NVIDIA GPU (feature `cuda`), with results equal to the CPU's.
//!
//! A field is copied to the GPU once ([`Resident`], cached per process for the segments it was
//! made from, so later batches over the same segments reuse it); each search uploads only its
//! queries and the delete bitmaps. Dense fields: `Q·Xᵀ` by cuBLAS in tiles of rows that bound
//! memory, each tile merged into a per-query running list of the best `list` rows by
//! `kernels.cu`'s `select_topk`. Multi-vector fields: MaxSim of every (query, document) by
//! `maxsim_all` in chunks of documents, then the same selection.
//!
//! **Exactness.** The GPU's scores differ from the CPU's in rounding (another summation order,
//! 16-bit or TF32 inputs). So the GPU only proposes candidates: the host rescores the listed rows
//! with the CPU's own kernels (the streaming path's `similarity`, MaxSim's `maxsim_one`) and
//! checks that no row left out can reach the top-k: every row left out scored at most the list's
//! last GPU score `u`, so its CPU score is at most `u + H`, where `H` bounds the difference of the
//! two arithmetics for this query (rounding of inputs, accumulation of `dim` products on both
//! sides, the metric's adjustment; see [`Bound`]). When the k-th best rescored score is above
//! `u + H` the results are exactly the CPU's (same ids, same scores, ties by the same rule);
//! otherwise that query is searched on the CPU. MaxSim scores are the CPU's per-document
//! arithmetic (`multi::maxsim_one`), which every CPU path reports (whole-field search rescores
//! its finalists with it). The list holds `max(2k, k + 32)` rows rounded up
//! to a power of two (at most [`crate::gpu::MAX_LIST`]; larger `k` run on the CPU).

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use parking_lot::Mutex;
use rayon::prelude::*;

use super::topk::{Candidate, TopK};
use crate::collection::Collection;
use crate::dtype::{DType, Metric};
use crate::error::{Error, Result};
use crate::format::segment::Segment;
use crate::gpu::{Gpu, GpuType, MaxSimInputs, MAX_LIST};
use crate::linalg::similarity::{similarity, PreparedQuery};

use super::GpuPrecision;

/// Bytes of GPU scores one tile may use.
const TILE_BYTES: usize = 512 << 20;
/// Queries per pass.
const QUERY_CHUNK: usize = 4096;
/// Field copies kept on each GPU (the least recently used one is dropped); a copy of a
/// collection's field made from older segments is dropped when a new one is made.
const CACHE_SLOTS: usize = 8;
/// `select_topk`'s marker of an empty list entry.
const NO_ROW: u32 = u32::MAX;

/// Per-query running-list length for `k` hits, or `None` when `k` is too large for the GPU.
fn list_len(k: usize) -> Option<usize> {
    let n = (2 * k).max(k + 32).next_power_of_two();
    (n <= MAX_LIST).then_some(n)
}

/// How far a GPU score may lie from the CPU's score of the same pair.
///
/// For an inner product `q·x` with `dim` terms: the inputs' relative rounding on their way to the
/// GPU (`eq`, `ex`: 0 when the GPU reads the values the CPU reads; 2⁻¹¹ f16, 2⁻⁸ bf16, 2⁻¹⁰
/// TF32) and the absolute rounding of values that become f16 subnormals (`aq`, `ax`: 2⁻²⁵ per
/// element), plus both sides' f32 accumulation (each within `dim·2⁻²²` of `|q||x|`, allowing the
/// truncating adders of tensor cores): `|Δ| ≤ rel·|q||x| + 2√dim·(ax|q| + aq|x|) + dim·2⁻¹²⁵`
/// with `rel = 2(eq + ex + eq·ex) + (dim + 8)·2⁻²⁰` (a factor of 2 to spare). The metrics add
/// their own adjustments ([`Bound::dense`]).
#[derive(Debug, Clone, Copy)]
struct Bound {
    /// Relative term of inner products and L2.
    rel: f64,
    /// Relative term of cosine (the query is normalised and rounded again on its way).
    rel_cos: f64,
    aq: f64,
    ax: f64,
    dim: f64,
    /// The CPU's own rounding of L2 on 16-bit fields (simsimd subtracts in the field's type),
    /// relative to `(|q| + |x|)²`.
    l2_cpu: f64,
}

/// Relative rounding of a value stored as `t`.
fn unit(t: GpuType) -> f64 {
    match t {
        GpuType::F32 => 0.0,
        GpuType::F16 => 2f64.powi(-11),
        GpuType::Bf16 => 2f64.powi(-8),
    }
}

impl Bound {
    fn new(dim: usize, stored: DType, on_gpu: GpuType, tf32: bool) -> Self {
        let stored_t = gpu_type(stored, GpuPrecision::Stored).0;
        let same = stored_t == on_gpu && !tf32;
        // The CPU reads the query rounded to the field's type (`PreparedQuery`) and the stored
        // values; the GPU reads both rounded to its own type: their difference is within the
        // sum of the two roundings.
        let mut e = if same {
            0.0
        } else {
            unit(on_gpu) + unit(stored_t)
        };
        let mut e_cos = unit(on_gpu) + unit(stored_t);
        if tf32 {
            e += 2f64.powi(-10);
            e_cos += 2f64.powi(-10);
        }
        let f16 = !same && (on_gpu == GpuType::F16 || stored_t == GpuType::F16);
        let a = if f16 { 2f64.powi(-25) } else { 0.0 };
        let d = dim as f64;
        let acc = (d + 8.0) * 2f64.powi(-20);
        Bound {
            rel: 2.0 * (2.0 * e + e * e) + acc,
            rel_cos: 2.0 * (2.0 * e_cos + e_cos * e_cos) + acc,
            aq: a,
            ax: a,
            dim: d,
            l2_cpu: 4.0 * unit(stored_t),
        }
    }

    /// Bound on an inner product's difference for norms `q`, `x`.
    fn dot(&self, q: f64, x: f64) -> f64 {
        self.rel * q * x
            + 2.0 * self.dim.sqrt() * (self.ax * q + self.aq * x)
            + self.dim * 2f64.powi(-125)
    }

    /// Bound for a dense score under `metric`, for a query of norm `q` against rows of norm at
    /// most `x_max` and inverse norm at most `inv_max` (cosine).
    fn dense(&self, metric: Metric, q: f64, x_max: f64, inv_max: f64) -> f64 {
        match metric {
            Metric::Ip => self.dot(q, x_max),
            // q is normalised on the host; the CPU's cosine normalises with its own rounding.
            Metric::Cosine => {
                self.rel_cos
                    + 2.0 * self.dim.sqrt() * (self.ax * inv_max + self.aq)
                    + self.dim * 2f64.powi(-125) * inv_max
                    + 2f64.powi(-17)
            }
            // 2·q·x − |q|² − |x|² against the CPU's direct Σ(q − x)².
            Metric::L2 => {
                2.0 * self.dot(q, x_max)
                    + ((self.dim + 16.0) * 2f64.powi(-20) + self.l2_cpu) * (q + x_max).powi(2)
            }
        }
    }
}

/// A field's copy on a GPU.
struct Resident {
    /// The segments it was made from, in order (held, so their identities stay unique).
    segments: Vec<Arc<Segment>>,
    /// The database folder and collection.
    collection: (std::path::PathBuf, String),
    field: usize,
    precision: GpuPrecision,
    gpu: Arc<Gpu>,
    /// First global row of each segment, and the total.
    starts: Vec<usize>,
    data: ResidentData,
}

enum ResidentData {
    Dense {
        values: cudarc::driver::CudaSlice<u8>,
        dtype: GpuType,
        tf32: bool,
        scale: cudarc::driver::CudaSlice<f32>,
        bias: cudarc::driver::CudaSlice<f32>,
        x_max: f64,
        inv_max: f64,
        bound: Bound,
    },
    Multi {
        tokens: cudarc::driver::CudaSlice<u8>,
        dtype: GpuType,
        doc_offsets: cudarc::driver::CudaSlice<i64>,
        token_aux: cudarc::driver::CudaSlice<f32>,
        x_max: f64,
        bound: Bound,
    },
}

impl Resident {
    fn rows(&self) -> usize {
        *self.starts.last().expect("starts end with the total")
    }

    /// (segment ordinal, row) of global row `g`.
    fn locate(&self, g: usize) -> (u32, u32) {
        let si = self.starts.partition_point(|&s| s <= g) - 1;
        (si as u32, (g - self.starts[si]) as u32)
    }
}

fn cache() -> &'static Mutex<Vec<Arc<Resident>>> {
    static CACHE: std::sync::OnceLock<Mutex<Vec<Arc<Resident>>>> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Drops every field copy this process keeps on its GPUs (they are made again on the next GPU
/// search).
pub fn release_gpu_memory() {
    cache().lock().clear();
}

/// The copy of `field` of `c` on `gpu`, made now unless the cache holds one of the same segments.
fn resident(
    c: &Collection,
    gpu: &Arc<Gpu>,
    field: usize,
    p: GpuPrecision,
) -> Result<Arc<Resident>> {
    let same = |r: &Resident| {
        Arc::ptr_eq(&r.gpu, gpu)
            && r.field == field
            && r.precision == p
            && r.collection.0 == c.database_dir()
            && r.collection.1 == c.name()
            && r.segments.len() == c.slots().len()
            && r.segments
                .iter()
                .zip(c.slots())
                .all(|(a, s)| Arc::ptr_eq(a, &s.segment))
    };
    {
        let mut cached = cache().lock();
        if let Some(i) = cached.iter().position(|r| same(r)) {
            let r = cached.remove(i);
            cached.push(r.clone());
            return Ok(r);
        }
        // Free the device memory of older copies of this field first.
        cached.retain(|r| {
            !(Arc::ptr_eq(&r.gpu, gpu)
                && r.field == field
                && r.collection.0 == c.database_dir()
                && r.collection.1 == c.name())
        });
    }
    let r = Arc::new(upload(c, gpu, field, p)?);
    let mut cached = cache().lock();
    cached.push(r.clone());
    while cached.iter().filter(|x| Arc::ptr_eq(&x.gpu, gpu)).count() > CACHE_SLOTS {
        let i = cached
            .iter()
            .position(|x| Arc::ptr_eq(&x.gpu, gpu))
            .expect("counted");
        cached.remove(i);
    }
    Ok(r)
}

/// The GPU element type of a field stored as `stored` under precision `p`.
fn gpu_type(stored: DType, p: GpuPrecision) -> (GpuType, bool) {
    match p {
        GpuPrecision::Stored => match stored {
            DType::F32 => (GpuType::F32, false),
            DType::F16 => (GpuType::F16, false),
            DType::Bf16 => (GpuType::Bf16, false),
        },
        GpuPrecision::Tf32 => (GpuType::F32, true),
        GpuPrecision::F16 => (GpuType::F16, false),
        GpuPrecision::Bf16 => (GpuType::Bf16, false),
    }
}

/// `values` as bytes of `t` (f16 values above its range refused with `what` named).
fn convert(values: &[f32], t: GpuType, what: &dyn Fn() -> String) -> Result<Vec<u8>> {
    Ok(match t {
        GpuType::F32 => bytemuck::cast_slice(values).to_vec(),
        GpuType::F16 => {
            if let Some(v) = values.iter().find(|v| v.abs() > 65504.0) {
                return Err(Error::InvalidQuery(format!(
                    "{}: value {v} is beyond f16's range; search with GPU precision f32 or bf16",
                    what()
                )));
            }
            values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes())
                .collect()
        }
        GpuType::Bf16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
    })
}

fn upload(c: &Collection, gpu: &Arc<Gpu>, field: usize, p: GpuPrecision) -> Result<Resident> {
    let kind = &c.schema().fields[field].kind;
    let stored = kind.dtype();
    let (t, tf32) = gpu_type(stored, p);
    let mut starts = vec![0usize];
    for s in c.slots() {
        starts.push(starts.last().unwrap() + s.segment.rows() as usize);
    }
    let rows = *starts.last().unwrap();
    if rows >= NO_ROW as usize {
        return Err(Error::Device(format!(
            "{rows} rows: GPU search addresses at most {} rows per collection",
            NO_ROW - 1
        )));
    }
    let field_name = &c.schema().fields[field].name;
    let same_type = gpu_type(stored, GpuPrecision::Stored).0 == t;
    let data = match kind {
        crate::schema::FieldKind::Dense { dim, metric, .. } => {
            let dim = *dim as usize;
            let mut values = gpu.zeros::<u8>(rows * dim * t.size())?;
            let (mut scale, mut bias) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
            let (mut x_max, mut inv_max) = (0f64, 0f64);
            for (si, slot) in c.slots().iter().enumerate() {
                let m = slot.segment.fixed_matrix(field);
                let f32s = m.to_f32_vec();
                for row in f32s.chunks_exact(dim) {
                    let n = crate::dtype::norm_f64(row);
                    x_max = x_max.max(n);
                    let (s, b) = match metric {
                        Metric::Ip => (1.0, 0.0),
                        Metric::Cosine if n > 0.0 => {
                            inv_max = inv_max.max(1.0 / n);
                            ((1.0 / n) as f32, 0.0)
                        }
                        Metric::Cosine => (0.0, 0.0),
                        Metric::L2 => (2.0, -(n * n) as f32),
                    };
                    scale.push(s);
                    bias.push(b);
                }
                let bytes = if same_type {
                    m.as_bytes().to_vec()
                } else {
                    convert(&f32s, t, &|| format!("field {field_name:?}, segment {si}"))?
                };
                gpu.upload_into(&bytes, &mut values, starts[si] * dim * t.size())?;
            }
            ResidentData::Dense {
                values,
                dtype: t,
                tf32,
                scale: gpu.upload(&scale)?,
                bias: gpu.upload(&bias)?,
                x_max,
                inv_max,
                bound: Bound::new(dim, stored, t, tf32),
            }
        }
        crate::schema::FieldKind::Multi { dim, metric, .. } => {
            let dim = *dim as usize;
            let total: usize = c
                .slots()
                .iter()
                .map(|s| s.segment.multi_token_count(field))
                .sum();
            let mut tokens = gpu.zeros::<u8>(total * dim * t.size())?;
            let mut offsets = Vec::with_capacity(rows + 1);
            let mut aux = Vec::with_capacity(total);
            let mut x_max = 0f64;
            let mut base = 0usize;
            for slot in c.slots() {
                let seg = &slot.segment;
                let count = seg.multi_token_count(field);
                for row in 0..seg.rows() {
                    let r = seg.multi_range(field, row)?;
                    offsets.push((base + r.start) as i64);
                }
                // Stored tokens, or a codes-only field's decompressed ones.
                let mut f32s = Vec::new();
                seg.multi_tokens_f32(field, 0..count, &mut f32s)?;
                for tok in f32s.chunks_exact(dim) {
                    // As `multi::search_maxsim` computes them.
                    let sq: f32 = tok.iter().map(|v| v * v).sum();
                    x_max = x_max.max(crate::dtype::norm_f64(tok));
                    aux.push(match metric {
                        Metric::Ip => 0.0,
                        Metric::Cosine if sq > 0.0 => 1.0 / sq.sqrt(),
                        Metric::Cosine => 0.0,
                        Metric::L2 => sq,
                    });
                }
                let encoded;
                let bytes: &[u8] = match seg.multi_tokens(field) {
                    Some(m) => m.as_bytes(),
                    None => {
                        encoded = convert(&f32s, t, &|| {
                            format!("decompressed tokens of {}", seg.path().display())
                        })?;
                        &encoded
                    }
                };
                gpu.upload_into(bytes, &mut tokens, base * dim * t.size())?;
                base += count;
            }
            offsets.push(base as i64);
            ResidentData::Multi {
                tokens,
                dtype: t,
                doc_offsets: gpu.upload(&offsets)?,
                token_aux: gpu.upload(&aux)?,
                x_max,
                // The CPU scores a codes-only segment's decompressed tokens in f32, which the
                // GPU copy rounded to the field's type: bound that rounding too.
                bound: Bound::new(
                    dim,
                    match c.slots().iter().any(|s| !s.segment.stores_tokens(field)) {
                        true => DType::F32,
                        false => stored,
                    },
                    t,
                    false,
                ),
            }
        }
        crate::schema::FieldKind::Tensor { .. } => unreachable!("tensor fields are not searched"),
    };
    Ok(Resident {
        segments: c.slots().iter().map(|s| s.segment.clone()).collect(),
        collection: (c.database_dir().to_path_buf(), c.name().to_string()),
        field,
        precision: p,
        gpu: gpu.clone(),
        starts,
        data,
    })
}

/// The collection's delete bitmaps as one bitmap over global rows (a bit set = skip the row).
fn deleted_bitmap(c: &Collection, r: &Resident) -> Vec<u32> {
    let mut words = vec![0u32; r.rows().div_ceil(32).max(1)];
    for (si, slot) in c.slots().iter().enumerate() {
        if slot.deletes.is_none() {
            continue;
        }
        for row in 0..slot.segment.rows() {
            if slot.is_deleted(row) {
                let g = r.starts[si] + row as usize;
                words[g / 32] |= 1 << (g % 32);
            }
        }
    }
    words
}

/// `values` rounded to `dtype` (as the CPU's search reads a query for a field of that type).
fn round_to(dtype: DType, values: &[f32]) -> Vec<f32> {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    dtype.encode_into(values, &mut bytes);
    let mut out = Vec::with_capacity(values.len());
    dtype.decode_into(&bytes, &mut out);
    out
}

/// Per query: the rows the GPU listed (global rows and GPU scores, best first) and whether the
/// list was full (rows were left out).
struct Lists {
    list: usize,
    scores: Vec<f32>,
    rows: Vec<u32>,
}

impl Lists {
    /// Runs `tiles` over empty running lists of `list` entries for `n` queries on `gpu` (each
    /// call scores a tile into the scores buffer and merges it with `Gpu::select`), then reads
    /// the lists back.
    fn collect(
        gpu: &Gpu,
        n: usize,
        list: usize,
        mut tiles: impl FnMut(&mut CudaSlice<f32>, &mut CudaSlice<u32>) -> Result<()>,
    ) -> Result<Lists> {
        let mut list_s = gpu.zeros::<f32>(n * list)?;
        let mut list_r = gpu.zeros::<u32>(n * list)?;
        gpu.clear_lists(&mut list_s, &mut list_r, n * list)?;
        tiles(&mut list_s, &mut list_r)?;
        Ok(Lists {
            list,
            scores: gpu.download(&list_s)?,
            rows: gpu.download(&list_r)?,
        })
    }

    fn query(&self, q: usize) -> (&[f32], &[u32]) {
        let r = q * self.list..(q + 1) * self.list;
        (&self.scores[r.clone()], &self.rows[r])
    }
}

/// Dense search of `queries` (`nq × dim`) on device `ordinal`; `None` when `k` is too large for
/// the GPU (the caller searches on the CPU).
#[allow(clippy::too_many_arguments)]
pub(super) fn search_dense(
    c: &Collection,
    field: usize,
    metric: Metric,
    dim: usize,
    queries: &[f32],
    k: usize,
    ordinal: usize,
    precision: GpuPrecision,
) -> Result<Option<Vec<TopK>>> {
    let Some(list) = list_len(k) else {
        return Ok(None);
    };
    let gpu = Gpu::open(ordinal)?;
    let r = resident(c, &gpu, field, precision)?;
    let ResidentData::Dense {
        values,
        dtype,
        tf32,
        scale,
        bias,
        x_max,
        inv_max,
        bound,
    } = &r.data
    else {
        unreachable!("a dense field's copy")
    };
    let stored = c.schema().fields[field].kind.dtype();
    let deleted = gpu.upload(&deleted_bitmap(c, &r))?;
    let live: u64 = c.slots().iter().map(|s| s.live_rows()).sum();
    let nq = queries.len() / dim;
    let rows = r.rows();
    let mut tops = Vec::with_capacity(nq);
    for (chunk_i, chunk) in queries.chunks(QUERY_CHUNK * dim).enumerate() {
        let n = chunk.len() / dim;
        // The queries as the CPU reads them (rounded to the field's type); for cosine,
        // normalised on the host in f64.
        let on_cpu = round_to(stored, chunk);
        let prepared: Vec<f32> = match metric {
            Metric::Cosine => on_cpu
                .chunks_exact(dim)
                .flat_map(|q| {
                    let norm = crate::dtype::norm_f64(q);
                    q.iter().map(move |v| (*v as f64 / norm) as f32)
                })
                .collect(),
            _ if *dtype == gpu_type(stored, GpuPrecision::Stored).0 => on_cpu.clone(),
            _ => chunk.to_vec(),
        };
        let q_bytes = convert(&prepared, *dtype, &|| format!("query batch {chunk_i}"))?;
        let q_dev = gpu.upload(&q_bytes)?;
        let tile = (TILE_BYTES / (4 * n)).clamp(1, rows.max(1));
        let mut scores = gpu.zeros::<f32>(n * tile)?;
        let lists = Lists::collect(&gpu, n, list, |list_s, list_r| {
            for row0 in (0..rows).step_by(tile) {
                let m = tile.min(rows - row0);
                gpu.scores(values, row0, m, &q_dev, n, dim, *dtype, *tf32, &mut scores)?;
                let affine = Some((scale, bias));
                gpu.select(
                    &scores, n, m, m, affine, &deleted, row0, list, list_s, list_r,
                )?;
            }
            Ok(())
        })?;
        let finished: Vec<TopK> = (0..n)
            .into_par_iter()
            .map(|qi| {
                let q = &chunk[qi * dim..(qi + 1) * dim];
                let q_norm = crate::dtype::norm_f64(&on_cpu[qi * dim..(qi + 1) * dim]);
                let prepared = PreparedQuery::new(q, stored);
                let (gs, gr) = lists.query(qi);
                // The GPU's L2 scores leave out −|q|².
                let offset = if metric == Metric::L2 {
                    q_norm * q_norm
                } else {
                    0.0
                };
                let h = bound.dense(metric, q_norm, *x_max, *inv_max);
                finish(
                    |g| r.locate(g),
                    live,
                    k,
                    gs,
                    gr,
                    offset,
                    h,
                    |seg, row| {
                        let x = c.slots()[seg as usize].segment.fixed_matrix(field);
                        let row = row as usize;
                        Some(similarity(
                            metric,
                            &prepared,
                            x.slice(row * dim..(row + 1) * dim),
                        ))
                    },
                )
                .unwrap_or_else(|| super::dense::search_streaming(c, field, metric, q, k))
            })
            .collect();
        tops.extend(finished);
    }
    Ok(Some(tops))
}

/// The exact top-k of one query from the GPU's list: every listed row rescored by `exact`; `None`
/// when a row left out of a full list could still reach the top-k, or when `exact` gives `None`
/// (the caller then searches that query on the CPU). `offset` is subtracted from GPU scores to
/// put them on the CPU's scale, `h` bounds the difference between the two.
#[allow(clippy::too_many_arguments)]
fn finish(
    locate: impl Fn(usize) -> (u32, u32),
    live: u64,
    k: usize,
    gpu_scores: &[f32],
    gpu_rows: &[u32],
    offset: f64,
    h: f64,
    mut exact: impl FnMut(u32, u32) -> Option<f32>,
) -> Option<TopK> {
    let mut top = TopK::new(k);
    let mut listed = 0;
    for &g in gpu_rows.iter().filter(|&&g| g != NO_ROW) {
        let (seg, row) = locate(g as usize);
        top.push(Candidate {
            score: exact(seg, row)?,
            segment_ord: seg,
            row,
        });
        listed += 1;
    }
    if listed < gpu_rows.len() {
        // The list never filled: every live row with a finite GPU score is in it. Rows whose
        // GPU score was not finite were never admitted: the CPU decides those.
        return (listed as u64 == live).then_some(top);
    }
    let last = *gpu_scores.last()? as f64 - offset;
    let kth = top.threshold() as f64;
    // threshold() is −∞ until k rows are held.
    (kth > last + h).then_some(top)
}

/// A batch of multi-vector queries prepared for the MaxSim kernels: stacked and prepared on the
/// host (normalised for cosine; squared norms for L2), and copied to the device.
struct MaxSimQueries {
    stacked: Vec<f32>,
    offsets: Vec<i32>,
    q_sq: Vec<f32>,
    on_device: (
        cudarc::driver::CudaSlice<f32>,
        cudarc::driver::CudaSlice<i32>,
        cudarc::driver::CudaSlice<f32>,
    ),
}

impl MaxSimQueries {
    fn new(gpu: &Gpu, queries: &[&[f32]], dim: usize, metric: Metric) -> Result<Self> {
        let mut stacked = Vec::new();
        let mut offsets = vec![0i32];
        for q in queries {
            stacked.extend_from_slice(q);
            offsets.push((stacked.len() / dim) as i32);
        }
        let q_sq = super::multi::prepare_tokens(metric, dim, &mut stacked);
        let on_device = (
            gpu.upload(&stacked)?,
            gpu.upload(&offsets)?,
            gpu.upload(&q_sq)?,
        );
        Ok(MaxSimQueries {
            stacked,
            offsets,
            q_sq,
            on_device,
        })
    }

    /// Query `i`'s prepared tokens and their squared norms.
    fn query(&self, i: usize, dim: usize) -> (&[f32], &[f32]) {
        let (a, b) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        (&self.stacked[a * dim..b * dim], &self.q_sq[a..b])
    }

    /// What the kernels read: `r`'s tokens and these queries.
    fn inputs<'a>(
        &'a self,
        r: &'a Resident,
        dim: usize,
        metric: Metric,
        shared: usize,
    ) -> MaxSimInputs<'a> {
        let ResidentData::Multi {
            tokens,
            dtype,
            doc_offsets,
            token_aux,
            ..
        } = &r.data
        else {
            unreachable!("a multi-vector field's copy")
        };
        MaxSimInputs {
            tokens,
            dtype: *dtype,
            doc_offsets,
            token_aux,
            query_tokens: &self.on_device.0,
            query_offsets: &self.on_device.1,
            query_sq: &self.on_device.2,
            queries: self.offsets.len() - 1,
            dim: dim as i32,
            metric: match metric {
                Metric::Ip => 0,
                Metric::Cosine => 1,
                Metric::L2 => 2,
            },
            shared,
        }
    }
}

/// MaxSim search of multi-vector `queries` on device `ordinal`; `None` when `k` is too large
/// for the GPU.
pub(super) fn search_maxsim(
    c: &Collection,
    field: usize,
    metric: Metric,
    dim: usize,
    queries: &[&[f32]],
    k: usize,
    ordinal: usize,
) -> Result<Option<Vec<TopK>>> {
    let Some(list) = list_len(k) else {
        return Ok(None);
    };
    let gpu = Gpu::open(ordinal)?;
    let Some(shared) = maxsim_fits(&gpu, queries, dim, metric) else {
        return Ok(None);
    };
    let r = resident(c, &gpu, field, GpuPrecision::Stored)?;
    let ResidentData::Multi { x_max, bound, .. } = &r.data else {
        unreachable!("a multi-vector field's copy")
    };
    let deleted = gpu.upload(&deleted_bitmap(c, &r))?;
    let live: u64 = c.slots().iter().map(|s| s.live_rows()).sum();
    let docs = r.rows();
    let mut tops = Vec::with_capacity(queries.len());
    for chunk in queries.chunks(QUERY_CHUNK) {
        let prepared = MaxSimQueries::new(&gpu, chunk, dim, metric)?;
        let inputs = prepared.inputs(&r, dim, metric, shared);
        let n = chunk.len();
        let tile = (TILE_BYTES / (4 * n)).clamp(1, docs.max(1));
        let mut scores = gpu.zeros::<f32>(n * tile)?;
        let lists = Lists::collect(&gpu, n, list, |list_s, list_r| {
            for doc0 in (0..docs).step_by(tile) {
                let m = tile.min(docs - doc0);
                gpu.maxsim_all(&inputs, doc0, m, m, &mut scores)?;
                gpu.select(&scores, n, m, m, None, &deleted, doc0, list, list_s, list_r)?;
            }
            Ok(())
        })?;
        let finished: Vec<TopK> = (0..n)
            .into_par_iter()
            .map(|qi| {
                let (q, qs) = prepared.query(qi, dim);
                let h = maxsim_bound(bound, metric, dim, q, *x_max);
                let (gs, gr) = lists.query(qi);
                let mut doc = Vec::new();
                let mut scratch = Vec::new();
                let slots = c.slots();
                // A corrupt row (`None`): the CPU path reports it.
                let exact = |seg: u32, row: u32| {
                    let s = &slots[seg as usize].segment;
                    let on = (q, qs);
                    super::multi::maxsim_row(s, field, row, metric, dim, on, &mut doc, &mut scratch)
                        .ok()
                };
                finish(|g| r.locate(g), live, k, gs, gr, 0.0, h, exact)
                    .map(Ok)
                    .unwrap_or_else(|| {
                        super::multi::search_maxsim(c, field, metric, dim, &[chunk[qi]], k)
                            .map(|mut t| t.pop().expect("one query"))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        tops.extend(finished);
    }
    Ok(Some(tops))
}

/// Approximate MaxSim of listed pairs on device `ordinal`: `pairs[i] = (query, segment ordinal,
/// row)`. Returns the GPU's score of each pair and, per query, the bound on how far a GPU score
/// may lie from the CPU's exact one ([`Bound`]). The caller rescores exactly what can matter.
pub(super) fn maxsim_pairs(
    c: &Collection,
    field: usize,
    metric: Metric,
    dim: usize,
    queries: &[&[f32]],
    pairs: &[(u32, u32, u32)],
    ordinal: usize,
) -> Result<Option<(Vec<f32>, Vec<f64>)>> {
    let gpu = Gpu::open(ordinal)?;
    let Some(shared) = maxsim_fits(&gpu, queries, dim, metric) else {
        return Ok(None);
    };
    let r = resident(c, &gpu, field, GpuPrecision::Stored)?;
    let ResidentData::Multi { x_max, bound, .. } = &r.data else {
        unreachable!("a multi-vector field's copy")
    };
    let prepared = MaxSimQueries::new(&gpu, queries, dim, metric)?;
    let bounds = (0..queries.len())
        .map(|i| maxsim_bound(bound, metric, dim, prepared.query(i, dim).0, *x_max))
        .collect();
    if pairs.is_empty() {
        return Ok(Some((Vec::new(), bounds)));
    }
    let inputs = prepared.inputs(&r, dim, metric, shared);
    let pair_query: Vec<i32> = pairs.iter().map(|p| p.0 as i32).collect();
    let pair_doc: Vec<u32> = pairs
        .iter()
        .map(|&(_, seg, row)| (r.starts[seg as usize] + row as usize) as u32)
        .collect();
    let (pq, pd) = (gpu.upload(&pair_query)?, gpu.upload(&pair_doc)?);
    let mut out = gpu.zeros::<f32>(pairs.len())?;
    gpu.maxsim_pairs(&inputs, &pq, &pd, pairs.len(), &mut out)?;
    let mut scores = gpu.download(&out)?;
    scores.truncate(pairs.len());
    Ok(Some((scores, bounds)))
}

/// The shared memory the MaxSim kernels need for `queries`, or `None` when they run on the CPU:
/// a query too long for the device's shared memory, or a cosine query with a zero token (whose
/// non-finite similarity the CPU reports).
fn maxsim_fits(gpu: &Gpu, queries: &[&[f32]], dim: usize, metric: Metric) -> Option<usize> {
    let longest = queries.iter().map(|q| q.len() / dim).max().unwrap_or(0);
    let shared = crate::gpu::maxsim_shared_bytes(longest, dim);
    let zero_token = metric == Metric::Cosine
        && queries
            .iter()
            .any(|q| q.chunks_exact(dim).any(|t| t.iter().all(|v| *v == 0.0)));
    (shared <= gpu.maxsim_shared() && !zero_token).then_some(shared)
}

/// [`Bound`] of a MaxSim score: per query token, the bound of its best similarity (the best of
/// two lists differs by at most the largest pairwise difference), plus the f32 summation of the
/// maxima on each side.
fn maxsim_bound(b: &Bound, metric: Metric, dim: usize, q: &[f32], x_max: f64) -> f64 {
    let lq = (q.len() / dim) as f64;
    q.chunks_exact(dim)
        .map(|t| {
            let n = crate::dtype::norm_f64(t);
            let (per, size) = match metric {
                Metric::Ip => (b.dot(n, x_max), n * x_max),
                // Prepared tokens are unit vectors; document tokens scaled by the same inverse
                // norms on both sides.
                Metric::Cosine => (b.rel + b.dim * 2f64.powi(-125) + 2f64.powi(-20), 1.0),
                Metric::L2 => {
                    let s = (n + x_max).powi(2);
                    (
                        2.0 * b.dot(n, x_max) + (b.dim + 16.0) * 2f64.powi(-20) * s,
                        s,
                    )
                }
            };
            per + (lq + 4.0) * 2f64.powi(-22) * size
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one_segment(g: usize) -> (u32, u32) {
        (0, g as u32)
    }

    #[test]
    fn a_list_that_never_filled_holds_every_live_row() {
        let scores = [3.0, 1.0, f32::NEG_INFINITY, f32::NEG_INFINITY];
        let rows = [4, 7, NO_ROW, NO_ROW];
        let scorer = |_, r: u32| Some(r as f32);
        let top = finish(one_segment, 2, 1, &scores, &rows, 0.0, 1e9, scorer)
            .expect("no row was left out");
        // A live row is missing (its GPU score was not finite): the CPU decides.
        assert!(finish(one_segment, 3, 1, &scores, &rows, 0.0, 1e9, scorer).is_none());
        let best = top.into_sorted();
        assert_eq!((best[0].row, best[0].score), (7, 7.0));
    }

    #[test]
    fn a_full_list_is_kept_only_when_no_row_left_out_can_reach_the_top_k() {
        // GPU scores 5, 4, 3 (the last: every row left out scored at most 3 on the GPU).
        let scores = [5.0, 4.0, 3.0];
        let rows = [0, 1, 2];
        let exact = |_, r: u32| Some([5.0, 4.0, 3.0][r as usize]);
        // k = 2: the 2nd exact score 4 is above 3 + 0.5.
        assert!(finish(one_segment, 3, 2, &scores, &rows, 0.0, 0.5, exact).is_some());
        // ... but not above 3 + 1 (a row left out might tie 4).
        assert!(finish(one_segment, 3, 2, &scores, &rows, 0.0, 1.0, exact).is_none());
        // The offset moves GPU scores to the CPU's scale (L2 leaves out −|q|²).
        assert!(finish(one_segment, 3, 2, &scores, &rows, 2.0, 2.5, exact).is_some());
        // A scorer that fails sends the query to the CPU.
        assert!(finish(one_segment, 3, 2, &scores, &rows, 0.0, 0.5, |_, _| None).is_none());
    }

    /// Rounds to TF32 by truncation (the worse of the two roundings tensor cores may use).
    fn tf32(v: f32) -> f32 {
        f32::from_bits(v.to_bits() & !((1 << 13) - 1))
    }

    /// A GPU-like inner product: inputs rounded to `t`, products summed in f32 in another order
    /// than the CPU's (backwards, in blocks of 8, as split sums do).
    fn gpu_dot(q: &[f32], x: &[f32], t: GpuType, tf: bool) -> f32 {
        let round = |v: f32| -> f32 {
            let v = match t {
                GpuType::F32 => v,
                GpuType::F16 => half::f16::from_f32(v).to_f32(),
                GpuType::Bf16 => half::bf16::from_f32(v).to_f32(),
            };
            if tf {
                tf32(v)
            } else {
                v
            }
        };
        let products: Vec<f32> = q
            .iter()
            .zip(x)
            .map(|(a, b)| round(*a) * round(*b))
            .collect();
        products
            .rchunks(8)
            .map(|c| c.iter().fold(0.0f32, |s, p| s + p))
            .fold(0.0f32, |s, p| s + p)
    }

    fn vector(dim: usize) -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(-4.0f32..4.0, dim)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The bound covers the distance between a GPU-like computation and the CPU's own
        /// kernel (simsimd), for every metric, stored type and GPU precision.
        #[test]
        fn bound_covers_gpu_versus_cpu_scores(
            (q, x) in (1usize..200).prop_flat_map(|d| (vector(d), vector(d))),
            scale in 0.001f32..100.0,
        ) {
            let x: Vec<f32> = x.iter().map(|v| v * scale).collect();
            // Zero queries are refused before any search (`check_query`).
            prop_assume!(round_to(DType::Bf16, &q).iter().any(|v| *v != 0.0));
            let dim = q.len();
            for stored in [DType::F32, DType::F16, DType::Bf16] {
                let x_stored: Vec<f32> = match stored {
                    DType::F32 => x.clone(),
                    DType::F16 => x.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect(),
                    DType::Bf16 => x.iter().map(|v| half::bf16::from_f32(*v).to_f32()).collect(),
                };
                let mut bytes = Vec::new();
                stored.encode_into(&x_stored, &mut bytes);
                let xr = crate::dtype::VectorRef::from_bytes(stored, &bytes).unwrap();
                let prepared = PreparedQuery::new(&q, stored);
                let q_cpu = round_to(stored, &q);
                for p in [GpuPrecision::Stored, GpuPrecision::Tf32, GpuPrecision::F16, GpuPrecision::Bf16] {
                    if p == GpuPrecision::Tf32 && stored != DType::F32 {
                        continue;
                    }
                    let (t, tf) = gpu_type(stored, p);
                    let b = Bound::new(dim, stored, t, tf);
                    // The GPU reads the query as the CPU prepared it when the types agree.
                    let q_gpu = if gpu_type(stored, GpuPrecision::Stored).0 == t { &q_cpu } else { &q };
                    let qn = crate::dtype::norm_f64(&q_cpu);
                    let xn = crate::dtype::norm_f64(&x_stored);
                    for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
                        let cpu = similarity(metric, &prepared, xr) as f64;
                        let gpu = match metric {
                            Metric::Ip => gpu_dot(q_gpu, &x_stored, t, tf) as f64,
                            Metric::Cosine => {
                                let qh: Vec<f32> = q_cpu.iter().map(|v| (*v as f64 / qn) as f32).collect();
                                let inv = if xn > 0.0 { (1.0 / xn) as f32 } else { 0.0 };
                                (gpu_dot(&qh, &x_stored, t, tf) * inv) as f64
                            }
                            Metric::L2 => {
                                let s = 2.0f32.mul_add(gpu_dot(q_gpu, &x_stored, t, tf), -((xn * xn) as f32));
                                s as f64 - qn * qn
                            }
                        };
                        let inv_max = if xn > 0.0 { 1.0 / xn } else { 0.0 };
                        let h = b.dense(metric, qn, xn, inv_max);
                        prop_assert!(
                            (gpu - cpu).abs() <= h,
                            "{metric:?} {stored:?} {p:?} dim {dim}: gpu {gpu} cpu {cpu} bound {h}"
                        );
                    }
                }
            }
        }
    }
}
