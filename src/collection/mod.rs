//! A collection as seen by a snapshot: its segments, lookups by id, and zero-copy document access.
//! Every `impl Collection` lives in this folder: [`search`](Collection::search) in `search.rs`,
//! encoders and text search in `encoders.rs` (feature `encoders`), statistics in `stats.rs`.

#[cfg(feature = "encoders")]
mod encoders;
mod search;
mod stats;

pub use stats::{CollectionStats, DatabaseStats, GraphStats, SegmentStats};

use std::sync::Arc;

use crate::dtype::{VectorCow, VectorRef};
use crate::error::{Error, Result};
use crate::format::deletes::DeleteBitmap;
use crate::format::manifest::SegmentEntry;
use crate::format::segment::Segment;
use crate::schema::{FieldKind, Schema};

/// A live segment of a snapshot with its tombstones.
#[derive(Debug, Clone)]
pub struct SegmentSlot {
    /// The manifest entry.
    pub entry: SegmentEntry,
    /// The mapped segment.
    pub segment: Arc<Segment>,
    /// Deleted rows, if any.
    pub deletes: Option<Arc<DeleteBitmap>>,
}

impl SegmentSlot {
    /// Whether `row` is deleted.
    #[inline]
    pub fn is_deleted(&self, row: u32) -> bool {
        self.deletes.as_ref().is_some_and(|d| d.contains(row))
    }

    /// Rows not deleted.
    pub fn live_rows(&self) -> u64 {
        self.segment.rows() as u64 - self.deletes.as_ref().map_or(0, |d| d.count())
    }

    /// The rows of `start..end` not deleted, ascending.
    pub fn live_rows_in(&self, start: u32, end: u32) -> impl Iterator<Item = u32> + '_ {
        let end = end.min(self.segment.rows());
        let words = self.deletes.as_ref().map(|d| d.words());
        (start / 64..end.div_ceil(64)).flat_map(move |wi| {
            let mut live = !words.map_or(0, |w| w[wi as usize]);
            std::iter::from_fn(move || loop {
                if live == 0 {
                    return None;
                }
                let row = wi * 64 + live.trailing_zeros();
                live &= live - 1;
                if row >= start && row < end {
                    return Some(row);
                }
                if row >= end {
                    return None;
                }
            })
        })
    }
}

/// Where a document lives within a snapshot: the segment's position in the collection (its
/// ordinal, `segment_ord`, as tantivy names it; not the segment's file id, which is
/// [`SegmentSlot::entry`]`.id`) and the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocAddress {
    /// Position of the segment in [`Collection::slots`].
    pub segment_ord: u32,
    /// Row within the segment.
    pub row: u32,
}

/// One collection of a [`crate::Snapshot`].
#[derive(Debug)]
pub struct Collection {
    name: String,
    schema: Schema,
    slots: Vec<SegmentSlot>,
    indexes: std::collections::BTreeMap<String, crate::hnsw::HnswParams>,
    plaid: std::collections::BTreeMap<String, crate::meta::PlaidParams>,
    encoders: std::collections::BTreeMap<String, crate::encode::FieldEncoders>,
    dir: std::path::PathBuf,
    /// Whether this is a filtered view ([`Collection::restricted`]): its slots' delete bitmaps
    /// also hold the rows a filter excludes.
    filtered: bool,
    /// Query encoders loaded by text search, by field.
    #[cfg(feature = "encoders")]
    query_encoders: parking_lot::Mutex<
        std::collections::HashMap<String, std::sync::Arc<dyn crate::encode::Encoder>>,
    >,
}

impl Collection {
    pub(crate) fn new(name: String, schema: Schema, slots: Vec<SegmentSlot>) -> Self {
        Collection {
            name,
            schema,
            slots,
            indexes: Default::default(),
            plaid: Default::default(),
            encoders: Default::default(),
            dir: std::path::PathBuf::new(),
            filtered: false,
            #[cfg(feature = "encoders")]
            query_encoders: Default::default(),
        }
    }

    /// A view of this collection whose slots are `slots` (the same segments, in the same order,
    /// with delete bitmaps that also exclude the rows a filter does not match): what a filtered
    /// search runs on, so that every search path skips those rows as it skips deleted ones.
    pub(crate) fn restricted(&self, slots: Vec<SegmentSlot>) -> Collection {
        debug_assert_eq!(slots.len(), self.slots.len());
        Collection {
            name: self.name.clone(),
            schema: self.schema.clone(),
            slots,
            indexes: self.indexes.clone(),
            plaid: self.plaid.clone(),
            encoders: self.encoders.clone(),
            dir: self.dir.clone(),
            filtered: true,
            #[cfg(feature = "encoders")]
            query_encoders: Default::default(),
        }
    }

    /// Whether this is a filtered view (see [`Collection::restricted`]).
    pub(crate) fn is_filtered(&self) -> bool {
        self.filtered
    }

