//! Re-encoding a field with a new encoder version (`vellum reencode`): the encoding half. Reads
//! each stored document's text (`title text`, as ingest encoded it), encodes it with the new
//! passage encoder, and hands the columns to the writer's staged version
//! ([`Writer::stage_piece`]), one committed piece at a time; then switches in one commit
//! ([`Writer::switch_to_staged`]). See `writer/versions.rs` for the storage protocol.
//!
//! Resumable: a run finds the pieces committed by an interrupted one (kill -9, Ctrl-C, an error)
//! and encodes only the rows they do not hold. Deleted rows are stored as zero vectors, not
//! encoded: no search reads them, and their tombstones carry over to every version.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::text_input::encoded_text;
use crate::collection::Collection;
use crate::document::FieldValue;
use crate::encode::{
    embedded_dir, encode_batches, Encoder, EncoderInput, EncoderOptions, FieldEncoders, Modality,
    ModelDir, OutputKind, Prepared,
};
use crate::error::{Error, Result};
use crate::schema::{FieldKind, FieldSpec};
use crate::writer::{pending_pieces, FieldColumn, PendingPiece, SwitchInfo, Writer};

/// A re-encode of one field.
#[derive(Debug, Clone)]
pub struct Reencode<'a> {
    /// The collection.
    pub collection: &'a str,
    /// The field (dense or multi-vector, with encoders bound).
    pub field: &'a str,
    /// The new encoders ([`crate::encode::prepare_encoders`]); `None` continues the staged
    /// re-encode with the encoders it was started with.
    pub encoders: Option<FieldEncoders>,
    /// Rows per staged segment (the unit of resumption: an interruption loses at most one).
    pub piece_rows: u64,
    /// Device and batch size for the encoder (other options come from the record).
    pub runtime: EncoderOptions,
    /// Keep the replaced version for rollback.
    pub keep_previous: bool,
    /// Encode into this new field instead of `field` (schema evolution: a model of another
    /// dimension, say): the new version has the collection's fields plus this one, `field` and
    /// the others copied unchanged. `None` re-encodes `field` itself (or continues a staged
    /// re-encode into a new field named `field`).
    pub new_field: Option<FieldSpec>,
    /// Set (by a Ctrl-C handler, say) to stop after the current batch: committed pieces stay,
    /// and [`Error::Interrupted`] is returned.
    pub interrupt: Option<Arc<AtomicBool>>,
}

impl<'a> Reencode<'a> {
    /// Defaults: pieces of 10,000 rows, the previous version kept.
    pub fn new(collection: &'a str, field: &'a str, encoders: Option<FieldEncoders>) -> Self {
        Reencode {
            collection,
            field,
            encoders,
            piece_rows: 10_000,
            runtime: EncoderOptions::default(),
            keep_previous: true,
            interrupt: None,
            new_field: None,
        }
    }
}

/// What a re-encode is about to do, reported before it encodes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReencodePlan {
    /// The version being written.
    pub version: u64,
    /// The new passage encoder's source.
    pub source: String,
    /// Rows of the live segments (deleted ones included).
    pub rows_total: u64,
    /// Rows an interrupted run already staged.
    pub rows_done: u64,
    /// Estimated bytes of the segments still to write (the live segments' sizes pro rata).
    pub bytes_needed: u64,
    /// Free bytes on the database's file system, when it can be told.
    pub bytes_available: Option<u64>,
}

/// Events of a re-encode, for progress display.
#[derive(Debug, Clone)]
pub enum ReencodeEvent {
    /// The plan, before encoding starts.
    Plan(ReencodePlan),
    /// A piece was committed: rows staged so far (this run and earlier ones).
    Staged {
        /// Rows staged.
        rows_done: u64,
        /// Rows in all.
        rows_total: u64,
    },
}

