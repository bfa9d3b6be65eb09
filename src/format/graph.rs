//! The HNSW graph section (kind 20): layout, encoding, validation. Specified in
//! `format-spec/hnsw.md`.
//!
//! ```text
//! header (64 bytes)
//!   0 u32 m            max neighbours per node on layers >= 1
//!   4 u32 m0           max neighbours per node on layer 0
//!   8 u32 ef_construction
//!  12 u32 layers       L >= 1
//!  16 u32 entry_point  row of the search entry point (a member of layer L-1)
//!  20 u32 metric       1 ip, 2 cosine, 3 l2 (the field's metric)
//!  24 u64 rows         N = the segment's row count
//!  32 u32 nav_dtype    0: none; 3: bf16 navigation vectors; 5: i8 navigation codes
//!  36 u32 nav_dim      their dimension (the field's), 0 when none
//!  40 u64 nav_offset   from the section start, multiple of 64; 0 when none
//!  48 f32 nav_mid      i8 codes: value = nav_mid + nav_scale · code; else 0
//!  52 f32 nav_scale    i8 codes: > 0; else 0
//!  56..64 reserved, zero
//! layer table: L entries of 32 bytes at offset 64
//!   0 u64 nodes        n_l (n_0 = N; non-increasing)
//!   8 u64 edges        e_l
//!  16 u64 data_offset  from the section start, multiple of 8
//!  24 u64 reserved, zero
//! layer data, at data_offset:
//!   members   u32[n_l], rows of the layer's nodes, strictly increasing (absent for layer 0,
//!             whose members are 0..N), zero-padded to a multiple of 8 bytes
//!   offsets   u64[n_l + 1]: node i's neighbours are neighbours[offsets[i]..offsets[i+1]]
//!   neighbours u32[e_l], rows
//! navigation vectors (optional), at nav_offset: bf16 or i8 [N × nav_dim], row-major
//! ```

use std::path::Path;

use crate::dtype::Metric;
use crate::error::{Error, Result};

/// Bytes of the section header.
pub const HEADER_LEN: usize = 64;
/// Bytes of one layer table entry.
pub const LAYER_ENTRY_LEN: usize = 32;
/// Most layers a graph may have.
pub const MAX_LAYERS: u32 = 32;
/// Largest neighbour list a valid graph has on any layer.
pub const MAX_DEGREE: u32 = 512;

/// The metric's code in the section header.
pub fn metric_code(m: Metric) -> u32 {
    match m {
        Metric::Ip => 1,
        Metric::Cosine => 2,
        Metric::L2 => 3,
    }
}

/// One layer of an in-memory graph.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layer {
    /// Rows of the layer's nodes, increasing (layer 0: all rows).
    pub members: Vec<u32>,
    /// Neighbour rows of each member.
    pub neighbours: Vec<Vec<u32>>,
}

/// An in-memory graph, as built, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Max neighbours on layers ≥ 1.
    pub m: u32,
    /// Max neighbours on layer 0.
    pub m0: u32,
    /// Build-time candidate list size.
    pub ef_construction: u32,
    /// The metric the graph was built for.
    pub metric: Metric,
    /// Entry point row (a member of the top layer).
    pub entry: u32,
    /// Rows of the segment.
    pub rows: u64,
    /// Layers, bottom (0) first.
    pub layers: Vec<Layer>,
    /// Optional compact copy of the vectors that searches traverse the graph with, and its
    /// dimension; the final candidates are rescored exactly.
    pub nav: Option<(Nav, u32)>,
}

/// Navigation vectors of a graph (`rows × dim`, row-major).
#[derive(Debug, Clone, PartialEq)]
pub enum Nav {
    /// bf16 bits.
    Bf16(Vec<u16>),
    /// 8-bit codes: value ≈ `mid + scale · code`.
    I8 {
        /// The codes.
        codes: Vec<i8>,
        /// Value of code 0.
        mid: f32,
        /// Value step per code.
        scale: f32,
    },
}

