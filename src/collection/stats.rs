//! Statistics of a collection and of a snapshot: what `vellum info` prints, as serde data.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Collection;
use crate::error::Result;
use crate::meta::{FieldEncoders, HnswParams};

/// A snapshot's statistics ([`crate::Snapshot::stats`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseStats {
    /// The commit generation.
    pub generation: u64,
    /// The format version this build writes.
    pub format_version: u32,
    /// Per collection, in creation order.
    pub collections: Vec<CollectionStats>,
}

/// One collection's statistics ([`Collection::stats`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionStats {
    /// The collection's name.
    pub name: String,
    /// Field specifications (`emb:dense:384:f32:cosine`).
    pub fields: Vec<String>,
    /// Live documents.
    pub documents: u64,
    /// Deleted rows still stored (dropped by compaction).
    pub deleted_rows: u64,
    /// Declared HNSW indexes by field.
    pub indexes: BTreeMap<String, HnswParams>,
    /// Declared PLAID indexes by field.
    pub plaid: BTreeMap<String, crate::meta::PlaidParams>,
    /// Bound encoders by field.
    pub encoders: BTreeMap<String, FieldEncoders>,
    /// The segments, oldest first.
    pub segments: Vec<SegmentStats>,
    /// Bytes of the segment files.
    pub bytes: u64,
}

/// One segment's statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentStats {
    /// File id.
    pub id: u64,
    /// Rows, deleted ones included.
    pub rows: u64,
    /// Bytes of the segment file.
    pub bytes: u64,
    /// Deleted rows.
    pub deleted: u64,
    /// HNSW graphs by field name.
    pub hnsw: BTreeMap<String, GraphStats>,
    /// Bytes of the screening-codes section (`format-spec/screen.md`) by dense field name.
    pub screening_codes: BTreeMap<String, u64>,
    /// PLAID sections (`format-spec/plaid.md`) by multi-vector field name.
    pub plaid: BTreeMap<String, PlaidStats>,
}

/// One PLAID section's statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaidStats {
    /// Centroids of the codec.
    pub centroids: usize,
    /// Residual bits per dimension.
    pub nbits: u32,
    /// Tokens coded.
    pub tokens: u64,
    /// Documents the codec accounts for (the rows it was trained from, less deleted rows
    /// compactions keeping it dropped).
    pub trained_rows: u64,
    /// The codec's id (equal in segments sharing a codec).
    pub codec_id: u64,
    /// Bytes of the section.
    pub bytes: u64,
    /// The segment keeps only the codes (no full-precision token section for the field).
    pub codes_only: bool,
    /// Bytes of the field's token offsets and stored tokens (if any) in the segment: with
    /// `bytes`, what the field costs all-in.
    pub field_bytes: u64,
}

/// One HNSW graph section's statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphStats {
    /// Layers (≥ 1).
    pub layers: usize,
    /// Directed edges over all layers.
    pub edges: u64,
    /// `m` the graph was built with.
    pub m: u32,
    /// `ef_construction` the graph was built with.
    pub ef_construction: u32,
    /// Bytes of the graph section.
    #[serde(skip)]
    pub bytes: u64,
}

impl Collection {
    /// The collection's statistics. Reads only headers and graph section headers.
    pub fn stats(&self) -> Result<CollectionStats> {
        let mut segments = Vec::with_capacity(self.slots().len());
        for s in self.slots() {
            let mut hnsw = BTreeMap::new();
            let mut screening_codes = BTreeMap::new();
            let mut plaid = BTreeMap::new();
            for (fi, f) in self.schema().fields.iter().enumerate() {
                if let Some(v) = s.segment.plaid(fi) {
                    let v = v?;
                    let bytes = s
                        .segment
                        .sections()
                        .iter()
                        .find(|e| {
                            e.field == fi as u32
                                && e.kind == crate::format::segment::SectionKind::Plaid
                        })
                        .map_or(0, |e| e.length);
                    plaid.insert(
                        f.name.clone(),
                        PlaidStats {
                            centroids: v.k(),
                            nbits: v.nbits,
                            tokens: v.codes.len() as u64,
                            trained_rows: v.trained_rows,
                            codec_id: v.codec_id,
                            bytes,
                            codes_only: !s.segment.stores_tokens(fi),
                            field_bytes: s
                                .segment
                                .sections()
                                .iter()
                                .filter(|e| {
                                    e.field == fi as u32
                                        && matches!(
                                            e.kind,
                                            crate::format::segment::SectionKind::MultiOffsets
                                                | crate::format::segment::SectionKind::MultiTokens
                                        )
                                })
                                .map(|e| e.length)
                                .sum(),
                        },
                    );
                }
                if let Some(e) = s.segment.sections().iter().find(|e| {
                    e.field == fi as u32
                        && e.kind == crate::format::segment::SectionKind::ScreenCodes
                }) {
                    screening_codes.insert(f.name.clone(), e.length);
                }
                if let Some(g) = s.segment.graph(fi) {
                    let g = g?;
                    let bytes = s
                        .segment
                        .sections()
                        .iter()
                        .find(|e| {
                            e.field == fi as u32
                                && e.kind == crate::format::segment::SectionKind::HnswGraph
                        })
                        .map_or(0, |e| e.length);
                    hnsw.insert(
                        f.name.clone(),
                        GraphStats {
                            layers: g.layers(),
                            edges: g.edges(),
                            m: g.m,
                            ef_construction: g.ef_construction,
                            bytes,
                        },
                    );
                }
            }
            segments.push(SegmentStats {
                id: s.entry.id,
                rows: s.entry.rows,
                bytes: s.entry.bytes,
                deleted: s.entry.deletes.map_or(0, |d| d.count),
                hnsw,
                screening_codes,
                plaid,
            });
        }
        Ok(CollectionStats {
            name: self.name().to_string(),
            fields: self.schema().fields.iter().map(|f| f.to_string()).collect(),
            documents: self.len(),
            deleted_rows: segments.iter().map(|s| s.deleted).sum(),
            indexes: self.indexes().clone(),
            plaid: self.plaid_params().clone(),
            encoders: self.all_encoders().clone(),
            bytes: segments.iter().map(|s| s.bytes).sum(),
            segments,
        })
    }
}