/// What a finished re-encode did.
#[derive(Debug, Clone)]
pub struct ReencodeStats {
    /// The switch.
    pub switch: SwitchInfo,
    /// Live rows encoded by this run.
    pub encoded: u64,
    /// Pieces written by this run.
    pub pieces: u64,
    /// Seconds spent encoding.
    pub encode_seconds: f64,
}

/// The spec of a new field for [`Reencode::new_field`] from text: a full
/// `NAME:KIND:DIM[:DTYPE[:METRIC]]`, or a bare `NAME`, which takes `field`'s kind, dtype and
/// metric and the dimension `encoders` output.
pub fn new_field_spec(
    collection: &Collection,
    field: &str,
    spec: &str,
    encoders: &FieldEncoders,
) -> Result<FieldSpec> {
    if spec.contains(':') {
        return FieldSpec::parse(spec);
    }
    let template = &collection.schema().fields[collection.field_index(field)?];
    let dim = u32::try_from(encoders.passage.dims)
        .map_err(|_| Error::Schema(format!("new field {spec:?}: dimension out of range")))?;
    let kind = match &template.kind {
        FieldKind::Dense { dtype, metric, .. } => FieldKind::Dense {
            dim,
            dtype: *dtype,
            metric: *metric,
        },
        FieldKind::Multi { dtype, metric, .. } => FieldKind::Multi {
            dim,
            dtype: *dtype,
            metric: *metric,
        },
        FieldKind::Tensor { .. } => {
            return Err(Error::Schema(format!(
                "new field {spec:?}: field {field:?} is a tensor field; give the new field's kind: NAME:KIND:DIM[:DTYPE[:METRIC]]"
            )))
        }
    };
    let out = FieldSpec {
        name: spec.to_string(),
        kind,
    };
    out.validate()?;
    Ok(out)
}

