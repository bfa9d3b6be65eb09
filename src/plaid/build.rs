//! The PLAID section a new segment gets for each multi-vector field with a declared PLAID index:
//! every token's centroid and packed residual, and the inverted lists centroid → rows. A segment
//! is encoded with the collection's current codec when it has one (new documents are not
//! re-clustered); otherwise a codec is trained on this segment's tokens.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::codec::{pack_residual, train};
use super::kmeans::assign;
use super::{PlaidCodec, PlaidParams, SplitMix64};
use crate::dtype::Metric;
use crate::error::{Error, Result};
use crate::format::plaid::{Codes, PlaidSection};
use crate::format::segment::{ExtraSection, SectionKind, SegmentSource};
use crate::schema::FieldKind;
use crate::storage::{SpillBuffer, SpillPolicy};

/// Codecs by field name.
pub type Codecs = BTreeMap<String, Arc<PlaidCodec>>;

/// What [`plaid_sections`] needs besides the rows.
#[derive(Debug, Clone)]
pub struct PlaidBuild<'a> {
    /// Declared PLAID indexes by field name.
    pub params: &'a BTreeMap<String, PlaidParams>,
    /// Codecs to encode with, by field name; a field without one gets a codec trained on the
    /// segment's tokens (which accounts for the segment's rows: `trained_rows`).
    pub codecs: &'a Codecs,
    /// Where the packed residuals go beyond what is held in memory (a build of a large segment
    /// keeps ~8 bytes per token in memory, codes and inverted lists, instead of ~40); the limit
    /// is shared by the segment's PLAID fields.
    pub spill: SpillPolicy,
}

/// Whether a field of `kind` can carry a PLAID index (multi-vector, inner product or cosine).
pub fn check_field(kind: &FieldKind) -> std::result::Result<(), String> {
    match kind {
        FieldKind::Multi {
            metric: Metric::Ip | Metric::Cosine,
            dim,
            ..
        } if (*dim as usize).is_multiple_of(8) => Ok(()),
        FieldKind::Multi { dim, .. } if !(*dim as usize).is_multiple_of(8) => Err(format!(
            "PLAID packs residuals by bytes: the dimension ({dim}) must be a multiple of 8"
        )),
        FieldKind::Multi { metric, .. } => Err(format!(
            "PLAID scores by inner product: a {metric:?} field cannot carry it (use ip or cosine)"
        )),
        other => Err(format!(
            "PLAID indexes multi-vector fields, not {} fields",
            other.kind_name()
        )),
    }
}

/// Appends `row`'s tokens of `field` as f32 to `out`, normalised for cosine.
fn append_tokens(
    source: &dyn SegmentSource,
    (field, dim, metric): (usize, usize, Metric),
    row: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let start = out.len();
    source.multi_f32(field, row, out)?;
    if metric == Metric::Cosine {
        out[start..]
            .chunks_exact_mut(dim)
            .for_each(crate::linalg::normalize);
    }
    Ok(())
}

/// Trains a codec on `tokens` of `ranges` (rows): ColBERT's sample of `1 + 16·√(120·rows)`
/// documents (all when fewer), `K` centroids by [`PlaidParams::centroids_for`] of all tokens.
/// As ColBERT's `collection_indexer.py`, about 5 % of the sample (at most 50,000 tokens, and
/// [`super::codec::MAX_HELDOUT_VALUES`] values) is held out of k-means and gives the residual
/// buckets; here whole documents, the first of the sample's random order. `trained_rows` is
/// recorded with the codec.
///
/// # Errors
/// [`Error::InvalidParameter`] when the rows hold no token to train on.
pub fn train_codec(
    tokens: &[f32],
    ranges: &[std::ops::Range<usize>],
    dim: usize,
    params: &PlaidParams,
    trained_rows: u64,
) -> Result<PlaidCodec> {
    train_sampled(
        ranges.len(),
        tokens.len() / dim,
        &|r| Ok(ranges[r].len()),
        &mut |r, out| {
            out.extend_from_slice(&tokens[ranges[r].start * dim..ranges[r].end * dim]);
            Ok(())
        },
        dim,
        params,
        trained_rows,
    )
}

