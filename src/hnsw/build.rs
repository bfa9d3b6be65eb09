//! Graph construction over a segment's vectors (vellum's own parallel builder, [`super::insert`])
//! and assembly of its neighbour lists into a [`Graph`] for encoding.

use simsimd::SpatialSimilarity;

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::insert::{self, Space};
use crate::dtype::Metric;
use crate::error::Result;
use crate::format::graph::{encode_graph, Graph, Layer, Nav};
use crate::format::segment::{ExtraSection, SectionKind, SegmentSource};
use crate::linalg::nav::Kernel;
use crate::linalg::similarity::prefetch;
use crate::meta::HnswParams;
use crate::schema::FieldKind;

/// Seed of the level draw: graphs of the same rows get the same levels.
const LEVEL_SEED: u64 = 0x7665_6c6c_756d;

fn as_bf16(v: &[u16]) -> &[simsimd::bf16] {
    // SAFETY: `simsimd::bf16` is a `#[repr(transparent)]` wrapper of `u16` (bfloat16 bits), so
    // the slices have identical layout, length and alignment.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len()) }
}

/// Nodes as rows of `dim` values, contiguous (node `i` at `values[i·dim..]`).
struct Rows<'a, T: bytemuck::Pod> {
    values: Cow<'a, [T]>,
    dim: usize,
}

impl<'a, T: bytemuck::Pod> Rows<'a, T> {
    /// The rows `firsts` of `all`: borrowed when that is every row, else copied together.
    fn of(all: &'a [T], dim: usize, firsts: &[usize]) -> Self {
        let values = if firsts.len() * dim == all.len() {
            Cow::Borrowed(all)
        } else {
            Cow::Owned(
                firsts
                    .iter()
                    .flat_map(|&r| all[r * dim..(r + 1) * dim].iter().cloned())
                    .collect(),
            )
        };
        Rows { values, dim }
    }

    fn row(&self, node: u32) -> &[T] {
        let start = node as usize * self.dim;
        &self.values[start..start + self.dim]
    }

    fn prefetch_row(&self, node: u32) {
        prefetch(bytemuck::cast_slice(self.row(node)));
    }
}

// The navigation kernels take every dimension a schema allows.
const _: () = assert!(crate::linalg::nav::MAX_LEN >= crate::schema::MAX_DIM as usize);

/// Squared L2 between 8-bit navigation codes (L2, and cosine on codes of normalised rows).
struct CodeL2<'a>(Rows<'a, i8>, Kernel);

impl Space for CodeL2<'_> {
    fn distance(&self, a: u32, b: u32) -> f32 {
        self.1.l2sq(self.0.row(a), self.0.row(b)) as f32
    }

    fn prefetch(&self, node: u32) {
        self.0.prefetch_row(node);
    }
}

/// Negated inner product of bf16 rows: half the memory traffic of f32 and `vdpbf16ps` kernels;
/// the neighbour choice does not need more precision (searches rescore exactly).
struct Bf16Ip<'a>(Rows<'a, u16>);

impl Space for Bf16Ip<'_> {
    fn distance(&self, a: u32, b: u32) -> f32 {
        let d =
            -SpatialSimilarity::dot(as_bf16(self.0.row(a)), as_bf16(self.0.row(b))).unwrap_or(0.0);
        if d.is_finite() {
            d as f32
        } else {
            f32::MAX
        }
    }

    fn prefetch(&self, node: u32) {
        self.0.prefetch_row(node);
    }
}