    pub(crate) fn with_encoders(
        mut self,
        encoders: std::collections::BTreeMap<String, crate::encode::FieldEncoders>,
        database_dir: &std::path::Path,
    ) -> Self {
        self.encoders = encoders;
        self.dir = database_dir.to_path_buf();
        self
    }

    /// The encoders bound to dense field `field`, if any.
    pub fn encoders(&self, field: &str) -> Option<&crate::encode::FieldEncoders> {
        self.encoders.get(field)
    }

    /// Every field's encoders, by field name.
    pub fn all_encoders(
        &self,
    ) -> &std::collections::BTreeMap<String, crate::encode::FieldEncoders> {
        &self.encoders
    }

    /// The directory of the database this collection belongs to.
    pub fn database_dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub(crate) fn with_indexes(
        mut self,
        indexes: std::collections::BTreeMap<String, crate::hnsw::HnswParams>,
        plaid: std::collections::BTreeMap<String, crate::meta::PlaidParams>,
    ) -> Self {
        self.indexes = indexes;
        self.plaid = plaid;
        self
    }

    /// Every declared PLAID index, by multi-vector field name.
    pub fn plaid_params(&self) -> &std::collections::BTreeMap<String, crate::meta::PlaidParams> {
        &self.plaid
    }

    /// The HNSW index declared on `field`, if any.
    pub fn index(&self, field: &str) -> Option<&crate::hnsw::HnswParams> {
        self.indexes.get(field)
    }

    /// Every declared index, by field name.
    pub fn indexes(&self) -> &std::collections::BTreeMap<String, crate::hnsw::HnswParams> {
        &self.indexes
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The collection's schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The live segments, oldest first.
    pub fn slots(&self) -> &[SegmentSlot] {
        &self.slots
    }

    /// Number of live (not deleted) documents.
    pub fn len(&self) -> u64 {
        self.slots.iter().map(SegmentSlot::live_rows).sum()
    }

    /// True when the collection holds no live document.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of the field `name`, or a [`Error::NoSuchField`].
    pub fn field_index(&self, name: &str) -> Result<usize> {
        self.schema
            .field_index(name)
            .ok_or_else(|| Error::NoSuchField {
                collection: self.name.clone(),
                field: name.to_string(),
                available: self.schema.field_names(),
            })
    }

    /// Finds the live document with this id.
    ///
    /// ```
    /// # use vellum::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = Database::create(dir.path()).unwrap();
    /// # let mut w = db.writer().unwrap();
    /// # w.create_collection("c", Schema::new().with_field(FieldSpec::dense("e", 2, DType::F16, Metric::Ip))).unwrap();
    /// # w.add("c", Document::new("x").with_text("hello").with_dense("e", vec![0.5, 1.0])).unwrap();
    /// # w.commit().unwrap();
    /// let snap = db.snapshot().unwrap();
    /// let doc = snap.collection("c").unwrap().get("x").unwrap().expect("present");
    /// assert_eq!(doc.text().unwrap(), "hello");
    /// assert_eq!(doc.dense("e").unwrap().to_f32_vec(), vec![0.5, 1.0]);
    /// ```
    pub fn get(&self, id: &str) -> Result<Option<DocRef<'_>>> {
        for (si, slot) in self.slots.iter().enumerate().rev() {
            if let Some(row) = slot.segment.find(id)? {
                if !slot.is_deleted(row) {
                    return Ok(Some(DocRef {
                        collection: self,
                        slot,
                        address: DocAddress {
                            segment_ord: si as u32,
                            row,
                        },
                    }));
                }
            }
        }
        Ok(None)
    }

