//! The uncommitted batch of one collection: buffered documents, segments spilled for it, new
//! tombstone bitmaps, and the ids it added.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::Result;
use crate::format::deletes::DeleteBitmap;
use crate::format::manifest::SegmentEntry;
use crate::format::segment::{Segment, SegmentSource};
use crate::meta::HnswParams;
use crate::schema::Schema;

pub(super) struct PendingDoc {
    pub id: String,
    pub text: String,
    pub meta: Vec<u8>,
    pub fields: Vec<Vec<u8>>,
}

impl PendingDoc {
    pub fn bytes(&self) -> usize {
        self.id.len()
            + self.text.len()
            + self.meta.len()
            + self.fields.iter().map(Vec::len).sum::<usize>()
            + 64
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Loc {
    Batch(usize),
    Flushed { segment: u64, row: u32 },
}

pub(super) enum Found {
    Pending(Loc),
    Committed { segment: u64, row: u32 },
}

pub(super) struct Pending {
    pub schema: Schema,
    /// Indexes that segments written for this batch get.
    pub indexes: BTreeMap<String, HnswParams>,
    /// PLAID indexes that segments written for this batch get.
    pub plaid: BTreeMap<String, crate::meta::PlaidParams>,
    /// The PLAID codec to encode new segments with, per field (the collection's current one, or
    /// one trained by an earlier flush of this batch).
    pub codecs: BTreeMap<String, Arc<crate::plaid::PlaidCodec>>,
    pub batch: Vec<Option<PendingDoc>>,
    pub batch_bytes: usize,
    pub flushed: Vec<(SegmentEntry, Arc<Segment>)>,
    /// Full new tombstone bitmaps, by segment id (committed or flushed segments).
    pub deletes: HashMap<u64, DeleteBitmap>,
    /// Live ids added in this batch.
    pub ids: HashMap<String, Loc>,
    pub added: u64,
    pub deleted: u64,
}

impl Pending {
    pub fn new(schema: Schema) -> Self {
        Pending {
            schema,
            indexes: BTreeMap::new(),
            plaid: BTreeMap::new(),
            codecs: BTreeMap::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            flushed: Vec::new(),
            deletes: HashMap::new(),
            ids: HashMap::new(),
            added: 0,
            deleted: 0,
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.added > 0 || self.deleted > 0
    }
}

pub(super) struct BatchSource<'a> {
    pub schema: &'a Schema,
    pub docs: Vec<&'a PendingDoc>,
}

impl SegmentSource for BatchSource<'_> {
    fn schema(&self) -> &Schema {
        self.schema
    }
    fn row_count(&self) -> usize {
        self.docs.len()
    }
    fn id(&self, row: usize) -> Result<&[u8]> {
        Ok(self.docs[row].id.as_bytes())
    }
    fn text(&self, row: usize) -> Result<&[u8]> {
        Ok(self.docs[row].text.as_bytes())
    }
    fn metadata(&self, row: usize) -> Result<&[u8]> {
        Ok(&self.docs[row].meta)
    }
    fn field(&self, field: usize, row: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
        Ok(self.docs[row].fields[field].as_slice().into())
    }
}
