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
//!  12 u32 layout         bit 0: codes are u16; bit 1: centroids are f16; other bits 0
//!  16 u64 rows           N, the segment's rows
//!  24 u64 tokens         T, the field's tokens in the segment
//!  32 u64 trained_rows   documents the codec accounts for (format-spec/plaid.md, Codec)
//!  40 u64 codec_id       XXH3-64 of the f32 bytes of centroids ‖ cutoffs ‖ weights
//!  48 u64 postings       P, entries of the inverted lists
//!  56..64 reserved, 0
//! at 64:                  centroids f32[K × d] (f16 with layout bit 1)
//! at align64:             cutoffs f32[2^b − 1], then weights f32[2^b]
//! at align64:             codes u32[T]          (u16 with layout bit 0; centroid of each token)
//! at align64:             list_offsets u64[K + 1]
//! at align64:             list_rows u32[P]      (per centroid: ascending rows with a token in it)
//! at align64:             residuals u8[T × d·b/8]; the section ends there
//! ```
//!
//! Residual packing: token `t`'s dimension `j` has bucket `q ∈ 0..2^b` stored in byte
//! `t·d·b/8 + ⌊j·b/8⌋` at bit shift `8 − b − (j·b mod 8)` (the first dimension in the high bits).

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::segment::SectionBody;
use crate::storage::SpillBuffer;

/// Bytes of the section header.
pub const HEADER_LEN: usize = 64;
/// Layout bit 0: the codes are `u16` (a codec of at most 65,536 centroids).
pub const LAYOUT_CODES_U16: u32 = 1;
/// Layout bit 1: the centroids are IEEE binary16.
pub const LAYOUT_CENTROIDS_F16: u32 = 2;

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
    /// Documents the codec accounts for: the rows of the segment it was trained from, less
    /// deleted rows that compactions keeping it dropped.
    pub trained_rows: u64,
    /// The centroids are binary16 values (every one exactly representable) and are stored so.
    /// Codecs trained by vellum are; codecs read from sections written before are kept as they
    /// were, so that the segments encoded with them keep one codec id.
    pub half_centroids: bool,
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

    /// The section layout bits a segment encoded with this codec gets: `u16` codes when
    /// `K ≤ 65,536`, binary16 centroids when [`PlaidCodec::half_centroids`].
    pub fn layout(&self) -> u32 {
        let mut bits = 0;
        if self.k() <= 1 << 16 {
            bits |= LAYOUT_CODES_U16;
        }
        if self.half_centroids {
            bits |= LAYOUT_CENTROIDS_F16;
        }
        bits
    }
}

/// Binary16 centroids widened to f32, shared by every open segment whose section holds the same
/// codec (a collection's segments usually do): one copy in memory per codec, not per segment.
/// `widened` is what the caller decoded and checked against `id`; a cached copy is used only when
/// equal to it.
pub fn shared_centroids(id: u64, widened: Vec<f32>) -> std::sync::Arc<[f32]> {
    use std::sync::{Arc, Weak};
    static CACHE: parking_lot::Mutex<Vec<(u64, Weak<[f32]>)>> = parking_lot::Mutex::new(Vec::new());
    let mut cache = CACHE.lock();
    cache.retain(|(_, w)| w.strong_count() > 0);
    if let Some(found) = cache
        .iter()
        .filter(|(i, _)| *i == id)
        .find_map(|(_, w)| w.upgrade().filter(|a| **a == *widened))
    {
        return found;
    }
    let shared: Arc<[f32]> = widened.into();
    cache.push((id, Arc::downgrade(&shared)));
    shared
}