/// Builds a graph over `rows` vectors of dimension `dim` (row-major `vectors`) for `metric`.
/// Returns `None` for an empty input.
pub fn build_graph(
    vectors: &[f32],
    dim: usize,
    metric: Metric,
    params: &HnswParams,
) -> Option<Graph> {
    let rows = vectors.len().checked_div(dim).unwrap_or(0);
    if rows == 0 {
        return None;
    }
    let m = params.m as usize;
    let efc = params.ef_construction as usize;
    // L2 and cosine are built on the 8-bit navigation codes (cosine codes are of normalised rows,
    // whose squared distance orders like the cosine): a quarter of f32's bytes, scored by
    // `linalg::nav`'s kernels. Inner product needs the affine terms, so it is built on bf16.
    let (built, codes, groups) = if metric == Metric::Ip {
        let bits: Vec<u16> = vectors
            .iter()
            .map(|&v| crate::dtype::to_bf16_bits(v))
            .collect();
        let groups = DuplicateGroups::of(&bits, dim);
        let space = Bf16Ip(Rows::of(&bits, dim, &groups.firsts));
        let built = insert::build(&space, groups.firsts.len(), m, efc, LEVEL_SEED, |n| {
            groups.copies_of(n) < m
        });
        (built, None, groups)
    } else {
        let nav = i8_codes(vectors, dim, metric);
        let Nav::I8 { codes, .. } = &nav else {
            unreachable!("i8_codes returns codes")
        };
        let groups = DuplicateGroups::of(codes, dim);
        let space = CodeL2(Rows::of(codes, dim, &groups.firsts), Kernel::detect());
        let built = insert::build(&space, groups.firsts.len(), m, efc, LEVEL_SEED, |n| {
            groups.copies_of(n) < m
        });
        (built, Some(nav), groups)
    };
    // Nodes are the first rows of their duplicate groups, in row order.
    let mut level = vec![0u8; rows];
    let mut lists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); rows];
    for (node, (&row, node_lists)) in groups.firsts.iter().zip(built.lists).enumerate() {
        level[row] = built.levels[node];
        lists[row] = node_lists
            .into_iter()
            .map(|l| {
                l.into_iter()
                    .map(|n| groups.firsts[n as usize] as u32)
                    .collect()
            })
            .collect();
    }
    groups.attach(&mut lists, 2 * m);
    let top = level.iter().copied().max().unwrap_or(0) as usize;
    let entry = groups.firsts[built.entry as usize] as u32;
    let mut layers = Vec::with_capacity(top + 1);
    for l in 0..=top {
        let members: Vec<u32> = (0..rows as u32)
            .filter(|&r| level[r as usize] as usize >= l)
            .collect();
        let neighbours = members
            .iter()
            .map(|&r| lists[r as usize].get(l).cloned().unwrap_or_default())
            .map(|v| {
                let max = if l == 0 { 2 * m } else { m };
                v.into_iter()
                    .filter(|&nb| level[nb as usize] as usize >= l)
                    .take(max)
                    .collect()
            })
            .collect();
        layers.push(Layer {
            members,
            neighbours,
        });
    }
    Some(Graph {
        m: params.m,
        m0: 2 * params.m,
        ef_construction: params.ef_construction,
        metric,
        entry,
        rows: rows as u64,
        layers,
        nav: codes.map(|c| (c, dim as u32)),
    })
}

/// Rows whose inserted vectors (8-bit codes, or bf16 bits for inner product) are bit-identical.
///
/// HNSW links exact duplicates badly: the selection heuristic keeps one of a set of copies (every
/// other copy is closer to the kept one than to the base node), so each copy gets one or two
/// edges, nearly all to other copies, and points inserted later get no edge from them (seen with
/// `hnsw_rs`) — with 800 copies inserted first, 200 distinct points were unreachable. So only
/// the first row of each set of identical vectors goes into the graph; the other copies are
/// attached afterwards, on layer 0, as a binary tree under the first (the first row's list starts
/// with its children, each copy's list holds its children and then the first row's neighbours), so
/// every copy is reachable from the first within log2(copies) hops of equal score, and every copy
/// leads out of the set. The search does not stop at a candidate of equal score (`search.rs`).
struct DuplicateGroups {
    /// The first row of every distinct vector, increasing.
    firsts: Vec<usize>,
    /// The other rows of each first row that has copies, increasing.
    copies: Vec<(usize, Vec<usize>)>,
}

impl DuplicateGroups {
    /// How many copies graph node `node` (the `node`-th first row) has. Nodes with `m` or more
    /// stay on layer 0 (`insert::build`).
    fn copies_of(&self, node: u32) -> usize {
        let row = self.firsts[node as usize];
        // `copies` is sorted by first row (it is collected from a `BTreeMap`).
        self.copies
            .binary_search_by_key(&row, |(first, _)| *first)
            .map_or(0, |i| self.copies[i].1.len())
    }