    /// The document at `address` (deleted or not).
    pub fn doc(&self, address: DocAddress) -> Result<DocRef<'_>> {
        let slot = self
            .slots
            .get(address.segment_ord as usize)
            .ok_or_else(|| Error::InvalidParameter {
                name: "address".into(),
                detail: format!(
                    "segment {} out of range ({} segments)",
                    address.segment_ord,
                    self.slots.len()
                ),
            })?;
        if address.row >= slot.segment.rows() {
            return Err(Error::parameter(
                "address",
                format!(
                    "row {} out of range ({} rows)",
                    address.row,
                    slot.segment.rows()
                ),
            ));
        }
        Ok(DocRef {
            collection: self,
            slot,
            address,
        })
    }

    /// Calls `f` on every live document, in storage order.
    pub fn for_each_live(&self, mut f: impl FnMut(DocRef<'_>) -> Result<()>) -> Result<()> {
        for (si, slot) in self.slots.iter().enumerate() {
            for row in 0..slot.segment.rows() {
                if !slot.is_deleted(row) {
                    f(DocRef {
                        collection: self,
                        slot,
                        address: DocAddress {
                            segment_ord: si as u32,
                            row,
                        },
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// A borrowed view of one stored document. Vector accessors are zero-copy views of the mapped file.
#[derive(Debug, Clone, Copy)]
pub struct DocRef<'a> {
    collection: &'a Collection,
    slot: &'a SegmentSlot,
    address: DocAddress,
}

/// A multi-vector value: `n_tokens × dim` elements.
#[derive(Debug, Clone)]
pub struct MultiRef<'a> {
    /// The token vectors, row-major: stored, or decompressed (f32) for a codes-only field.
    pub tokens: VectorCow<'a>,
    /// Dimension of each token vector.
    pub dim: usize,
}

impl MultiRef<'_> {
    /// Number of token vectors.
    pub fn n_tokens(&self) -> usize {
        self.tokens.len() / self.dim
    }
}

/// A tensor value with its shape.
#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    /// The declared shape.
    pub shape: &'a [u32],
    /// The elements in row-major order.
    pub data: VectorRef<'a>,
}

impl<'a> DocRef<'a> {
    /// Where the document lives.
    pub fn address(&self) -> DocAddress {
        self.address
    }

    /// Whether the document is deleted in this snapshot.
    pub fn is_deleted(&self) -> bool {
        self.slot.is_deleted(self.address.row)
    }

    /// The id.
    pub fn id(&self) -> Result<&'a str> {
        self.slot.segment.doc_id(self.address.row)
    }

    /// The stored text.
    pub fn text(&self) -> Result<&'a str> {
        self.slot.segment.text(self.address.row)
    }

    /// The stored metadata as JSON text (always an object).
    pub fn metadata(&self) -> Result<&'a str> {
        self.slot.segment.metadata(self.address.row)
    }

    /// The stored metadata, parsed.
    pub fn metadata_json(&self) -> Result<serde_json::Value> {
        let text = self.metadata()?;
        serde_json::from_str(text).map_err(|e| {
            Error::corrupt(
                self.slot.segment.path(),
                "metadata bytes",
                0,
                format!("row {}: {e}", self.address.row),
            )
        })
    }

    fn field(&self, name: &str, want: &str) -> Result<(usize, &'a FieldKind)> {
        let i = self.collection.field_index(name)?;
        let kind = &self.collection.schema.fields[i].kind;
        if kind.kind_name() != want {
            return Err(Error::wrong_kind(
                &self.collection.name,
                name,
                kind.kind_name(),
                format!("it has no {want} value"),
            ));
        }
        Ok((i, kind))
    }

    /// The vector of a dense field.
    pub fn dense(&self, field: &str) -> Result<VectorRef<'a>> {
        let (i, _) = self.field(field, "dense")?;
        Ok(self.slot.segment.fixed_row(i, self.address.row))
    }

    /// The token vectors of a multi field.
    pub fn multi(&self, field: &str) -> Result<MultiRef<'a>> {
        let (i, kind) = self.field(field, "multi")?;
        Ok(MultiRef {
            tokens: self.slot.segment.multi_row(i, self.address.row)?,
            dim: kind.row_elements(),
        })
    }

    /// The value of one of the collection's fields with its shape: dense `[dim]`, multi
    /// `[tokens, dim]`, tensor its declared shape; values in the field's storage type (f32 for the
    /// decompressed tokens of a codes-only field).
    pub fn field_value(
        &self,
        field: &crate::schema::FieldSpec,
    ) -> Result<(Vec<usize>, VectorCow<'a>)> {
        Ok(match &field.kind {
            FieldKind::Dense { dim, .. } => (
                vec![*dim as usize],
                VectorCow::Borrowed(self.dense(&field.name)?),
            ),
            FieldKind::Multi { dim, .. } => {
                let m = self.multi(&field.name)?;
                (vec![m.n_tokens(), *dim as usize], m.tokens)
            }
            FieldKind::Tensor { shape, .. } => (
                shape.iter().map(|&s| s as usize).collect(),
                VectorCow::Borrowed(self.tensor(&field.name)?.data),
            ),
        })
    }

    /// The document as JSON: `{"id", "text", "metadata", "fields": {name: {"shape", "dtype",
    /// "values"?}}}`; vector values are included (as f32) when `with_values` is set.
    pub fn to_json(&self, with_values: bool) -> Result<serde_json::Value> {
        let mut fields = serde_json::Map::new();
        for f in &self.collection.schema.fields {
            let (shape, values) = self.field_value(f)?;
            let mut v = serde_json::json!({"shape": shape, "dtype": f.kind.dtype().name()});
            if with_values {
                v["values"] = serde_json::json!(values.to_f32_vec());
            }
            fields.insert(f.name.clone(), v);
        }
        Ok(serde_json::json!({
            "id": self.id()?,
            "text": self.text()?,
            "metadata": self.metadata_json()?,
            "fields": fields,
        }))
    }

    /// The tensor of a tensor field.
    pub fn tensor(&self, field: &str) -> Result<TensorRef<'a>> {
        let (i, kind) = self.field(field, "tensor")?;
        let FieldKind::Tensor { shape, .. } = kind else {
            unreachable!()
        };
        Ok(TensorRef {
            shape,
            data: self.slot.segment.fixed_row(i, self.address.row),
        })
    }
}