/// [`train_codec`] over `rows` rows holding `total` tokens, reading only the sampled ones:
/// `len_of(r)` is row `r`'s token count, `append(r, out)` appends its tokens. So a segment's
/// tokens are never all in memory at once (a million 100-token documents at 128 dimensions
/// are 51 GB as f32; ColBERT's sample of them, 9 GB).
fn train_sampled(
    rows: usize,
    total: usize,
    len_of: &dyn Fn(usize) -> Result<usize>,
    append: &mut dyn FnMut(usize, &mut Vec<f32>) -> Result<()>,
    dim: usize,
    params: &PlaidParams,
    trained_rows: u64,
) -> Result<PlaidCodec> {
    let want = ((1.0 + 16.0 * (120.0 * rows as f64).sqrt()) as usize).min(rows);
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = SplitMix64::new(params.seed);
    for i in 0..want {
        let j = i + rng.below(rows - i);
        order.swap(i, j);
    }
    let chosen = &mut order[..want];
    let lens = chosen
        .iter()
        .map(|&r| len_of(r))
        .collect::<Result<Vec<usize>>>()?;
    let sampled: usize = lens.iter().sum();
    if sampled == 0 {
        return Err(Error::parameter(
            "plaid",
            format!("the {rows} rows to train a codec on hold no token vectors"),
        ));
    }
    let target = (sampled / 20)
        .min(50_000)
        .min(super::codec::MAX_HELDOUT_VALUES / dim);
    let (mut split, mut held) = (0, 0);
    while held < target && split + 1 < chosen.len() {
        held += lens[split];
        split += 1;
    }
    if held == sampled {
        split = 0; // nothing would be left to cluster
    }
    let (heldout_rows, sample_rows) = chosen.split_at_mut(split);
    let mut gather = |rows: &mut [usize]| -> Result<Vec<f32>> {
        rows.sort_unstable();
        let mut out = Vec::new();
        for &r in rows.iter() {
            append(r, &mut out)?;
        }
        Ok(out)
    };
    let heldout = gather(heldout_rows)?;
    let sample = gather(sample_rows)?;
    // `train` caps K at the sample's tokens.
    let k = params.centroids_for(total);
    Ok(train(&sample, &heldout, dim, k, params, trained_rows))
}

/// Encodes every token of a segment with `codec`: codes, packed residuals, inverted lists.
pub fn encode_segment(
    codec: &PlaidCodec,
    tokens: &[f32],
    ranges: &[std::ops::Range<usize>],
) -> PlaidSection {
    let (codes, residuals) = encode_tokens(codec, tokens);
    assemble(codec, codes, SpillBuffer::from_vec(residuals), ranges)
}

/// The codes and packed residuals of `tokens` (`n × d`, normalised for cosine) under `codec`.
fn encode_tokens(codec: &PlaidCodec, tokens: &[f32]) -> (Vec<u32>, Vec<u8>) {
    let dim = codec.dim;
    let codes = assign(tokens, &codec.centroids, dim);
    let rb = codec.residual_bytes();
    let mut residuals = vec![0u8; codes.len() * rb];
    for ((t, &c), out) in tokens
        .chunks_exact(dim)
        .zip(&codes)
        .zip(residuals.chunks_exact_mut(rb.max(1)))
    {
        pack_residual(codec, t, &codec.centroids[c as usize * dim..][..dim], out);
    }
    (codes, residuals)
}