/// Mapped navigation vectors.
#[derive(Debug, Clone, Copy)]
pub enum NavView<'a> {
    /// bf16 values.
    Bf16(&'a [half::bf16]),
    /// 8-bit codes: value ≈ `mid + scale · code`.
    I8 {
        /// The codes.
        codes: &'a [i8],
        /// Value of code 0.
        mid: f32,
        /// Value step per code.
        scale: f32,
    },
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Encodes a graph as section bytes.
pub fn encode_graph(g: &Graph) -> Vec<u8> {
    let mut out = Vec::new();
    let put32 = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
    let put64 = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
    put32(&mut out, g.m);
    put32(&mut out, g.m0);
    put32(&mut out, g.ef_construction);
    put32(&mut out, g.layers.len() as u32);
    put32(&mut out, g.entry);
    put32(&mut out, metric_code(g.metric));
    put64(&mut out, g.rows);
    match &g.nav {
        Some((nav, dim)) => {
            put32(&mut out, if matches!(nav, Nav::Bf16(_)) { 3 } else { 5 });
            put32(&mut out, *dim);
            put64(&mut out, 0); // nav_offset, patched below
            if let Nav::I8 { mid, scale, .. } = nav {
                out.extend_from_slice(&mid.to_le_bytes());
                out.extend_from_slice(&scale.to_le_bytes());
            }
        }
        None => put64(&mut out, 0),
    }
    out.resize(HEADER_LEN + g.layers.len() * LAYER_ENTRY_LEN, 0);
    for (l, layer) in g.layers.iter().enumerate() {
        let at = out.len();
        let edges: usize = layer.neighbours.iter().map(Vec::len).sum();
        let entry = HEADER_LEN + l * LAYER_ENTRY_LEN;
        out[entry..entry + 8].copy_from_slice(&(layer.members.len() as u64).to_le_bytes());
        out[entry + 8..entry + 16].copy_from_slice(&(edges as u64).to_le_bytes());
        out[entry + 16..entry + 24].copy_from_slice(&(at as u64).to_le_bytes());
        if l > 0 {
            layer.members.iter().for_each(|r| put32(&mut out, *r));
            out.resize(align8(out.len()), 0);
        }
        let mut off = 0u64;
        put64(&mut out, 0);
        for nb in &layer.neighbours {
            off += nb.len() as u64;
            put64(&mut out, off);
        }
        layer
            .neighbours
            .iter()
            .flatten()
            .for_each(|r| put32(&mut out, *r));
        out.resize(align8(out.len()), 0);
    }
    if let Some((nav, _)) = &g.nav {
        out.resize(out.len().div_ceil(64) * 64, 0);
        let at = out.len() as u64;
        out[40..48].copy_from_slice(&at.to_le_bytes());
        match nav {
            Nav::Bf16(v) => v
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Nav::I8 { codes, .. } => out.extend(codes.iter().map(|c| *c as u8)),
        }
    }
    out
}

/// One layer of a mapped graph.
#[derive(Debug, Clone, Copy)]
struct LayerView<'a> {
    /// `None` for layer 0 (members are all rows).
    members: Option<&'a [u32]>,
    offsets: &'a [u64],
    neighbours: &'a [u32],
    /// Byte offset of `offsets` within the section (for errors).
    at: u64,
}