/// Runs (or resumes) a re-encode through `writer` and switches the field to the new version.
/// Refuses to start when the estimated space is not free.
pub fn reencode(
    writer: &mut Writer,
    job: &Reencode<'_>,
    progress: &mut dyn FnMut(&ReencodeEvent),
) -> Result<ReencodeStats> {
    // Pieces are planned from the committed collection: the writer's own pending changes are
    // committed first (a pending delete could otherwise drop a segment a piece names).
    writer.commit()?;
    let staged = writer
        .committed()
        .manifest()
        .collection(job.collection)
        .and_then(|c| c.versions.staged.clone());
    let collection = writer.committed().collection(job.collection)?.clone();
    // The field written: `field` itself, a new field, or the new field a staged re-encode adds.
    let (target, adding) = match (&job.new_field, &staged) {
        (Some(spec), _) => {
            collection.field_index(job.field)?;
            (spec.clone(), true)
        }
        (None, Some(s)) if s.field == job.field && s.schema.is_some() => {
            let schema = s.schema_or(collection.schema());
            let i = schema.field_index(job.field).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "the staged re-encode of collection {:?} into field {:?} does not hold that field; abort it (--abort) and start again",
                    job.collection, job.field
                ))
            })?;
            (schema.fields[i].clone(), true)
        }
        (None, _) => {
            let i = collection.field_index(job.field)?;
            (collection.schema().fields[i].clone(), false)
        }
    };
    let encoders = match (&job.encoders, staged) {
        (Some(e), _) => e.clone(),
        (None, Some(s)) if s.field == target.name => s.encoders,
        (None, _) => {
            return Err(Error::InvalidInput(format!(
                "no re-encode of field {:?} is staged in collection {:?}: name the new encoder",
                target.name, job.collection
            )))
        }
    };
    // Everything that can refuse the re-encode runs before the staged record is committed.
    let database_dir = collection.database_dir().to_path_buf();
    let encoder = load_passage_encoder(&database_dir, &encoders, &job.runtime)?;
    if encoder.modality() != Modality::Text {
        return Err(Error::InvalidInput(format!(
            "field {:?}: a re-encode reads the stored text; {} encodes images, which the database does not keep",
            target.name, encoders.passage.source
        )));
    }
    let mut entry = writer
        .committed()
        .manifest()
        .collection(job.collection)
        .cloned()
        .expect("the collection exists");
    let piece_rows = job.piece_rows.max(1);
    let resuming = entry
        .versions
        .staged
        .as_ref()
        .is_some_and(|s| s.field == target.name && s.encoders == encoders);
    if !resuming {
        // As if staged now: every row is pending.
        entry.versions.staged = Some(crate::meta::EncoderVersion {
            field: target.name.clone(),
            version: 0,
            encoders: encoders.clone(),
            segments: Vec::new(),
            pieces: Vec::new(),
            schema: None,
        });
    }
    let pending = pending_pieces(&entry, piece_rows);
    let rows_total: u64 = entry.segments.iter().map(|s| s.rows).sum();
    let rows_left: u64 = pending.iter().map(|p| p.rows).sum();
    let bytes_needed: u64 = pending
        .iter()
        .map(|p| {
            let s = entry
                .segments
                .iter()
                .find(|s| s.id == p.source)
                .expect("live");
            (s.bytes as u128 * p.rows as u128 / s.rows.max(1) as u128) as u64
        })
        .sum();
    // A new field's values come on top of the copied segments (f32 per value at most; a
    // multi-vector field's documents hold several rows, so this is a lower bound there).
    let bytes_needed = bytes_needed
        + if adding {
            rows_left * target.kind.row_elements() as u64 * 4
        } else {
            0
        };
    let bytes_available = fs4::available_space(&database_dir).ok();
    if let Some(free) = bytes_available {
        if free < bytes_needed {
            return Err(Error::InvalidInput(format!(
                "re-encoding field {:?} needs about {} MiB for the new segments; {} has {} MiB free (the current version stays until the switch, and is kept for rollback after it)",
                target.name,
                bytes_needed >> 20,
                database_dir.display(),
                free >> 20
            )));
        }
    }
    let version = if adding {
        writer.begin_staged_new_field(job.collection, &target, &encoders)?
    } else {
        writer.begin_staged(job.collection, job.field, &encoders)?
    };
    let plan = ReencodePlan {
        version,
        source: encoders.passage.source.clone(),
        rows_total,
        rows_done: rows_total - rows_left,
        bytes_needed,
        bytes_available,
    };
    progress(&ReencodeEvent::Plan(plan.clone()));
    let mut stats = ReencodeStats {
        switch: SwitchInfo {
            generation: 0,
            field: target.name.clone(),
            from_version: 0,
            to_version: version,
            segments: 0,
            kept_previous: job.keep_previous,
        },
        encoded: 0,
        pieces: 0,
        encode_seconds: 0.0,
    };
    let mut rows_done = plan.rows_done;
    for piece in pending {
        let column = encode_piece(writer, job, &target, &*encoder, piece, &mut stats)?;
        writer.stage_piece(job.collection, piece, column)?;
        stats.pieces += 1;
        rows_done += piece.rows;
        progress(&ReencodeEvent::Staged {
            rows_done,
            rows_total,
        });
    }
    stats.switch = writer.switch_to_staged(job.collection, job.keep_previous)?;
    Ok(stats)
}

/// Loads the passage encoder of `encoders` (the embedded copy when there is one) and checks
/// that its files are the ones recorded.
fn load_passage_encoder(
    database_dir: &Path,
    encoders: &FieldEncoders,
    runtime: &EncoderOptions,
) -> Result<Box<dyn Encoder>> {
    let record = &encoders.passage;
    let dir = if record.embedded {
        ModelDir::at(embedded_dir(database_dir, record), &record.source)?
    } else {
        ModelDir::resolve(&record.source)?
    };
    let options = EncoderOptions {
        device: runtime.device,
        batch_size: runtime.batch_size,
        ..record.options()
    };
    let encoder = crate::encode::load(&dir, &options)?;
    if encoder.record().fingerprint != record.fingerprint {
        return Err(Error::InvalidInput(format!(
            "the model at {} hashes to {}, but the staged re-encode was started with {}: the files changed; abort the re-encode and start it again",
            dir.dir.display(),
            encoder.record().fingerprint,
            record.fingerprint
        )));
    }
    Ok(encoder)
}