/// The token codes of a section, as stored: `u16` or `u32` per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codes<'a> {
    /// Two bytes per token (layout bit 0).
    U16(&'a [u16]),
    /// Four bytes per token.
    U32(&'a [u32]),
}

impl<'a> Codes<'a> {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        match self {
            Codes::U16(c) => c.len(),
            Codes::U32(c) => c.len(),
        }
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The code of token `t`, `None` past the end.
    pub fn get(&self, t: usize) -> Option<u32> {
        match self {
            Codes::U16(c) => c.get(t).map(|&x| u32::from(x)),
            Codes::U32(c) => c.get(t).copied(),
        }
    }

    /// The codes of tokens `range`, `None` when it runs past the end.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Option<Codes<'a>> {
        Some(match self {
            Codes::U16(c) => Codes::U16(c.get(range)?),
            Codes::U32(c) => Codes::U32(c.get(range)?),
        })
    }

    /// Calls `f` with every code, in token order; stops at the first error.
    pub fn try_for_each<E>(
        &self,
        mut f: impl FnMut(u32) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        match self {
            Codes::U16(c) => c.iter().try_for_each(|&x| f(u32::from(x))),
            Codes::U32(c) => c.iter().try_for_each(|&x| f(x)),
        }
    }

    /// The codes as `u32`s (a copy).
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            Codes::U16(c) => c.iter().map(|&x| u32::from(x)).collect(),
            Codes::U32(c) => c.to_vec(),
        }
    }

    /// The codes' bytes as stored.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Codes::U16(c) => bytemuck::cast_slice(c),
            Codes::U32(c) => bytemuck::cast_slice(c),
        }
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
#[derive(Debug)]
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
    /// Packed residuals, `tokens × residual_bytes`: in memory, or (a large build) partly in an
    /// unnamed temporary file, read back as the section is written.
    pub residuals: SpillBuffer,
}

/// Byte offsets `(buckets, codes, lists, rows, residuals, length)` of a section with layout bits
/// `bits`, `None` on overflow.
pub fn layout(
    dim: usize,
    nbits: u32,
    k: usize,
    tokens: u64,
    postings: u64,
    bits: u32,
) -> Option<[usize; 6]> {
    let tokens = usize::try_from(tokens).ok()?;
    let postings = usize::try_from(postings).ok()?;
    let centroid_size = if bits & LAYOUT_CENTROIDS_F16 != 0 {
        2
    } else {
        4
    };
    let code_size = if bits & LAYOUT_CODES_U16 != 0 { 2 } else { 4 };
    let buckets = align64(HEADER_LEN.checked_add(k.checked_mul(dim)?.checked_mul(centroid_size)?)?);
    let codes = align64(buckets.checked_add(((1usize << nbits) * 2 - 1) * 4)?);
    let lists = align64(codes.checked_add(tokens.checked_mul(code_size)?)?);
    let rows = align64(lists.checked_add(k.checked_add(1)?.checked_mul(8)?)?);
    let residuals = align64(rows.checked_add(postings.checked_mul(4)?)?);
    let len = residuals.checked_add(tokens.checked_mul(dim * nbits as usize / 8)?)?;
    Some([buckets, codes, lists, rows, residuals, len])
}

impl PlaidSection {
    /// The section's bytes, in one buffer (the segment writer streams them instead, through
    /// [`SectionBody`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SectionBody::len(self) as usize);
        self.write(&mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .expect("writing to memory cannot fail");
        out
    }

    /// The offsets of [`layout`] for this section.
    fn layout(&self) -> [usize; 6] {
        let c = &self.codec;
        layout(
            c.dim,
            c.nbits,
            c.k(),
            self.codes.len() as u64,
            self.list_rows.len() as u64,
            c.layout(),
        )
        .expect("a section built in memory has a length that fits in memory")
    }
}

impl SectionBody for PlaidSection {
    fn len(&self) -> u64 {
        self.layout()[5] as u64
    }