/// A graph section, validated for structure at open (cost O(layers)) and bounds-checked on every
/// access: a damaged section yields errors, never a panic, an out-of-bounds read or an endless
/// search.
#[derive(Debug, Clone)]
pub struct GraphView<'a> {
    path: &'a Path,
    /// File offset of the section (for errors).
    base: u64,
    /// Max neighbours on layers ≥ 1.
    pub m: u32,
    /// Max neighbours on layer 0.
    pub m0: u32,
    /// Build-time candidate list size.
    pub ef_construction: u32,
    /// Entry point row.
    pub entry: u32,
    /// Rows of the segment.
    pub rows: u64,
    layers: Vec<LayerView<'a>>,
    nav: Option<(NavView<'a>, usize)>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl<'a> GraphView<'a> {
    /// Validates the header, the layer table and the placement of every array of section `bytes`
    /// (which starts at file offset `base` of `path`, 8-aligned in memory) for a segment of `rows`
    /// rows whose field has metric `metric`.
    pub fn open(
        bytes: &'a [u8],
        path: &'a Path,
        base: u64,
        rows: u64,
        metric: Metric,
    ) -> Result<Self> {
        let err = |at: usize, detail: String| {
            Error::corrupt(path, "hnsw graph", base + at as u64, detail)
        };
        if bytes.len() < HEADER_LEN {
            return Err(err(
                0,
                format!(
                    "section of {} bytes is shorter than its 64-byte header",
                    bytes.len()
                ),
            ));
        }
        let (m, m0, efc, n_layers, entry, code) = (
            u32_at(bytes, 0),
            u32_at(bytes, 4),
            u32_at(bytes, 8),
            u32_at(bytes, 12),
            u32_at(bytes, 16),
            u32_at(bytes, 20),
        );
        let section_rows = u64_at(bytes, 24);
        if !(2..=MAX_DEGREE).contains(&m) || !(m..=MAX_DEGREE).contains(&m0) {
            return Err(err(
                0,
                format!("neighbour limits m = {m}, m0 = {m0} out of range"),
            ));
        }
        if !(1..=MAX_LAYERS).contains(&n_layers) {
            return Err(err(
                12,
                format!("{n_layers} layers (expected 1..={MAX_LAYERS})"),
            ));
        }
        if code != metric_code(metric) {
            return Err(err(
                20,
                format!("graph built for metric code {code}, the field's metric is {metric:?}"),
            ));
        }
        if section_rows != rows {
            return Err(err(
                24,
                format!("graph covers {section_rows} rows, the segment has {rows}"),
            ));
        }
        if rows == 0 || u64::from(entry) >= rows {
            return Err(err(
                16,
                format!("entry point {entry} is not a row of {rows}"),
            ));
        }
        if bytes[56..HEADER_LEN].iter().any(|b| *b != 0) {
            return Err(err(56, "reserved header bytes are not zero".into()));
        }
        let table_end = HEADER_LEN + n_layers as usize * LAYER_ENTRY_LEN;
        let (nav_dtype, nav_dim, nav_at) =
            (u32_at(bytes, 32), u32_at(bytes, 36), u64_at(bytes, 40));
        let (mid, scale) = (
            f32::from_le_bytes(bytes[48..52].try_into().expect("4 bytes")),
            f32::from_le_bytes(bytes[52..56].try_into().expect("4 bytes")),
        );
        let elem = match nav_dtype {
            3 => 2u64,
            5 => 1,
            _ => 0,
        };
        let nav = match nav_dtype {
            0 if nav_dim == 0 && nav_at == 0 && mid == 0.0 && scale == 0.0 => None,
            3 | 5 if nav_dim > 0 => {
                let end = rows
                    .checked_mul(u64::from(nav_dim) * elem)
                    .and_then(|l| l.checked_add(nav_at))
                    .filter(|end| {
                        *end <= bytes.len() as u64
                            && nav_at.is_multiple_of(64)
                            && nav_at >= table_end as u64
                    })
                    .ok_or_else(|| {
                        err(40, format!("navigation vectors at {nav_at} ({rows} × {nav_dim}) are misplaced or run past the section"))
                    })?;
                let raw = &bytes[nav_at as usize..end as usize];
                let view = if nav_dtype == 3 {
                    if mid != 0.0 || scale != 0.0 {
                        return Err(err(48, "bf16 navigation vectors with i8 parameters".into()));
                    }
                    NavView::Bf16(
                        bytemuck::try_cast_slice(raw)
                            .map_err(|_| err(40, "navigation vectors misaligned".into()))?,
                    )
                } else {
                    if !(mid.is_finite() && scale.is_finite() && scale > 0.0) {
                        return Err(err(48, format!("i8 navigation parameters mid {mid}, scale {scale} are invalid")));
                    }
                    NavView::I8 {
                        codes: bytemuck::cast_slice(raw),
                        mid,
                        scale,
                    }
                };
                Some((view, nav_dim as usize))
            }
            _ => {
                return Err(err(32, format!("navigation vector type {nav_dtype} / dimension {nav_dim} / offset {nav_at} are inconsistent")))
            }
        };
        if bytes.len() < table_end {
            return Err(err(HEADER_LEN, "layer table runs past the section".into()));
        }
        if !(bytes.as_ptr() as usize).is_multiple_of(8) {
            return Err(err(0, "section is not 8-byte aligned in memory".into()));
        }
        let mut layers = Vec::with_capacity(n_layers as usize);
        let mut prev_nodes = rows;
        for l in 0..n_layers as usize {
            let e = HEADER_LEN + l * LAYER_ENTRY_LEN;
            let (nodes, edges, at) = (
                u64_at(bytes, e),
                u64_at(bytes, e + 8),
                u64_at(bytes, e + 16),
            );
            if u64_at(bytes, e + 24) != 0 {
                return Err(err(
                    e + 24,
                    format!("layer {l}: reserved bytes are not zero"),
                ));
            }
            if (l == 0 && nodes != rows) || nodes == 0 || nodes > prev_nodes {
                return Err(err(
                    e,
                    format!("layer {l}: {nodes} nodes (layer below has {prev_nodes})"),
                ));
            }
            let max_deg = u64::from(if l == 0 { m0 } else { m });
            if edges > nodes.saturating_mul(max_deg) {
                return Err(err(
                    e + 8,
                    format!("layer {l}: {edges} edges exceed {nodes} nodes × {max_deg}"),
                ));
            }
            prev_nodes = nodes;
            let members_len = if l == 0 {
                0
            } else {
                align8(nodes as usize * 4)
            };
            let offsets_len = (nodes as usize + 1) * 8;
            let nb_len = edges as usize * 4;
            let start = at as usize;
            let end = start
                .checked_add(members_len + offsets_len + nb_len)
                .filter(|end| *end <= bytes.len() && start >= table_end && start.is_multiple_of(8))
                .ok_or_else(|| {
                    err(
                        e + 16,
                        format!("layer {l}: data at {at} is misplaced or runs past the section"),
                    )
                })?;
            let cast_err = |what: &str| err(start, format!("layer {l}: {what} misaligned"));
            let members = if l == 0 {
                None
            } else {
                Some(
                    bytemuck::try_cast_slice::<u8, u32>(&bytes[start..start + nodes as usize * 4])
                        .map_err(|_| cast_err("members"))?,
                )
            };
            let off_at = start + members_len;
            let offsets: &[u64] = bytemuck::try_cast_slice(&bytes[off_at..off_at + offsets_len])
                .map_err(|_| cast_err("offsets"))?;
            let neighbours: &[u32] = bytemuck::try_cast_slice(&bytes[off_at + offsets_len..end])
                .map_err(|_| cast_err("neighbours"))?;
            if offsets[0] != 0 || offsets[nodes as usize] != edges {
                return Err(err(
                    off_at,
                    format!("layer {l}: offsets must run from 0 to {edges}"),
                ));
            }
            layers.push(LayerView {
                members,
                offsets,
                neighbours,
                at: off_at as u64,
            });
        }
        let g = GraphView {
            path,
            base,
            m,
            m0,
            ef_construction: efc,
            entry,
            rows,
            layers,
            nav,
        };
        g.position(n_layers as usize - 1, entry)?;
        Ok(g)
    }

    /// The navigation vectors and their dimension, if the graph has them.
    pub fn nav(&self) -> Option<(NavView<'a>, usize)> {
        self.nav
    }

    /// Number of layers.
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    fn corrupt(&self, at: u64, detail: String) -> Error {
        Error::corrupt(self.path, "hnsw graph", self.base + at, detail)
    }

    /// Index of `row` among the members of `layer`.
    pub fn position(&self, layer: usize, row: u32) -> Result<usize> {
        let lv = &self.layers[layer];
        match lv.members {
            None if u64::from(row) < self.rows => Ok(row as usize),
            None => Err(self.corrupt(lv.at, format!("layer 0: row {row} out of range"))),
            Some(m) => m.binary_search(&row).map_err(|_| {
                self.corrupt(
                    lv.at,
                    format!("layer {layer}: row {row} is not a node of the layer"),
                )
            }),
        }
    }

    /// Neighbour rows of the node at `position` of `layer` (each still to be checked `< rows` by
    /// the caller, see [`GraphView::check_row`]).
    pub fn neighbours(&self, layer: usize, position: usize) -> Result<&'a [u32]> {
        let lv = &self.layers[layer];
        if position + 1 >= lv.offsets.len() {
            return Err(self.corrupt(
                lv.at,
                format!("layer {layer}: no node at position {position}"),
            ));
        }
        let (a, b) = (lv.offsets[position], lv.offsets[position + 1]);
        let max = u64::from(if layer == 0 { self.m0 } else { self.m });
        if a > b || b > lv.neighbours.len() as u64 || b - a > max {
            return Err(self.corrupt(
                lv.at + 8 * position as u64,
                format!("layer {layer}: neighbour offsets {a}..{b} of node {position} are invalid"),
            ));
        }
        Ok(&lv.neighbours[a as usize..b as usize])
    }

    /// The bytes of the neighbour list of layer-0 node `row`, unchecked beyond staying inside the
    /// section and within the degree limit (empty where its offsets are invalid): what a search
    /// prefetches, never reads.
    pub fn neighbour_bytes0(&self, row: u32) -> &'a [u8] {
        let lv = &self.layers[0];
        let r = row as usize;
        match (
            lv.offsets.get(r),
            r.checked_add(1).and_then(|e| lv.offsets.get(e)),
        ) {
            (Some(&a), Some(&b))
                if a <= b && b <= lv.neighbours.len() as u64 && b - a <= u64::from(self.m0) =>
            {
                bytemuck::cast_slice(&lv.neighbours[a as usize..b as usize])
            }
            _ => &[],
        }
    }

    /// The bytes of layer-0 node `row`'s offset pair (empty past the last node): prefetched
    /// when the row becomes a candidate, so that [`GraphView::neighbour_bytes0`] finds them in
    /// cache.
    pub fn offset_bytes0(&self, row: u32) -> &'a [u8] {
        let o = self.layers[0].offsets;
        let r = row as usize;
        r.checked_add(2)
            .and_then(|end| o.get(r..end))
            .map_or(&[], bytemuck::cast_slice)
    }

    /// Checks that a neighbour row is a row of the segment.
    #[inline]
    pub fn check_row(&self, layer: usize, row: u32) -> Result<()> {
        if u64::from(row) < self.rows {
            Ok(())
        } else {
            Err(self.corrupt(
                self.layers[layer].at,
                format!("layer {layer}: neighbour {row} out of range"),
            ))
        }
    }

    /// Total edges over all layers.
    pub fn edges(&self) -> u64 {
        self.layers.iter().map(|l| l.neighbours.len() as u64).sum()
    }

    /// The full structural check of `verify`: every offset monotone, every degree within its
    /// limit, every neighbour a row and not the node itself, members strictly increasing and each
    /// layer's members a subset of the layer below.
    pub fn verify(&self) -> Result<()> {
        for (l, lv) in self.layers.iter().enumerate() {
            let n = lv.offsets.len() - 1;
            if let Some(m) = lv.members {
                if let Some(i) = m.windows(2).position(|w| w[0] >= w[1]) {
                    return Err(self.corrupt(
                        lv.at,
                        format!("layer {l}: members not strictly increasing at {i}"),
                    ));
                }
                for &r in m {
                    self.position(l - 1, r).map_err(|_| {
                        self.corrupt(
                            lv.at,
                            format!("layer {l}: node {r} is missing from layer {}", l - 1),
                        )
                    })?;
                }
            }
            for i in 0..n {
                let node = lv.members.map_or(i as u32, |m| m[i]);
                for &nb in self.neighbours(l, i)? {
                    self.check_row(l, nb)?;
                    self.position(l, nb)?;
                    if nb == node {
                        return Err(
                            self.corrupt(lv.at, format!("layer {l}: node {node} lists itself"))
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny() -> Graph {
        Graph {
            m: 2,
            m0: 4,
            ef_construction: 8,
            metric: Metric::L2,
            entry: 2,
            rows: 4,
            layers: vec![
                Layer {
                    members: vec![0, 1, 2, 3],
                    neighbours: vec![vec![1, 2], vec![0, 3], vec![0, 1, 3], vec![2]],
                },
                Layer {
                    members: vec![1, 2],
                    neighbours: vec![vec![2], vec![1]],
                },
            ],
            nav: None,
        }
    }

    /// Bytes in an 8-aligned buffer, as a mapped section is.
    fn aligned(bytes: &[u8]) -> Vec<u64> {
        let mut v = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut v)[..bytes.len()].copy_from_slice(bytes);
        v
    }

    #[test]
    fn encode_open_round_trip_and_verify() {
        let bytes = encode_graph(&tiny());
        let buf = aligned(&bytes);
        let b = &bytemuck::cast_slice::<u64, u8>(&buf)[..bytes.len()];
        let p = Path::new("s.vseg");
        let g = GraphView::open(b, p, 0, 4, Metric::L2).unwrap();
        assert_eq!((g.layers(), g.entry, g.edges()), (2, 2, 10));
        assert_eq!(g.neighbours(0, 2).unwrap(), &[0, 1, 3]);
        assert_eq!(g.position(1, 2).unwrap(), 1);
        assert_eq!(g.neighbours(1, g.position(1, 2).unwrap()).unwrap(), &[1]);
        // What a search prefetches: the same list's bytes, a node's offset pair; nothing past
        // the last node.
        let list: &[u32] = bytemuck::cast_slice(g.neighbour_bytes0(2));
        assert_eq!(list, &[0, 1, 3]);
        assert_eq!(g.offset_bytes0(3).len(), 16);
        assert!(g.neighbour_bytes0(4).is_empty() && g.offset_bytes0(4).is_empty());
        g.verify().unwrap();
        let e = GraphView::open(b, p, 0, 5, Metric::L2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("graph covers 4 rows, the segment has 5"), "{e}");
        let e = GraphView::open(b, p, 0, 4, Metric::Ip)
            .unwrap_err()
            .to_string();
        assert!(e.contains("metric"), "{e}");
    }

    #[test]
    fn navigation_vectors_round_trip() {
        let mut g = tiny();
        g.nav = Some((
            Nav::I8 {
                codes: vec![-3, 0, 5, 127, -127, 1, 2, 3],
                mid: 0.5,
                scale: 0.25,
            },
            2,
        ));
        let bytes = encode_graph(&g);
        let buf = aligned(&bytes);
        let b = &bytemuck::cast_slice::<u64, u8>(&buf)[..bytes.len()];
        let v = GraphView::open(b, Path::new("s"), 0, 4, Metric::L2).unwrap();
        match v.nav().unwrap() {
            (NavView::I8 { codes, mid, scale }, 2) => {
                assert_eq!(
                    (codes, mid, scale),
                    (&[-3i8, 0, 5, 127, -127, 1, 2, 3][..], 0.5, 0.25)
                )
            }
            other => panic!("{other:?}"),
        }
        g.nav = Some((Nav::Bf16((0..8u16).collect()), 2));
        let bytes = encode_graph(&g);
        let buf = aligned(&bytes);
        let b = &bytemuck::cast_slice::<u64, u8>(&buf)[..bytes.len()];
        let v = GraphView::open(b, Path::new("s"), 0, 4, Metric::L2).unwrap();
        let (NavView::Bf16(nav), dim) = v.nav().unwrap() else {
            panic!("bf16 expected")
        };
        assert_eq!(dim, 2);
        assert_eq!(
            nav.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            (0..8).collect::<Vec<u16>>()
        );
        // Navigation vectors that do not fit are refused.
        let e = GraphView::open(&b[..b.len() - 2], Path::new("s"), 0, 4, Metric::L2).unwrap_err();
        assert!(e.to_string().contains("navigation vectors"), "{e}");
    }

    #[test]
    fn every_single_byte_flip_is_an_error_or_harmless_never_a_panic() {
        let bytes = encode_graph(&tiny());
        let p = Path::new("s.vseg");
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                let buf = aligned(&b);
                let b = &bytemuck::cast_slice::<u64, u8>(&buf)[..b.len()];
                if let Ok(g) = GraphView::open(b, p, 0, 4, Metric::L2) {
                    let _ = g.verify();
                    for l in 0..g.layers() {
                        for pos in 0..4 {
                            let _ = g.neighbours(l, pos);
                        }
                    }
                    for row in 0..6 {
                        let list = g.neighbour_bytes0(row);
                        assert!(list.len() <= 4 * g.m0 as usize);
                        assert!(g.offset_bytes0(row).len() <= 16);
                    }
                }
            }
        }
    }
}
