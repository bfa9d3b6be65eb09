//! The PLAID section (kind 22) of a multi-vector field: ColBERTv2's residual codec (centroids,
//! quantile buckets), every token's centroid and packed residual, and the inverted lists
//! centroid → documents that PLAID's candidate generation reads. Specified in
//! `format-spec/plaid.md`.
//!
//! ```text
//! header (64 bytes)
//!   0 u32 dim            d, the field's dimension
//!   4 u32 nbits          b ∈ {1, 2, 4}: residual bits per dimension
//!   8 u32 centroids      K
//!  12 u32 reserved, 0
//!  16 u64 rows           N, the segment's rows
//!  24 u64 tokens         T, the field's tokens in the segment
//!  32 u64 trained_rows   documents in the collection when the codec was trained
//!  40 u64 codec_id       XXH3-64 of the bytes of centroids ‖ cutoffs ‖ weights
//!  48 u64 postings       P, entries of the inverted lists
//!  56..64 reserved, 0
//! at 64:                  centroids f32[K × d]
//! at align64:             cutoffs f32[2^b − 1], then weights f32[2^b]
//! at align64:             codes u32[T]          (centroid of each token, in token order)
//! at align64:             list_offsets u64[K + 1]
//! at align64:             list_rows u32[P]      (per centroid: ascending rows with a token in it)
//! at align64:             residuals u8[T × d·b/8]; the section ends there
//! ```
//!
//! Residual packing: token `t`'s dimension `j` has bucket `q ∈ 0..2^b` stored in byte
//! `t·d·b/8 + ⌊j·b/8⌋` at bit shift `8 − b − (j·b mod 8)` (the first dimension in the high bits).

use std::path::Path;

use crate::error::{Error, Result};

/// Bytes of the section header.
pub const HEADER_LEN: usize = 64;

fn align64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// A residual codec: the centroids and the quantile buckets of the residuals.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaidCodec {
    /// Dimension d.
    pub dim: usize,
    /// Bits per residual dimension.
    pub nbits: u32,
    /// `K × d`, L2-normalised rows.
    pub centroids: Vec<f32>,
    /// `2^b − 1` ascending bucket boundaries.
    pub cutoffs: Vec<f32>,
    /// `2^b` bucket values.
    pub weights: Vec<f32>,
    /// Documents in the collection when the codec was trained.
    pub trained_rows: u64,
}

impl PlaidCodec {
    /// Number of centroids.
    pub fn k(&self) -> usize {
        self.centroids.len() / self.dim
    }

    /// Bytes of one token's packed residual.
    pub fn residual_bytes(&self) -> usize {
        self.dim * self.nbits as usize / 8
    }

    /// XXH3-64 of the codec's arrays (which codec a segment was encoded with).
    pub fn id(&self) -> u64 {
        codec_id(&self.centroids, &self.cutoffs, &self.weights)
    }
}

fn codec_id(centroids: &[f32], cutoffs: &[f32], weights: &[f32]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for a in [centroids, cutoffs, weights] {
        h.update(bytemuck::cast_slice(a));
    }
    h.digest()
}

/// A segment's PLAID data for one multi-vector field, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaidSection {
    /// The codec.
    pub codec: PlaidCodec,
    /// Rows of the segment.
    pub rows: u64,
    /// Centroid of each token, in token order.
    pub codes: Vec<u32>,
    /// `K + 1` offsets into `list_rows`.
    pub list_offsets: Vec<u64>,
    /// Per centroid, ascending rows.
    pub list_rows: Vec<u32>,
    /// Packed residuals, `tokens × residual_bytes`.
    pub residuals: Vec<u8>,
}

/// Byte offsets `(buckets, codes, lists, rows, residuals, length)` of a section, `None` on
/// overflow.
pub fn layout(dim: usize, nbits: u32, k: usize, tokens: u64, postings: u64) -> Option<[usize; 6]> {
    let tokens = usize::try_from(tokens).ok()?;
    let postings = usize::try_from(postings).ok()?;
    let buckets = align64(HEADER_LEN.checked_add(k.checked_mul(dim)?.checked_mul(4)?)?);
    let codes = align64(buckets.checked_add(((1usize << nbits) * 2 - 1) * 4)?);
    let lists = align64(codes.checked_add(tokens.checked_mul(4)?)?);
    let rows = align64(lists.checked_add(k.checked_add(1)?.checked_mul(8)?)?);
    let residuals = align64(rows.checked_add(postings.checked_mul(4)?)?);
    let len = residuals.checked_add(tokens.checked_mul(dim * nbits as usize / 8)?)?;
    Some([buckets, codes, lists, rows, residuals, len])
}