    fn of<T: std::hash::Hash + Eq>(values: &[T], dim: usize) -> Self {
        let mut first_of: std::collections::HashMap<&[T], usize> = Default::default();
        let mut firsts = Vec::new();
        let mut copies: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (row, v) in values.chunks_exact(dim).enumerate() {
            match first_of.entry(v) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(row);
                    firsts.push(row);
                }
                std::collections::hash_map::Entry::Occupied(e) => {
                    copies.entry(*e.get()).or_default().push(row);
                }
            }
        }
        DuplicateGroups {
            firsts,
            copies: copies.into_iter().collect(),
        }
    }

    /// Links the copies into `lists` (per row, per layer; copies have only layer 0).
    fn attach(&self, lists: &mut [Vec<Vec<u32>>], m0: usize) {
        for (first, others) in &self.copies {
            let tree: Vec<usize> = std::iter::once(*first)
                .chain(others.iter().copied())
                .collect();
            let exits: Vec<u32> = lists[*first].first().cloned().unwrap_or_default();
            for (i, &row) in tree.iter().enumerate() {
                let children = [2 * i + 1, 2 * i + 2]
                    .into_iter()
                    .filter_map(|c| tree.get(c).map(|&r| r as u32));
                let list: Vec<u32> = children.chain(exits.iter().copied()).take(m0).collect();
                if lists[row].is_empty() {
                    lists[row].push(list);
                } else {
                    lists[row][0] = list;
                }
            }
        }
    }
}

/// 8-bit navigation codes of `vectors` (rows normalised first for cosine): one affine map for the
/// segment, `value ≈ mid + scale · code`, spanning the 0.1 %–99.9 % quantiles of the values (rarer
/// outliers saturate at ±127; searches rescore exactly, so this only steers the traversal).
pub fn i8_codes(vectors: &[f32], dim: usize, metric: Metric) -> Nav {
    let normalised: Vec<f32>;
    let values: &[f32] = if metric == Metric::Cosine {
        normalised = vectors
            .chunks_exact(dim)
            .flat_map(|row| {
                let norm = <f32 as SpatialSimilarity>::dot(row, row)
                    .unwrap_or(0.0)
                    .sqrt() as f32;
                let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                row.iter().map(move |v| v * inv)
            })
            .collect();
        &normalised
    } else {
        vectors
    };
    let step = (values.len() / (1 << 20)).max(1);
    let mut sample: Vec<f32> = values.iter().step_by(step).copied().collect();
    sample.sort_by(f32::total_cmp);
    let (lo, hi) = match sample.len() {
        0 => (0.0, 0.0),
        n => (sample[(n - 1) / 1000], sample[(n - 1) * 999 / 1000]),
    };
    let (mid, scale) = if hi > lo {
        ((lo + hi) / 2.0, (hi - lo) / 254.0)
    } else {
        (lo, 1.0)
    };
    let codes = values
        .iter()
        .map(|v| ((v - mid) / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    Nav::I8 { codes, mid, scale }
}

/// The graph sections a new segment gets: one per indexed dense field, when the segment has at
/// least the index's `min_rows` rows.
pub fn graph_sections(
    source: &dyn SegmentSource,
    indexes: &BTreeMap<String, HnswParams>,
) -> Result<Vec<ExtraSection>> {
    let rows = source.row_count();
    let schema = source.schema();
    let mut out = Vec::new();
    for (name, params) in indexes {
        if (rows as u64) < params.min_rows || rows == 0 {
            continue;
        }
        let Some(fi) = schema.field_index(name) else {
            continue;
        };
        let FieldKind::Dense { dim, dtype, metric } = schema.fields[fi].kind else {
            continue;
        };
        let dim = dim as usize;
        let mut vectors = Vec::with_capacity(rows * dim);
        for r in 0..rows {
            dtype.decode_into(&source.field(fi, r)?, &mut vectors);
        }
        if let Some(mut g) = build_graph(&vectors, dim, metric, params) {
            // An 8-bit copy to traverse the graph with: a quarter of f32's memory traffic.
            if g.nav.is_none() {
                g.nav = Some((i8_codes(&vectors, dim, metric), dim as u32));
            }
            out.push(ExtraSection {
                kind: SectionKind::HnswGraph,
                field: fi as u32,
                count: rows as u64,
                body: Box::new(encode_graph(&g)),
                replaces_tokens: None,
            });
        }
    }
    Ok(out)
}