    fn write(&self, put: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let c = &self.codec;
        let bits = c.layout();
        let [buckets, codes, lists, rows, residuals, _] = self.layout();
        let mut at = 0usize;
        // Writes `b` at offset `to`, after zeros up to it.
        let mut put_at = |to: usize, b: &[u8]| -> Result<()> {
            debug_assert!(to >= at, "pieces in order");
            if to > at {
                put(&vec![0u8; to - at])?;
            }
            put(b)?;
            at = to + b.len();
            Ok(())
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(&(c.dim as u32).to_le_bytes());
        header.extend_from_slice(&c.nbits.to_le_bytes());
        header.extend_from_slice(&(c.k() as u32).to_le_bytes());
        header.extend_from_slice(&bits.to_le_bytes());
        header.extend_from_slice(&self.rows.to_le_bytes());
        header.extend_from_slice(&(self.codes.len() as u64).to_le_bytes());
        header.extend_from_slice(&c.trained_rows.to_le_bytes());
        header.extend_from_slice(&c.id().to_le_bytes());
        header.extend_from_slice(&(self.list_rows.len() as u64).to_le_bytes());
        header.resize(HEADER_LEN, 0);
        put_at(0, &header)?;
        if bits & LAYOUT_CENTROIDS_F16 != 0 {
            let half: Vec<half::f16> = c
                .centroids
                .iter()
                .map(|&v| half::f16::from_f32(v))
                .collect();
            put_at(HEADER_LEN, bytemuck::cast_slice(&half))?;
        } else {
            put_at(HEADER_LEN, bytemuck::cast_slice(&c.centroids))?;
        }
        put_at(buckets, bytemuck::cast_slice(&c.cutoffs))?;
        put_at(
            buckets + 4 * c.cutoffs.len(),
            bytemuck::cast_slice(&c.weights),
        )?;
        if bits & LAYOUT_CODES_U16 != 0 {
            // Narrowed a block at a time: no second copy of every code.
            let mut to = codes;
            for block in self.codes.chunks(1 << 16) {
                let narrow: Vec<u16> = block
                    .iter()
                    .map(|&x| u16::try_from(x).expect("codes name one of at most 65,536 centroids"))
                    .collect();
                put_at(to, bytemuck::cast_slice(&narrow))?;
                to += 2 * narrow.len();
            }
        } else {
            put_at(codes, bytemuck::cast_slice(&self.codes))?;
        }
        put_at(lists, bytemuck::cast_slice(&self.list_offsets))?;
        put_at(rows, bytemuck::cast_slice(&self.list_rows))?;
        put_at(residuals, &[])?;
        self.residuals.write_to(put)
    }
}

/// A validated, mapped PLAID section.
#[derive(Debug, Clone)]
pub struct PlaidView<'a> {
    /// Dimension.
    pub dim: usize,
    /// The segment's rows (every row an inverted list names is below this).
    pub rows: u64,
    /// The section's offset in its file (what errors about its bytes report).
    pub base: u64,
    /// Bits per residual dimension.
    pub nbits: u32,
    /// The header's layout bits ([`LAYOUT_CODES_U16`], [`LAYOUT_CENTROIDS_F16`]).
    pub layout: u32,
    /// Documents the codec accounts for: the rows of the segment it was trained from, less
    /// deleted rows that compactions keeping it dropped.
    pub trained_rows: u64,
    /// The codec's id.
    pub codec_id: u64,
    /// `K × d` centroids: the mapped bytes, or binary16 centroids widened to f32.
    pub centroids: std::borrow::Cow<'a, [f32]>,
    /// Bucket boundaries.
    pub cutoffs: &'a [f32],
    /// Bucket values.
    pub weights: &'a [f32],
    /// Centroid of each token.
    pub codes: Codes<'a>,
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
        Self::open_checked(bytes, path, base, (rows, tokens, dim), None)
    }

    /// [`PlaidView::open`]; `checked` is `Some` for a section whose codec an earlier open of the
    /// same mapped bytes already checked, holding the centroids that open returned (used in
    /// place of widening binary16 centroids again). Then the codec's values (finite centroids,
    /// ordered cutoffs, the hash, ascending list offsets: `O(K·d)`) are not checked again; the
    /// header, the lengths and the alignment always are.
    pub fn open_checked(
        bytes: &'a [u8],
        path: &Path,
        base: u64,
        (rows, tokens, dim): (u64, u64, usize),
        checked: Option<&'a [f32]>,
    ) -> Result<Self> {
        let check_codec = checked.is_none();
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
        let bits = u32_at(12);
        if bits & !(LAYOUT_CODES_U16 | LAYOUT_CENTROIDS_F16) != 0 {
            return Err(err(
                12,
                format!("unknown layout bits {bits:#x} (this version knows 0x1 and 0x2)"),
            ));
        }
        if bits & LAYOUT_CODES_U16 != 0 && k > 1 << 16 {
            return Err(err(
                12,
                format!("u16 codes cannot name {k} centroids (at most 65,536)"),
            ));
        }
        if bytes[56..HEADER_LEN].iter().any(|b| *b != 0) {
            return Err(err(56, "reserved header bytes are not zero".into()));
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
            layout(d, nbits, k, tokens, postings, bits)
                .filter(|l| l[5] == bytes.len())
                .ok_or_else(|| {
                    err(
                        0,
                        format!(
                            "section of {} bytes; {k} centroids, {tokens} tokens and {postings} postings of dimension {d} (layout bits {bits:#x}) need a different length",
                            bytes.len()
                        ),
                    )
                })?;
        let f32s = |at: usize, n: usize| -> Result<&'a [f32]> {
            bytemuck::try_cast_slice(&bytes[at..at + 4 * n])
                .map_err(|_| err(at, "section is not 4-byte aligned in memory".into()))
        };
        let centroids: std::borrow::Cow<'a, [f32]> = if bits & LAYOUT_CENTROIDS_F16 == 0 {
            std::borrow::Cow::Borrowed(f32s(HEADER_LEN, k * d)?)
        } else if let Some(known) = checked.filter(|c| c.len() == k * d) {
            std::borrow::Cow::Borrowed(known)
        } else {
            let half: &[half::f16] = bytemuck::try_cast_slice(
                &bytes[HEADER_LEN..HEADER_LEN + 2 * k * d],
            )
            .map_err(|_| err(HEADER_LEN, "section is not 2-byte aligned in memory".into()))?;
            std::borrow::Cow::Owned(half.iter().map(|h| h.to_f32()).collect())
        };
        let nb = 1usize << nbits;
        let cutoffs = f32s(buckets, nb - 1)?;
        let weights = f32s(buckets + 4 * (nb - 1), nb)?;
        if !check_codec {
            // Already checked: only the slices.
        } else if let Some(i) = centroids.iter().position(|v| !v.is_finite()) {
            let size = if bits & LAYOUT_CENTROIDS_F16 != 0 {
                2
            } else {
                4
            };
            return Err(err(
                HEADER_LEN + size * i,
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
        if check_codec && codec_id(&centroids, cutoffs, weights) != id {
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
        let misaligned = |at: usize| err(at, "section is not 4-byte aligned in memory".into());
        let codes = if bits & LAYOUT_CODES_U16 != 0 {
            Codes::U16(
                bytemuck::try_cast_slice(&bytes[codes..codes + 2 * t])
                    .map_err(|_| misaligned(codes))?,
            )
        } else {
            Codes::U32(
                bytemuck::try_cast_slice(&bytes[codes..codes + 4 * t])
                    .map_err(|_| misaligned(codes))?,
            )
        };
        Ok(PlaidView {
            dim: d,
            rows,
            base,
            nbits,
            layout: bits,
            trained_rows: u64_at(32),
            codec_id: id,
            centroids,
            cutoffs,
            weights,
            codes,
            list_offsets,
            list_rows: bytemuck::try_cast_slice(&bytes[rows_at..rows_at + 4 * postings as usize])
                .map_err(|_| misaligned(rows_at))?,
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

    /// Appends tokens `range` decompressed (`dim` values each) to `out`: centroid plus the
    /// residual's bucket values from `table` ([`lookup_table`] of this view's weights and bits),
    /// L2-normalised when `normalize` (cosine fields). A code naming no centroid or a token past
    /// the codes is [`Error::Corrupt`] (of `path`, the section at file offset `base`).
    pub fn decompress_tokens(
        &self,
        table: &[f32],
        range: std::ops::Range<usize>,
        normalize: bool,
        out: &mut Vec<f32>,
        (path, base): (&Path, u64),
    ) -> Result<()> {
        let dim = self.dim;
        let rb = self.residual_bytes();
        let corrupt = |t: usize, what: &str| {
            Error::corrupt(path, "plaid index", base, format!("token {t}: {what}"))
        };
        let start = out.len();
        out.resize(start + range.len() * dim, 0.0);
        for (i, t) in range.enumerate() {
            let code = self.codes.get(t).ok_or_else(|| corrupt(t, "no code"))? as usize;
            let centroid = self
                .centroids
                .get(code * dim..(code + 1) * dim)
                .ok_or_else(|| corrupt(t, "its code names no centroid"))?;
            let packed = self
                .residuals
                .get(t * rb..(t + 1) * rb)
                .ok_or_else(|| corrupt(t, "residual outside the section"))?;
            let at = start + i * dim;
            decompress(
                table,
                self.nbits,
                centroid,
                packed,
                normalize,
                &mut out[at..at + dim],
            );
        }
        Ok(())
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
            half_centroids: self.layout & LAYOUT_CENTROIDS_F16 != 0,
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
        if let Some(t) =
            (0..self.codes.len()).find(|&t| self.codes.get(t).is_none_or(|c| c as usize >= k))
        {
            return Err(err(format!(
                "token {t}: centroid {:?} of {k}",
                self.codes.get(t)
            )));
        }
        let mut want: Vec<Vec<u32>> = vec![Vec::new(); k];
        for r in 0..rows {
            let range = token_range(r)?;
            let mut cs: Vec<u32> = self
                .codes
                .slice(range.clone())
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

/// 256 × (8/b) bucket values: the residual values one packed byte stands for.
pub fn lookup_table(weights: &[f32], nbits: u32) -> Vec<f32> {
    let b = nbits as usize;
    let per = 8 / b;
    let mask = (1u8 << b) - 1;
    let mut t = Vec::with_capacity(256 * per);
    for byte in 0..=255u8 {
        for i in 0..per {
            let q = (byte >> (8 - b - i * b)) & mask;
            t.push(weights[q as usize]);
        }
    }
    t
}

/// Decompresses one token: centroid + looked-up residual into `out` (`dim`), L2-normalised when
/// `normalize` (cosine fields, whose tokens were normalised before coding; ColBERT's tokens are
/// unit vectors either way).
pub fn decompress(
    table: &[f32],
    nbits: u32,
    centroid: &[f32],
    packed: &[u8],
    normalize: bool,
    out: &mut [f32],
) {
    // One byte holds `PER` dimensions: a fixed width lets the compiler unroll and vectorise.
    fn add<const PER: usize>(table: &[f32], centroid: &[f32], packed: &[u8], out: &mut [f32]) {
        for ((o, c), &byte) in out
            .chunks_exact_mut(PER)
            .zip(centroid.chunks_exact(PER))
            .zip(packed)
        {
            let vals: &[f32; PER] = table[byte as usize * PER..][..PER]
                .try_into()
                .expect("PER values per byte");
            for k in 0..PER {
                o[k] = c[k] + vals[k];
            }
        }
    }
    match nbits {
        1 => add::<8>(table, centroid, packed, out),
        2 => add::<4>(table, centroid, packed, out),
        _ => add::<2>(table, centroid, packed, out),
    }
    if normalize {
        crate::dtype::normalize(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(k: usize, half_centroids: bool) -> PlaidSection {
        section_of(k, half_centroids, 40)
    }

    /// `tokens` tokens (a multiple of 4) of 8 dimensions, 4 per row.
    fn section_of(k: usize, half_centroids: bool, tokens: usize) -> PlaidSection {
        let dim = 8;
        let centroids = (0..k * dim).map(|i| (i % 13) as f32 * 0.25 - 1.0).collect();
        let codes: Vec<u32> = (0..tokens).map(|t| ((t * 7919) % k) as u32).collect();
        let mut lists = vec![Vec::new(); k];
        for (t, &c) in codes.iter().enumerate() {
            let row = t as u32 / 4;
            if lists[c as usize].last() != Some(&row) {
                lists[c as usize].push(row);
            }
        }
        let mut list_offsets = vec![0u64];
        let mut list_rows = Vec::new();
        for l in lists {
            list_rows.extend(l);
            list_offsets.push(list_rows.len() as u64);
        }
        PlaidSection {
            codec: PlaidCodec {
                dim,
                nbits: 2,
                centroids,
                cutoffs: vec![-0.1, 0.0, 0.1],
                weights: vec![-0.2, -0.05, 0.05, 0.2],
                trained_rows: 10,
                half_centroids,
            },
            rows: tokens as u64 / 4,
            codes,
            list_offsets,
            list_rows,
            residuals: SpillBuffer::from_vec((0..2 * tokens).map(|i| i as u8).collect()),
        }
    }

    /// The writer's pieces (u16 codes narrowed a block at a time, padding between parts) add
    /// up to the announced length and decode to the same section, across several blocks.
    #[test]
    fn a_section_written_in_pieces_decodes_whole() {
        let tokens = 3 * (1 << 16) + 4;
        let s = section_of(7, false, tokens);
        let mut pieces = 0;
        let mut bytes = Vec::new();
        s.write(&mut |b| {
            pieces += 1;
            bytes.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert!(pieces > 8, "{pieces} pieces");
        assert_eq!(bytes.len() as u64, SectionBody::len(&s));
        let mut buf = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..bytes.len()].copy_from_slice(&bytes);
        let b = &bytemuck::cast_slice::<u64, u8>(&buf)[..bytes.len()];
        let rows = tokens as u64 / 4;
        let v = PlaidView::open(b, Path::new("x"), 0, rows, tokens as u64, 8).unwrap();
        assert!(matches!(v.codes, Codes::U16(_)));
        assert_eq!(v.codes.to_vec(), s.codes);
        assert_eq!(Some(v.residuals), s.residuals.as_slice());
        assert_eq!(v.list_rows, &s.list_rows[..]);
    }

    /// Every layout round-trips: u16 codes up to 65,536 centroids, u32 beyond; binary16
    /// centroids only when the codec says so. The codec id does not depend on the layout.
    #[test]
    fn every_layout_round_trips() {
        for (k, half, bits) in [
            (5, false, LAYOUT_CODES_U16),
            (5, true, LAYOUT_CODES_U16 | LAYOUT_CENTROIDS_F16),
            (1 << 16, true, LAYOUT_CODES_U16 | LAYOUT_CENTROIDS_F16),
            ((1 << 16) + 1, false, 0),
            ((1 << 16) + 1, true, LAYOUT_CENTROIDS_F16),
        ] {
            let s = section(k, half);
            let bytes = s.encode();
            let mut buf = vec![0u64; bytes.len().div_ceil(8)];
            bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..bytes.len()].copy_from_slice(&bytes);
            let b = &bytemuck::cast_slice::<u64, u8>(&buf)[..bytes.len()];
            let v = PlaidView::open(b, Path::new("x"), 0, 10, 40, 8).unwrap();
            assert_eq!(v.layout, bits, "k {k}");
            assert_eq!(v.codec(), s.codec);
            assert_eq!(v.codec_id, s.codec.id());
            assert_eq!(v.codes.to_vec(), s.codes);
            assert_eq!(matches!(v.codes, Codes::U16(_)), k <= 1 << 16);
            assert_eq!(Some(v.residuals), s.residuals.as_slice());
            v.verify(Path::new("x"), 0, 10, &|r| Ok(4 * r..4 * r + 4))
                .unwrap();
            // A later open given the checked centroids uses them.
            let again =
                PlaidView::open_checked(b, Path::new("x"), 0, (10, 40, 8), Some(&v.centroids))
                    .unwrap();
            assert_eq!(again.centroids, v.centroids);
        }
    }

    /// Unknown layout bits and u16 codes for more than 65,536 centroids are refused by name.
    #[test]
    fn bad_layout_bits_are_refused() {
        let bytes = section(5, false).encode();
        let mut buf = vec![0u64; bytes.len().div_ceil(8)];
        let b = bytemuck::cast_slice_mut::<u64, u8>(&mut buf);
        b[..bytes.len()].copy_from_slice(&bytes);
        b[12] = 4;
        let e = PlaidView::open(&b[..bytes.len()], Path::new("x"), 0, 10, 40, 8).unwrap_err();
        assert!(e.to_string().contains("unknown layout bits 0x4"), "{e}");
        let bytes = section((1 << 16) + 1, false).encode();
        let mut buf = vec![0u64; bytes.len().div_ceil(8)];
        let b = bytemuck::cast_slice_mut::<u64, u8>(&mut buf);
        b[..bytes.len()].copy_from_slice(&bytes);
        b[12] = 1;
        let e = PlaidView::open(&b[..bytes.len()], Path::new("x"), 0, 10, 40, 8).unwrap_err();
        assert!(e.to_string().contains("u16 codes cannot name 65537"), "{e}");
    }
}