impl PlaidSection {
    /// The section's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let c = &self.codec;
        let k = c.k();
        let tokens = self.codes.len() as u64;
        let postings = self.list_rows.len() as u64;
        let [buckets, codes, lists, rows, residuals, len] =
            layout(c.dim, c.nbits, k, tokens, postings).expect("section fits in memory");
        let mut out = vec![0u8; len];
        let put = |out: &mut Vec<u8>, at: usize, b: &[u8]| out[at..at + b.len()].copy_from_slice(b);
        put(&mut out, 0, &(c.dim as u32).to_le_bytes());
        put(&mut out, 4, &c.nbits.to_le_bytes());
        put(&mut out, 8, &(k as u32).to_le_bytes());
        put(&mut out, 16, &self.rows.to_le_bytes());
        put(&mut out, 24, &tokens.to_le_bytes());
        put(&mut out, 32, &c.trained_rows.to_le_bytes());
        put(&mut out, 40, &c.id().to_le_bytes());
        put(&mut out, 48, &postings.to_le_bytes());
        put(&mut out, HEADER_LEN, bytemuck::cast_slice(&c.centroids));
        put(&mut out, buckets, bytemuck::cast_slice(&c.cutoffs));
        put(
            &mut out,
            buckets + 4 * c.cutoffs.len(),
            bytemuck::cast_slice(&c.weights),
        );
        put(&mut out, codes, bytemuck::cast_slice(&self.codes));
        put(&mut out, lists, bytemuck::cast_slice(&self.list_offsets));
        put(&mut out, rows, bytemuck::cast_slice(&self.list_rows));
        put(&mut out, residuals, &self.residuals);
        out
    }
}

/// A validated, mapped PLAID section.
#[derive(Debug, Clone, Copy)]
pub struct PlaidView<'a> {
    /// Dimension.
    pub dim: usize,
    /// Bits per residual dimension.
    pub nbits: u32,
    /// Documents in the collection when the codec was trained.
    pub trained_rows: u64,
    /// The codec's id.
    pub codec_id: u64,
    /// `K × d` centroids.
    pub centroids: &'a [f32],
    /// Bucket boundaries.
    pub cutoffs: &'a [f32],
    /// Bucket values.
    pub weights: &'a [f32],
    /// Centroid of each token.
    pub codes: &'a [u32],
    /// `K + 1` offsets into `list_rows`.
    pub list_offsets: &'a [u64],
    /// Per centroid, ascending rows.
    pub list_rows: &'a [u32],
    /// Packed residuals.
    pub residuals: &'a [u8],
}

impl<'a> PlaidView<'a> {
    /// Checks the header and the exact length of section `bytes` (at file offset `base` of
    /// `path`, 64-aligned in memory) for a segment of `rows` rows and `tokens` tokens of a field
    /// of dimension `dim`, and the codec's values (`O(K·d)`; the per-token arrays are checked by
    /// [`PlaidView::verify`] and per access).
    pub fn open(
        bytes: &'a [u8],
        path: &Path,
        base: u64,
        rows: u64,
        tokens: u64,
        dim: usize,
    ) -> Result<Self> {
        Self::open_checked(bytes, path, base, (rows, tokens, dim), true)
    }

