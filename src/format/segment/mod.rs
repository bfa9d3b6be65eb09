//! `*.vseg`: an immutable segment file holding a batch of documents of one collection.
//!
//! A 64-byte header, a table of 48-byte section entries, then the sections, each starting at a
//! multiple of 64 bytes (zero padding between). The full byte layout, with every section kind, is in
//! `format-spec/segment.md`.
//!
//! Opening ([`Segment::open`]) checks the header, the section table and the schema section, and the
//! size of every section, but reads none of the bulk data: its cost does not grow with the segment.
//! Per-row accessors check the offsets they use; [`Segment::verify`] checks everything.

mod read;
mod verify;
mod write;

pub use read::Segment;
pub use write::{write_segment, write_segment_with};

use crate::error::Result;
use crate::schema::Schema;

/// Magic bytes of a segment file.
pub const MAGIC: &[u8; 8] = b"VELLUMSG";
/// Header length.
pub const HEADER_LEN: u64 = 64;
/// Length of one section-table entry.
pub const ENTRY_LEN: u64 = 48;
/// `field` value of sections that do not belong to a vector field.
pub const NO_FIELD: u32 = u32::MAX;
/// Upper bound on the section count (8 document sections + 3 per field, 256 fields: a dense
/// field's vectors, graph and screening codes).
pub const MAX_SECTIONS: u32 = 8 + 3 * 256;

/// The kinds of section a segment holds. Codes are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// The collection schema as JSON (self-description; must equal the manifest's).
    Schema = 1,
    /// `u64[rows + 1]` byte offsets into `IdBytes`.
    IdOffsets = 2,
    /// Concatenated UTF-8 ids.
    IdBytes = 3,
    /// `u32[rows]`: row numbers sorted by id bytes (for lookup by id).
    IdOrder = 4,
    /// `u64[rows + 1]` byte offsets into `TextBytes`.
    TextOffsets = 5,
    /// Concatenated UTF-8 texts.
    TextBytes = 6,
    /// `u64[rows + 1]` byte offsets into `MetaBytes`.
    MetaOffsets = 7,
    /// Concatenated metadata, each a JSON object in UTF-8.
    MetaBytes = 8,
    /// Dense field: `rows × dim` elements, row-major.
    Dense = 16,
    /// Multi field: `u64[rows + 1]` token offsets (in tokens) into `MultiTokens`.
    MultiOffsets = 17,
    /// Multi field: `tokens × dim` elements, row-major.
    MultiTokens = 18,
    /// Tensor field: `rows × prod(shape)` elements, row-major (C order).
    Tensor = 19,
    /// Dense field, optional: an HNSW graph over the field's rows (`format-spec/hnsw.md`).
    HnswGraph = 20,
    /// Dense field, optional: 8-bit screening codes with error bounds (`format-spec/screen.md`).
    ScreenCodes = 21,
    /// Multi-vector field, optional: a PLAID index — residual codec, token codes, inverted
    /// lists (`format-spec/plaid.md`).
    Plaid = 22,
}

impl SectionKind {
    /// Parses a section kind code.
    pub fn from_code(code: u32) -> Option<Self> {
        use SectionKind::*;
        Some(match code {
            1 => Schema,
            2 => IdOffsets,
            3 => IdBytes,
            4 => IdOrder,
            5 => TextOffsets,
            6 => TextBytes,
            7 => MetaOffsets,
            8 => MetaBytes,
            16 => Dense,
            17 => MultiOffsets,
            18 => MultiTokens,
            19 => Tensor,
            20 => HnswGraph,
            21 => ScreenCodes,
            22 => Plaid,
            _ => return None,
        })
    }

    /// Name used in error messages and the spec.
    pub fn name(self) -> &'static str {
        use SectionKind::*;
        match self {
            Schema => "schema",
            IdOffsets => "id offsets",
            IdBytes => "id bytes",
            IdOrder => "id order",
            TextOffsets => "text offsets",
            TextBytes => "text bytes",
            MetaOffsets => "metadata offsets",
            MetaBytes => "metadata bytes",
            Dense => "dense vectors",
            MultiOffsets => "multi-vector offsets",
            MultiTokens => "multi-vector tokens",
            Tensor => "tensor data",
            HnswGraph => "hnsw graph",
            ScreenCodes => "screening codes",
            Plaid => "plaid index",
        }
    }
}

/// One decoded section-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionEntry {
    /// What the section holds.
    pub kind: SectionKind,
    /// Field index, or [`NO_FIELD`].
    pub field: u32,
    /// Start offset in the file (multiple of 64).
    pub offset: u64,
    /// Length in bytes (padding excluded).
    pub length: u64,
    /// Items: rows, tokens (for `MultiTokens`) or bytes (for byte sections).
    pub count: u64,
    /// Element type code for vector sections, 0 otherwise.
    pub dtype: u32,
    /// XXH3-64 of the section's bytes.
    pub checksum: u64,
}