/// A section from every token's code and residual and each row's token range: builds the
/// inverted lists (centroid → ascending rows having a token of it).
fn assemble(
    codec: &PlaidCodec,
    codes: Vec<u32>,
    residuals: SpillBuffer,
    ranges: &[std::ops::Range<usize>],
) -> PlaidSection {
    let k = codec.k();
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); k];
    let mut cs = Vec::new();
    for (r, range) in ranges.iter().enumerate() {
        cs.clear();
        cs.extend_from_slice(&codes[range.clone()]);
        cs.sort_unstable();
        cs.dedup();
        for &c in &cs {
            lists[c as usize].push(r as u32);
        }
    }
    let mut list_offsets = Vec::with_capacity(k + 1);
    list_offsets.push(0u64);
    let mut list_rows = Vec::new();
    for l in lists {
        list_rows.extend_from_slice(&l);
        list_offsets.push(list_rows.len() as u64);
    }
    PlaidSection {
        codec: codec.clone(),
        rows: ranges.len() as u64,
        codes,
        list_offsets,
        list_rows,
        residuals,
    }
}

/// Tokens encoded per block by [`encode_source`] (16 MB of f32 at 128 dimensions).
const ENCODE_BLOCK_TOKENS: usize = 1 << 15;

/// Encodes a source's field with `codec`, block by block (the field's tokens are never all in
/// memory, nor, past `spill`'s limit, its packed residuals): rows the source already holds
/// encoded with it ([`SegmentSource::plaid_codes`], as compaction's do) keep their codes and
/// residuals byte for byte; the others' tokens are encoded.
fn encode_source(
    codec: &PlaidCodec,
    source: &dyn SegmentSource,
    field: usize,
    dim_metric: (usize, Metric),
    spill: &SpillPolicy,
) -> Result<PlaidSection> {
    encode_source_in_blocks(codec, source, field, dim_metric, ENCODE_BLOCK_TOKENS, spill)
}

/// [`encode_source`] with blocks of at least `block` tokens (whole rows). The codes do not
/// depend on the blocks, except that a token almost equidistant from two centroids may be
/// assigned differently when the product's rounding differs with the block's shape.
fn encode_source_in_blocks(
    codec: &PlaidCodec,
    source: &dyn SegmentSource,
    field: usize,
    (dim, metric): (usize, Metric),
    block: usize,
    spill: &SpillPolicy,
) -> Result<PlaidSection> {
    let id = codec.id();
    let rb = codec.residual_bytes();
    let mut codes = Vec::new();
    let mut residuals = SpillBuffer::new(spill.clone());
    let mut ranges = Vec::with_capacity(source.row_count());
    // Tokens of rows waiting to be encoded (all rows after `codes`' last one, in order).
    let mut pending = Vec::new();
    let flush = |pending: &mut Vec<f32>, codes: &mut Vec<u32>, residuals: &mut SpillBuffer| {
        let (c, r) = encode_tokens(codec, pending);
        codes.extend(c);
        pending.clear();
        residuals.extend_from_slice(&r)
    };
    let mut start = 0;
    for r in 0..source.row_count() {
        match source.plaid_codes(field, r, id)? {
            Some((c, res)) => {
                if res.len() != c.len() * rb {
                    return Err(Error::InvalidInput(format!(
                        "field {:?}, row {r}: {} bytes of stored residuals for {} tokens, expected {rb} bytes per token (the codec's)",
                        source.schema().fields[field].name,
                        res.len(),
                        c.len()
                    )));
                }
                flush(&mut pending, &mut codes, &mut residuals)?;
                match c {
                    Codes::U16(c) => codes.extend(c.iter().map(|&x| u32::from(x))),
                    Codes::U32(c) => codes.extend_from_slice(c),
                }
                residuals.extend_from_slice(res)?;
            }
            None => {
                append_tokens(source, (field, dim, metric), r, &mut pending)?;
                if pending.len() >= block * dim {
                    flush(&mut pending, &mut codes, &mut residuals)?;
                }
            }
        }
        let end = codes.len() + pending.len() / dim;
        ranges.push(start..end);
        start = end;
    }
    flush(&mut pending, &mut codes, &mut residuals)?;
    Ok(assemble(codec, codes, residuals, &ranges))
}