    /// [`PlaidView::open`], checking the codec's values (finite centroids, ordered cutoffs, the
    /// hash, ascending list offsets: `O(K·d)`) only when `check_codec`; the header, the lengths
    /// and the alignment are always checked. For a section whose codec an earlier open of the
    /// same mapped bytes already checked.
    pub fn open_checked(
        bytes: &'a [u8],
        path: &Path,
        base: u64,
        (rows, tokens, dim): (u64, u64, usize),
        check_codec: bool,
    ) -> Result<Self> {
        let err = |at: usize, detail: String| {
            Error::corrupt(path, "plaid index", base + at as u64, detail)
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
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let (d, nbits, k) = (u32_at(0) as usize, u32_at(4), u32_at(8) as usize);
        if d != dim {
            return Err(err(
                0,
                format!("index of dimension {d}, the field has {dim}"),
            ));
        }
        if ![1, 2, 4].contains(&nbits) || !(d * nbits as usize).is_multiple_of(8) {
            return Err(err(
                4,
                format!("{nbits} residual bits per dimension (expected 1, 2 or 4, with d·b a multiple of 8)"),
            ));
        }
        if k < 1 {
            return Err(err(8, "no centroids".into()));
        }
        if u32_at(12) != 0 || bytes[56..HEADER_LEN].iter().any(|b| *b != 0) {
            return Err(err(12, "reserved header bytes are not zero".into()));
        }
        if u64_at(16) != rows || u64_at(24) != tokens {
            return Err(err(
                16,
                format!(
                    "index of {} rows and {} tokens, the segment has {rows} and {tokens}",
                    u64_at(16),
                    u64_at(24)
                ),
            ));
        }
        let postings = u64_at(48);
        let [buckets, codes, lists, rows_at, residuals, len] =
            layout(d, nbits, k, tokens, postings)
                .filter(|l| l[5] == bytes.len())
                .ok_or_else(|| {
                    err(
                        0,
                        format!(
                            "section of {} bytes; {k} centroids, {tokens} tokens and {postings} postings of dimension {d} need a different length",
                            bytes.len()
                        ),
                    )
                })?;
        let f32s = |at: usize, n: usize| -> Result<&'a [f32]> {
            bytemuck::try_cast_slice(&bytes[at..at + 4 * n])
                .map_err(|_| err(at, "section is not 4-byte aligned in memory".into()))
        };
        let centroids = f32s(HEADER_LEN, k * d)?;
        let nb = 1usize << nbits;
        let cutoffs = f32s(buckets, nb - 1)?;
        let weights = f32s(buckets + 4 * (nb - 1), nb)?;
        if !check_codec {
            // Already checked: only the slices.
        } else if let Some(i) = centroids.iter().position(|v| !v.is_finite()) {
            return Err(err(
                HEADER_LEN + 4 * i,
                "a centroid value is not finite".into(),
            ));
        }
        if check_codec
            && (!cutoffs.iter().chain(weights).all(|v| v.is_finite())
                || !cutoffs.windows(2).all(|w| w[0] <= w[1]))
        {
            return Err(err(
                buckets,
                "bucket cutoffs must be finite and ascending, weights finite".into(),
            ));
        }
        let id = u64_at(40);
        if check_codec && codec_id(centroids, cutoffs, weights) != id {
            return Err(err(
                40,
                "the codec's arrays do not hash to its recorded id".into(),
            ));
        }
        let list_offsets: &[u64] = bytemuck::try_cast_slice(&bytes[lists..lists + 8 * (k + 1)])
            .map_err(|_| err(lists, "section is not 8-byte aligned in memory".into()))?;
        if list_offsets[0] != 0
            || list_offsets[k] != postings
            || (check_codec && !list_offsets.windows(2).all(|w| w[0] <= w[1]))
        {
            return Err(err(
                lists,
                format!("inverted-list offsets must ascend from 0 to the {postings} postings"),
            ));
        }
        let t = tokens as usize;
        Ok(PlaidView {
            dim: d,
            nbits,
            trained_rows: u64_at(32),
            codec_id: id,
            centroids,
            cutoffs,
            weights,
            codes: bytemuck::try_cast_slice(&bytes[codes..codes + 4 * t])
                .map_err(|_| err(codes, "section is not 4-byte aligned in memory".into()))?,
            list_offsets,
            list_rows: bytemuck::try_cast_slice(&bytes[rows_at..rows_at + 4 * postings as usize])
                .map_err(|_| {
                err(rows_at, "section is not 4-byte aligned in memory".into())
            })?,
            residuals: &bytes[residuals..len],
        })
    }

    /// Number of centroids.
    pub fn k(&self) -> usize {
        self.list_offsets.len() - 1
    }

    /// Bytes of one token's packed residual.
    pub fn residual_bytes(&self) -> usize {
        self.dim * self.nbits as usize / 8
    }

    /// The rows of centroid `c`'s inverted list.
    pub fn list(&self, c: usize) -> &'a [u32] {
        &self.list_rows[self.list_offsets[c] as usize..self.list_offsets[c + 1] as usize]
    }

    /// The codec as owned data (to encode new segments with it).
    pub fn codec(&self) -> PlaidCodec {
        PlaidCodec {
            dim: self.dim,
            nbits: self.nbits,
            centroids: self.centroids.to_vec(),
            cutoffs: self.cutoffs.to_vec(),
            weights: self.weights.to_vec(),
            trained_rows: self.trained_rows,
        }
    }

    /// Full check against the segment's token offsets (`token_range(row)`): every code names a
    /// centroid; each inverted list ascends strictly, names rows below `rows`, and lists exactly
    /// the rows having a token of that centroid.
    pub fn verify(
        &self,
        path: &Path,
        base: u64,
        rows: usize,
        token_range: &dyn Fn(usize) -> Result<std::ops::Range<usize>>,
    ) -> Result<()> {
        let err = |detail: String| Error::corrupt(path, "plaid index", base, detail);
        let k = self.k();
        if let Some(t) = self.codes.iter().position(|&c| c as usize >= k) {
            return Err(err(format!("token {t}: centroid {} of {k}", self.codes[t])));
        }
        let mut want: Vec<Vec<u32>> = vec![Vec::new(); k];
        for r in 0..rows {
            let range = token_range(r)?;
            let mut cs: Vec<u32> = self
                .codes
                .get(range.clone())
                .ok_or_else(|| err(format!("row {r}: tokens {range:?} outside the codes")))?
                .to_vec();
            cs.sort_unstable();
            cs.dedup();
            for c in cs {
                want[c as usize].push(r as u32);
            }
        }
        for (c, w) in want.iter().enumerate() {
            if self.list(c) != w.as_slice() {
                return Err(err(format!(
                    "centroid {c}: inverted list {:?} does not list exactly the rows with a token of that centroid",
                    &self.list(c)[..self.list(c).len().min(8)]
                )));
            }
        }
        Ok(())
    }
}