impl SectionEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.kind as u32).to_le_bytes());
        out.extend_from_slice(&self.field.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.dtype.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.checksum.to_le_bytes());
    }
}

/// Rows handed to [`write_segment`]: an in-memory batch or live rows of segments being merged.
/// Field values are raw little-endian bytes already in the field's element type; a multi-vector
/// value is all its token rows back to back.
pub trait SegmentSource {
    /// The schema every row follows.
    fn schema(&self) -> &Schema;
    /// Number of rows.
    fn row_count(&self) -> usize;
    /// The id of `row`.
    fn id(&self, row: usize) -> Result<&[u8]>;
    /// The text of `row`.
    fn text(&self, row: usize) -> Result<&[u8]>;
    /// The metadata JSON of `row`.
    fn metadata(&self, row: usize) -> Result<&[u8]>;
    /// The value of vector field `field` for `row` (owned when it had to be computed, as the
    /// decompressed tokens of a codes-only field are).
    fn field(&self, field: usize, row: usize) -> Result<std::borrow::Cow<'_, [u8]>>;
    /// Appends the token vectors of multi-vector field `field` in `row` to `out` as f32 (by
    /// default decoded from [`SegmentSource::field`]; a merge reads a codes-only segment's
    /// decompressed f32 tokens directly, without rounding them to the field's dtype first).
    fn multi_f32(&self, field: usize, row: usize, out: &mut Vec<f32>) -> Result<()> {
        let dtype = self.schema().fields[field].kind.dtype();
        dtype.decode_into(&self.field(field, row)?, out);
        Ok(())
    }
    /// The number of tokens of multi-vector field `field` in `row` (by default from the value's
    /// length, which must be a whole number of tokens).
    fn token_count(&self, field: usize, row: usize) -> Result<usize> {
        whole_tokens(self.schema(), field, row, self.field(field, row)?.len())
    }
    /// The PLAID codes and packed residuals of `row`'s tokens of multi-vector field `field`, when
    /// the row is already stored encoded with the codec of id `codec_id` (compaction copies them
    /// rather than re-encoding tokens that, for a codes-only field, are decompressed
    /// approximations). By default `None`: the tokens are encoded.
    fn plaid_codes(
        &self,
        field: usize,
        row: usize,
        codec_id: u64,
    ) -> Result<Option<(crate::format::plaid::Codes<'_>, &[u8])>> {
        let _ = (field, row, codec_id);
        Ok(None)
    }
}

/// The number of tokens in a multi-vector value of `len` bytes of `field` (row `row`, for the
/// message): an error unless it is a whole number of tokens.
pub fn whole_tokens(schema: &Schema, field: usize, row: usize, len: usize) -> Result<usize> {
    let f = &schema.fields[field];
    let token_bytes = (f.kind.row_elements() * f.kind.dtype().size()).max(1);
    if !len.is_multiple_of(token_bytes) {
        return Err(crate::error::Error::InvalidInput(format!(
            "row {row}: field {:?} value of {len} bytes is not a whole number of {token_bytes}-byte tokens",
            f.name
        )));
    }
    Ok(len / token_bytes)
}

/// The bytes of a prebuilt optional section, handed to the segment writer piece by piece, so
/// that a large section (a PLAID index: ~36 bytes per token) is written from its parts without
/// first being copied into one buffer.
pub trait SectionBody: std::fmt::Debug + Send + Sync {
    /// Its length in bytes.
    fn len(&self) -> u64;
    /// Whether it has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Passes its bytes, in order, to `put`; the pieces add up to [`SectionBody::len`] bytes.
    ///
    /// # Errors
    /// What `put` returns.
    fn write(&self, put: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>;
}

impl SectionBody for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn write(&self, put: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        put(self)
    }
}

/// A prebuilt optional section (an index) written after the data sections.
#[derive(Debug)]
pub struct ExtraSection {
    /// Its kind.
    pub kind: SectionKind,
    /// The vector field it belongs to.
    pub field: u32,
    /// Its `count` column (for a graph: the rows it covers).
    pub count: u64,
    /// Its bytes.
    pub body: Box<dyn SectionBody>,
    /// For the PLAID section of a codes-only field, the tokens it codes: the field's token
    /// section is left out (readers decompress the codes), so these must be all of its tokens.
    pub replaces_tokens: Option<u64>,
}

#[inline]
pub(super) fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[inline]
pub(super) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