/// The PLAID sections of a new segment (one per field with a declared index, when the segment
/// has at least its `min_rows` rows, or for a codes-only field whenever a codec exists), and the
/// codecs trained for them (fields that had none).
pub fn plaid_sections(
    source: &dyn SegmentSource,
    build: &PlaidBuild<'_>,
) -> Result<(Vec<ExtraSection>, Codecs)> {
    let rows = source.row_count();
    let schema = source.schema();
    let mut out = Vec::new();
    let mut trained = BTreeMap::new();
    // Every field's section is built before any is written: they share the memory budget.
    let fields = build
        .params
        .keys()
        .filter(|n| schema.field_index(n).is_some())
        .count();
    let spill = SpillPolicy {
        dir: build.spill.dir.clone(),
        limit: build.spill.limit / fields.max(1),
    };
    for (name, params) in build.params {
        let Some(fi) = schema.field_index(name) else {
            continue;
        };
        let kind = &schema.fields[fi].kind;
        check_field(kind).map_err(|e| Error::parameter("plaid", e))?;
        let FieldKind::Multi { dim, metric, .. } = *kind else {
            continue;
        };
        let dim = dim as usize;
        let existing = build
            .codecs
            .get(name)
            .filter(|c| c.dim == dim && c.nbits == params.nbits);
        // Small segments are searched exactly, unless the field keeps only codes and a codec
        // exists to encode them with (so that their tokens need not be stored).
        let small = (rows as u64) < params.min_rows;
        if rows == 0 || (small && !(params.codes_only && existing.is_some())) {
            continue;
        }
        let section = match existing {
            Some(codec) => encode_source(codec, source, fi, (dim, metric), &spill)?,
            None => {
                let total = (0..rows)
                    .map(|r| source.token_count(fi, r))
                    .sum::<Result<usize>>()?;
                let c = Arc::new(train_sampled(
                    rows,
                    total,
                    &|r| source.token_count(fi, r),
                    &mut |r, out| append_tokens(source, (fi, dim, metric), r, out),
                    dim,
                    params,
                    rows as u64,
                )?);
                trained.insert(name.clone(), c.clone());
                encode_source(&c, source, fi, (dim, metric), &spill)?
            }
        };
        out.push(ExtraSection {
            kind: SectionKind::Plaid,
            field: fi as u32,
            count: rows as u64,
            replaces_tokens: params.codes_only.then_some(section.codes.len() as u64),
            body: Box::new(section),
        });
    }
    Ok((out, trained))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{FieldSpec, Schema};
    use std::borrow::Cow;

    /// Rows of one multi-vector f32 field; every third row also offers its codes and residuals
    /// under `stored` (a section's, by token range) as a merged segment's rows do.
    struct Rows {
        schema: Schema,
        rows: Vec<Vec<u8>>,
        stored: Option<(u64, PlaidSection, Vec<std::ops::Range<usize>>)>,
    }

    impl SegmentSource for Rows {
        fn schema(&self) -> &Schema {
            &self.schema
        }
        fn row_count(&self) -> usize {
            self.rows.len()
        }
        fn id(&self, _: usize) -> Result<&[u8]> {
            Ok(b"id")
        }
        fn text(&self, _: usize) -> Result<&[u8]> {
            Ok(b"")
        }
        fn metadata(&self, _: usize) -> Result<&[u8]> {
            Ok(b"{}")
        }
        fn field(&self, _: usize, row: usize) -> Result<Cow<'_, [u8]>> {
            Ok(Cow::Borrowed(&self.rows[row]))
        }
        fn plaid_codes(
            &self,
            _: usize,
            row: usize,
            codec_id: u64,
        ) -> Result<Option<(Codes<'_>, &[u8])>> {
            Ok(match &self.stored {
                Some((id, s, ranges)) if *id == codec_id && row.is_multiple_of(3) => {
                    let r = ranges[row].clone();
                    let residuals = s.residuals.as_slice().expect("in memory");
                    let rb = residuals.len() / s.codes.len();
                    Some((
                        Codes::U32(&s.codes[r.clone()]),
                        &residuals[r.start * rb..r.end * rb],
                    ))
                }
                _ => None,
            })
        }
    }

    /// Encoding a source block by block (of any size, flushed at row boundaries), with rows
    /// whose codes are copied in between, gives the section that encoding all its tokens at once
    /// gives (on this data: no near-ties); training from the source reads the same sample as
    /// training on the tokens in memory.
    #[test]
    fn block_encoding_equals_encoding_at_once() {
        let dim = 8;
        let mut rng = SplitMix64::new(5);
        let mut tokens = Vec::new();
        let mut ranges = Vec::new();
        for r in 0..300 {
            let start = tokens.len() / dim;
            for _ in 0..1 + r % 7 {
                let mut v: Vec<f32> = (0..dim)
                    .map(|_| rng.below(2001) as f32 / 1000.0 - 1.0)
                    .collect();
                crate::linalg::normalize(&mut v);
                tokens.extend(v);
            }
            ranges.push(start..tokens.len() / dim);
        }
        let mut source = Rows {
            stored: None,
            schema: Schema::new().with_field(FieldSpec::parse("tok:multi:8:f32:ip").unwrap()),
            rows: ranges
                .iter()
                .map(|r| bytemuck::cast_slice(&tokens[r.start * dim..r.end * dim]).to_vec())
                .collect(),
        };
        let params = PlaidParams::default();
        let codec = train_codec(&tokens, &ranges, dim, &params, 300).unwrap();
        let total = tokens.len() / dim;
        let from_source = train_sampled(
            300,
            total,
            &|r| source.token_count(0, r),
            &mut |r, out| append_tokens(&source, (0, dim, Metric::Ip), r, out),
            dim,
            &params,
            300,
        )
        .unwrap();
        assert_eq!(from_source, codec);
        let whole = encode_segment(&codec, &tokens, &ranges);
        // Copied rows carry a marker residual byte, to show they were copied, not re-encoded.
        let rb = codec.residual_bytes();
        let mut marked_residuals = whole.residuals.as_slice().unwrap().to_vec();
        for r in ranges.iter().step_by(3) {
            marked_residuals[r.start * rb] ^= 0xff;
        }
        let marked = || PlaidSection {
            codec: whole.codec.clone(),
            rows: whole.rows,
            codes: whole.codes.clone(),
            list_offsets: whole.list_offsets.clone(),
            list_rows: whole.list_rows.clone(),
            residuals: SpillBuffer::from_vec(marked_residuals.clone()),
        };
        let scratch = tempfile::tempdir().unwrap();
        // In memory, and spilled to a temporary file from the first bytes or part way.
        let spills = [
            SpillPolicy::memory(),
            SpillPolicy {
                dir: Some(scratch.path().to_path_buf()),
                limit: 0,
            },
            SpillPolicy {
                dir: Some(scratch.path().to_path_buf()),
                limit: 1000,
            },
        ];
        for (copies, expected) in [(None, whole.encode()), (Some(marked()), marked().encode())] {
            source.stored = copies.map(|s| (codec.id(), s, ranges.clone()));
            let copied = source.stored.is_some();
            for block in [1, 5, 64, usize::MAX / dim] {
                for spill in &spills {
                    let got = encode_source_in_blocks(
                        &codec,
                        &source,
                        0,
                        (dim, Metric::Ip),
                        block,
                        spill,
                    )
                    .unwrap();
                    assert_eq!(
                        got.residuals.is_spilled(),
                        spill.limit < got.residuals.len() as usize
                    );
                    assert!(
                        got.encode() == expected,
                        "block {block}, copies {copied}, spill limit {}",
                        spill.limit
                    );
                }
            }
        }
    }
}