/// Encodes the rows of one piece: one value per row, deleted rows as zeros.
fn encode_piece(
    writer: &Writer,
    job: &Reencode<'_>,
    spec: &FieldSpec,
    encoder: &dyn Encoder,
    piece: PendingPiece,
    stats: &mut ReencodeStats,
) -> Result<FieldColumn> {
    let c = writer.committed().collection(job.collection)?.clone();
    let slot = c
        .slots()
        .iter()
        .find(|s| s.entry.id == piece.source)
        .expect("pending pieces are of live segments");
    let seg = &slot.segment;
    let n = piece.rows as usize;
    let rows: Vec<u32> = (piece.start..piece.start + piece.rows)
        .map(|r| r as u32)
        .collect();
    let mut prepared: Vec<Option<Prepared>> = Vec::with_capacity(n);
    for &r in &rows {
        if slot.is_deleted(r) {
            prepared.push(None);
            continue;
        }
        let text = seg.text(r)?;
        let meta = seg.metadata(r)?;
        let title = match meta.contains("\"title\"") {
            true => serde_json::from_str::<serde_json::Value>(meta)
                .ok()
                .and_then(|m| m.get("title").and_then(|t| t.as_str()).map(str::to_string)),
            false => None,
        };
        let input = encoded_text(text, title.as_deref());
        if input.trim().is_empty() {
            return Err(Error::InvalidInput(format!(
                "collection {:?}, document {:?}: no text to re-encode field {:?} from (its vectors were given, not encoded); the live version is unchanged, and the pieces written so far are kept until the re-encode is aborted",
                job.collection,
                seg.doc_id(r)?,
                spec.name
            )));
        }
        prepared.push(Some(encoder.prepare(&EncoderInput::Text(&input))?));
    }
    let start = Instant::now();
    let mut values: Vec<Option<Vec<f32>>> = vec![None; n];
    let mut order: Vec<usize> = (0..n).filter(|&i| prepared[i].is_some()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(prepared[i].as_ref().map_or(0, Prepared::cost)));
    let chunks: Vec<&[usize]> = order.chunks(encoder.batch_size().max(1)).collect();
    let batches: Vec<Vec<&Prepared>> = chunks
        .iter()
        .map(|c| c.iter().filter_map(|&i| prepared[i].as_ref()).collect())
        .collect();
    let check = || {
        match job
        .interrupt
        .as_ref()
        .is_some_and(|f| f.load(Ordering::Relaxed))
    {
        true => Err(Error::Interrupted(
            "re-encode stopped; the pieces written are committed, and running the re-encode again without naming an encoder continues from them".into(),
        )),
        false => Ok(()),
    }
    };
    for (chunk, out) in chunks
        .iter()
        .zip(encode_batches(encoder, &batches, &check)?)
    {
        for (&i, v) in chunk.iter().zip(out.per_input()) {
            values[i] = Some(v.to_vec());
        }
    }
    stats.encode_seconds += start.elapsed().as_secs_f64();
    stats.encoded += order.len() as u64;
    let zero = vec![0f32; spec.kind.row_elements()];
    let mut column = FieldColumn::new();
    for (i, v) in values.into_iter().enumerate() {
        let v = v.unwrap_or_else(|| zero.clone());
        let value = match encoder.output() {
            OutputKind::Dense => FieldValue::Dense(v),
            OutputKind::Multi => FieldValue::Multi(v),
            OutputKind::Tensor => FieldValue::Tensor(v),
        };
        let bad = |msg: String| {
            Error::InvalidInput(format!(
                "collection {:?}, document {:?}: {msg}",
                job.collection,
                seg.doc_id(rows[i]).unwrap_or("?")
            ))
        };
        column.push(&crate::document::encode_value(spec, &value, &bad)?);
    }
    Ok(column)
}
